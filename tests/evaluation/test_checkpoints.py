"""``densekit evaluate-checkpoints`` scores each checkpoint exactly as encode+search+evaluate."""

from __future__ import annotations

import json

import pytest
from conftest import encode_and_search

from densekit.commands import main as cli
from densekit.commands.train import main as train_main


def test_every_checkpoint_and_the_final_model_are_scored(
    tiny_model, tiny_train, write_jsonl, tmp_path
):
    run_dir = tmp_path / "run"
    flags = [
        "--output_dir", str(run_dir), "--model_name_or_path", tiny_model, "--dataset_path", tiny_train,
        "--train_group_size", "2", "--per_device_train_batch_size", "4", "--max_steps", "4",
        "--save_steps", "2", "--learning_rate", "1e-2", "--pooling", "mean",
    ]  # fmt: skip
    assert train_main(flags) == 0
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"_id": f"d{i}", "text": f"passage about topic {i % 5} answering query {i}"}
            for i in range(16)
        ],
    )
    queries = write_jsonl(
        tmp_path / "queries.jsonl",
        [{"_id": f"q{i}", "text": f"query number {i} about topic {i % 5}"} for i in range(16)],
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(8)))
    common = ["--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    assert (
        cli(["evaluate-checkpoints", "--output_dir", str(run_dir), *common, "--metrics", "mrr@10"])
        == 0
    )
    scores = json.loads((run_dir / "checkpoints.json").read_text())["checkpoints"]
    assert list(scores) == ["checkpoint-2", "checkpoint-4", "final"]

    # the same number through the file-based commands for checkpoint-2
    run = encode_and_search(str(run_dir / "checkpoint-2"), corpus, queries, qrels, tmp_path)
    out = tmp_path / "m.json"
    assert (
        cli(
            [
                "evaluate",
                "--run",
                str(run),
                "--qrels",
                str(qrels),
                "--metrics",
                "mrr@10",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert scores["checkpoint-2"]["mrr@10"] == pytest.approx(
        json.loads(out.read_text())["mean"]["mrr@10"]
    )


def test_a_folder_without_checkpoints_is_one_error(tmp_path, capsys):
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\t0\td1\t1\n")
    (tmp_path / "c.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": "y"}\n')
    args = [
        "--corpus",
        str(tmp_path / "c.jsonl"),
        "--queries",
        str(tmp_path / "q.jsonl"),
        "--qrels",
        str(qrels),
    ]
    (tmp_path / "empty").mkdir()
    assert cli(["evaluate-checkpoints", "--output_dir", str(tmp_path / "empty"), *args]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    assert cli(["evaluate-checkpoints", "--output_dir", str(tmp_path / "missing"), *args]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_scifact(scifact_dir, tmp_path_factory):
    """12 dev queries of the bundled SciFact and a corpus of their answers plus 40 others."""
    folder = tmp_path_factory.mktemp("small-scifact")
    dev = [
        line.split("\t") for line in (scifact_dir / "qrels/dev.tsv").read_text().splitlines()[1:]
    ]
    chosen = sorted({q for q, _, _ in dev})[:12]
    rows = [r for r in dev if r[0] in chosen]
    keep = {d for _, d, _ in rows}
    docs = [json.loads(line) for line in (scifact_dir / "corpus.jsonl").open()]
    corpus = [d for d in docs if d["_id"] in keep] + [d for d in docs if d["_id"] not in keep][:40]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "qrels.tsv").write_text("".join("\t".join(r) + "\n" for r in rows))
    return folder, scifact_dir / "queries.jsonl"


def test_paddlenlp_line_names_the_planted_best(small_scifact, tiny_model, minilm, tmp_path, capsys):
    from densekit.modeling.encoder import DenseEncoder, load_tokenizer

    folder, queries = small_scifact
    run = tmp_path / "checkpoints"
    for step, source in ((100, tiny_model), (200, minilm), (300, tiny_model)):
        encoder = DenseEncoder.from_pretrained(source, pooling="mean", normalize=True)
        encoder.save_pretrained(run / f"checkpoint-{step}", tokenizer=load_tokenizer(source))
    data = ["--corpus", str(folder / "corpus.jsonl"), "--queries", str(queries),
            "--qrels", str(folder / "qrels.tsv")]  # fmt: skip
    paddle = ["--model_type", "bert", "--query_model", str(run / "checkpoint-300"),
              "--passage_model", str(run / "checkpoint-300"), "--query_max_length", "64",
              "--passage_max_length", "128", "--evaluate_all"]  # fmt: skip
    assert cli(["evaluate-checkpoints", *paddle, *data]) == 2  # one pair cannot also be "all"
    assert "cannot go with --evaluate_all" in capsys.readouterr().err
    paddle.remove("--passage_model")
    paddle.remove(str(run / "checkpoint-300"))
    assert cli(["evaluate-checkpoints", *paddle, *data]) == 0
    assert "best by ndcg@10: checkpoint-200" in capsys.readouterr().out
    saved = json.loads((run / "checkpoints.json").read_text())
    assert saved["best"] == "checkpoint-200" and list(saved["checkpoints"]) == [
        "checkpoint-100", "checkpoint-200", "checkpoint-300"
    ]  # fmt: skip


def test_separate_query_and_passage_models(small_scifact, tiny_model, minilm, tmp_path, capsys):
    import torch

    from densekit.modeling.encoder import DenseEncoder, load_tokenizer

    folder, queries = small_scifact
    noisy = DenseEncoder.from_pretrained(minilm)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in noisy.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * param.std().nan_to_num(0.1))
    noisy.save_pretrained(tmp_path / "noisy", tokenizer=load_tokenizer(minilm))
    data = ["--corpus", str(folder / "corpus.jsonl"), "--queries", str(queries),
            "--qrels", str(folder / "qrels.tsv"), "--save_to", str(tmp_path / "s.json"),
            "--passage_max_length", "128"]  # fmt: skip
    assert cli(["evaluate-checkpoints", "--query_model", minilm, *data]) == 0
    same = json.loads((tmp_path / "s.json").read_text())["checkpoints"]
    (tmp_path / "s.json").unlink()
    argv = ["evaluate-checkpoints", "--query_model", minilm, "--passage_model", tiny_model, *data]
    assert cli(argv) == 2
    assert "384-dim vectors but" in capsys.readouterr().err
    argv[argv.index(tiny_model)] = str(tmp_path / "noisy")
    assert cli(argv) == 0
    mixed = json.loads((tmp_path / "s.json").read_text())["checkpoints"]
    # a scrambled passage tower no longer matches MiniLM's query space
    name = next(iter(same))
    assert same[name]["ndcg@10"] > 0.5 > mixed[name]["ndcg@10"]
