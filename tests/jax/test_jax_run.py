"""``densekit jax-train`` / ``jax-encode`` end to end: the saved model loads in ``densekit encode``
and sentence-transformers and encodes as the JAX path does; resuming a checkpoint reaches the
weights of an uninterrupted run; flags the JAX path cannot honour are one line."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from densekit.commands import main as cli

CORPUS = [
    {"_id": f"d{i}", "title": f"topic {i % 5}", "text": f"a passage about topic {i % 5}, no. {i}"}
    for i in range(11)
]


def _train_flags(model: str, data: str, out) -> list[str]:
    return [
        "--model_name_or_path", model, "--dataset_path", data, "--output_dir", str(out),
        "--per_device_train_batch_size", "4", "--train_group_size", "2",
        "--query_max_len", "16", "--passage_max_len", "32", "--max_steps", "4",
        "--save_steps", "2", "--logging_steps", "1", "--learning_rate", "1e-3",
        "--warmup_ratio", "0.25", "--pooling", "mean", "--normalize",
        "--query_prefix", "q: ", "--grad_cache", "--gc_q_chunk_size", "2",
        "--gc_p_chunk_size", "4", "--gradient_checkpointing",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(jax_cpu, tiny_model, tiny_train, tmp_path_factory):
    out = tmp_path_factory.mktemp("jax-run") / "model"
    assert cli(["jax-train", *_train_flags(tiny_model, tiny_train, out)]) == 0
    return out


def test_saved_model_encodes_alike_in_torch_jax_and_sentence_transformers(
    trained, tiny_model, write_jsonl, tmp_path
):
    """Crosses XLA's CPU kernels (jax-encode) with torch's (encode, sentence-transformers) on
    unit vectors (--normalize), so an absolute 1e-4 is relative to the vectors' norm of 1."""
    from sentence_transformers import SentenceTransformer

    saved = json.loads((trained / "densekit_config.json").read_text())
    assert (saved["pooling"], saved["normalize"], saved["query_prefix"]) == ("mean", True, "q: ")
    assert [p.name for p in sorted(trained.glob("checkpoint-*"))] == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    before = load_file(f"{tiny_model}/model.safetensors")
    after = load_file(str(trained / "model.safetensors"))
    assert max(np.abs(after[k] - before[k]).max() for k in before) > 1e-4  # it trained

    corpus = write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    flags = ["--model_name_or_path", str(trained), "--dataset_path", str(corpus)]
    for command, folder in (("encode", "torch"), ("jax-encode", "jax")):
        out = tmp_path / folder
        assert cli([command, *flags, "--encode_output_path", str(out), "--batch_size", "4"]) == 0
    torch_vectors = np.load(tmp_path / "torch" / "embeddings.npy")
    jax_vectors = np.load(tmp_path / "jax" / "embeddings.npy")
    assert (tmp_path / "jax" / "ids.txt").read_text() == (
        tmp_path / "torch" / "ids.txt"
    ).read_text()
    np.testing.assert_allclose(jax_vectors, torch_vectors, atol=1e-4)

    texts = [f"{row['title']} {row['text']}" for row in CORPUS]
    st_vectors = SentenceTransformer(str(trained), device="cpu").encode(texts)
    np.testing.assert_allclose(st_vectors, jax_vectors, atol=1e-4)


def test_resume_reaches_the_uninterrupted_weights(trained, tiny_model, tiny_train, tmp_path):
    """Same JAX program both times (no kernel crossing): tight tolerances, relative to each
    weight tensor's largest entry and to each logged loss."""
    resumed = tmp_path / "model"
    resumed.mkdir()
    shutil.copytree(trained / "checkpoint-2", resumed / "checkpoint-2")
    flags = [*_train_flags(tiny_model, tiny_train, resumed), "--resume_from_checkpoint", "True"]
    assert cli(["jax-train", *flags]) == 0
    expected = load_file(str(trained / "model.safetensors"))
    got = load_file(str(resumed / "model.safetensors"))
    halfway = load_file(str(trained / "checkpoint-2" / "model.safetensors"))
    assert max(np.abs(expected[k] - halfway[k]).max() for k in expected) > 1e-4
    for name, value in expected.items():
        atol = 1e-6 * max(1.0, np.abs(value).max())
        np.testing.assert_allclose(got[name], value, atol=atol, err_msg=name)
    progress = json.loads((resumed / "checkpoint-4" / "jax_progress.json").read_text())
    original = json.loads((trained / "checkpoint-4" / "jax_progress.json").read_text())
    assert [r["loss"] for r in progress["history"]] == pytest.approx(
        [r["loss"] for r in original["history"]], rel=1e-5
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lora"], "--lora/--fine_tune_type (full fine-tuning only) is not on the JAX path"),
        (["--loss", "distill"], "--loss distill is not on the JAX path; use densekit train"),
        (["--dtype", "float16"], "--dtype float16: expected float32 or bfloat16"),
    ],
)
def test_flags_the_jax_path_cannot_honour_are_one_line(
    jax_cpu, tiny_model, tiny_train, tmp_path, capsys, extra, message
):
    flags = [*_train_flags(tiny_model, tiny_train, tmp_path / "out"), *extra]
    assert cli(["jax-train", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"densekit: error: {message}" or message in err.splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_missing_jax_extra_is_one_line(tiny_model, tiny_train, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optax", None)
    assert cli(["jax-train", *_train_flags(tiny_model, tiny_train, tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'densekit[jax]'" in err and "Traceback" not in err
