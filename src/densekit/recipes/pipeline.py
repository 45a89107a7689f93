"""The retriever recipe: BM25 -> zero-shot -> mined negatives -> fine-tune -> evaluate.

Any BEIR-layout folder (the bundled SciFact by default), composed from densekit's Python API,
one function per stage. Every choice is made on the dev split; a test split, when the folder
has one, is read and evaluated once, after all of them. Writes the tables, the runs, the model
and the resolved config to ``output_dir``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets

from densekit.data.qrels import load_qrels
from densekit.data.runs import Run
from densekit.evaluation.exact import ExactEvaluator
from densekit.evaluation.fusion_tuning import tune_weights
from densekit.recipes import distill, rerank
from densekit.recipes.config import RecipeConfig
from densekit.recipes.data import RecipeData, load_data
from densekit.recipes.fine_tuning import (
    ZERO_SHOT,
    beats_zero_shot,
    fine_tune,
    keep_zero_shot,
    kept_run,
)
from densekit.recipes.model_index import ModelIndex, bf16, encoder_lengths, model_run
from densekit.recipes.results import METRICS, Recorder, Results, describe_kept, write_results
from densekit.recipes.resume import RecipeFolder, files_stamp, key, plain_run
from densekit.resources import bundled_model_path
from densekit.retrieval.bm25 import BM25Index
from densekit.retrieval.fusion import fuse
from densekit.retrieval.mine import MineReport, mine_negatives, write_training_file
from densekit.search.folder import write_searcher_folder

logger = logging.getLogger("densekit.recipe")


class Stopwatch:
    """Seconds spent per stage, for the table and the report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        logger.info("== %s", name)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start


def bm25_index_run(index: BM25Index, queries: datasets.Dataset, depth: int) -> Run:
    """The BM25 run of ``queries`` over an index built once."""
    return dict(zip(queries["query_id"], index.search(list(queries["text"]), depth), strict=True))


def mining_run(config: RecipeConfig, dense: Run, bm25: Run) -> Run:
    """The run negatives are mined from: the dense one, BM25's, or their fusion (``hybrid``:
    equal-weight minmax fusion, so a passage near the top of either is a candidate)."""
    if config.mine_source == "dense":
        return dense
    if config.mine_source == "bm25":
        return bm25
    return fuse([bm25, dense], "weighted", weights=(0.5, 0.5), depth=config.depth).run


def mine(config: RecipeConfig, data: RecipeData, run: Run, out: Path) -> tuple[Path, MineReport]:
    """Hard negatives for the train queries from ``run``, written as a training file."""
    train_run = {q: run[q] for q in data.train_qrels if q in run}
    negatives, report = mine_negatives(
        train_run,
        data.train_qrels,
        range_min=config.mine_from,
        range_max=config.mine_to,
        negative_number=config.negatives,
        seed=config.seed,
        shift_by_positives=config.mine_shift,
    )
    train_file = out / "train.mined.jsonl"
    queries = data.queries_of(data.train_qrels)
    write_training_file(train_file, negatives, data.train_qrels, queries, data.corpus)
    logger.info("mining: %s", "; ".join(report.lines()))
    return train_file, report


def hybrids(
    record: Recorder, runs: dict[str, Run], weights: dict[str, tuple] | None = None
) -> dict[str, tuple]:
    """``bm25+<system>`` rows: weighted fusion (minmax) of BM25 with each dense run. Without
    ``weights`` they are tuned on the recorder's qrels (dev); the test split reuses dev's."""
    chosen: dict[str, tuple] = {}
    for system in ("zero-shot", "fine-tuned"):
        start = time.perf_counter()
        pair = [
            {q: h for q, h in runs[name].items() if q in record.qrels} for name in ("bm25", system)
        ]
        if weights is None:
            chosen[system] = tune_weights(pair, record.qrels, METRICS[0], step=0.1).weights
        else:
            chosen[system] = weights[system]
        fused = fuse(pair, "weighted", weights=chosen[system], depth=100)
        record(f"bm25+{system}", fused.run, time.perf_counter() - start)
        record.results[f"bm25+{system}"]["bm25_weight"] = chosen[system][0]
    return chosen


def exact_dev(config: RecipeConfig, data: RecipeData, queries: datasets.Dataset) -> ExactEvaluator:
    """The exact dev search a fine-tuning round is evaluated with (its runs kept)."""
    return ExactEvaluator(
        data.corpus, queries, data.dev_qrels, METRICS, config.depth, bf16=bf16(config),
        keep_runs=True,
    )  # fmt: skip


def run_recipe(config: RecipeConfig, quick: bool = False, overwrite: bool = False) -> Results:
    """Run every stage; returns the dev table ``{system: {metric: value, "seconds": t}}``.

    ``output_dir`` is checked first and written last (see :mod:`densekit.recipes.resume`): a
    rerun after a failure or a kill resumes from the stages it had finished."""
    config.check()
    if quick:
        config.shrink()
    folder = RecipeFolder(config.output_dir, overwrite)
    folder.check()
    out, work = folder.out, folder.work
    data = load_data(config)
    folder.start()
    config.save(work)
    watch, dev, runs = Stopwatch(), Recorder(work, "dev", data.dev_qrels), {}
    dev_queries = data.queries_of(data.dev_qrels)
    both = datasets.concatenate_datasets([dev_queries, data.queries_of(data.train_qrels)])
    base = config.model or bundled_model_path()
    keys = stage_keys(config, base)
    bm25 = None
    if (done := folder.done("bm25", keys["bm25"])) is None:
        with watch.stage("bm25"):  # train queries too: BM25 can be a mining source
            bm25 = BM25Index.build(data.corpus)
            runs["bm25"] = bm25_index_run(bm25, both, config.depth)
        folder.record("bm25", keys["bm25"], _stage_value(runs["bm25"], watch, "bm25"))
    else:
        runs["bm25"], watch.seconds["bm25"] = done["run"], done["seconds"]
    dev("bm25", runs["bm25"], watch.seconds["bm25"])
    zero_shot: ModelIndex | str = base  # the encoded corpus, kept to score the test split
    if (done := folder.done("zero-shot", keys["zero-shot"])) is None:
        with watch.stage("zero-shot"):
            zero_shot = ModelIndex(config, base, data.corpus)
            runs["zero-shot"] = zero_shot.run(both)
        folder.record(
            "zero-shot", keys["zero-shot"], _stage_value(runs["zero-shot"], watch, "zero-shot")
        )
    else:
        runs["zero-shot"], watch.seconds["zero-shot"] = done["run"], done["seconds"]
    dev("zero-shot", runs["zero-shot"], watch.seconds["zero-shot"])
    train_file = work / "train.mined.jsonl"
    done = folder.done("mine", keys["mine"])
    if done is None or not train_file.is_file():
        with watch.stage("mine"):
            source = mining_run(config, runs["zero-shot"], runs["bm25"])
            train_file, report = mine(config, data, source, work)
        folder.record("mine", keys["mine"], {"report": asdict(report), **watch.seconds})
    else:
        report, watch.seconds["mine"] = MineReport(**done["report"]), done["mine"]
    done = folder.done("fine-tune", keys["fine-tune"])
    if done is None or not (work / "model").is_dir():
        with watch.stage("fine-tune"):
            evaluator = exact_dev(config, data, dev_queries)
            kept = fine_tune(config, base, train_file, work / "model", evaluator)
            if not beats_zero_shot(kept, dev.results["zero-shot"][METRICS[0]]):
                keep_zero_shot(kept, base, work / "model")
            logger.info("fine-tuning kept %s", describe_kept(kept))
        with watch.stage("fine-tuned search"):
            if kept["checkpoint"] == ZERO_SHOT:  # its dev run and, unless resumed, its index
                runs["fine-tuned"] = {q: runs["zero-shot"][q] for q in dev.qrels}
                tuned = zero_shot
                if isinstance(zero_shot, str):
                    tuned = ModelIndex(config, str(work / "model"), data.corpus)
            else:
                tuned = ModelIndex(config, str(work / "model"), data.corpus)
                runs["fine-tuned"] = kept_run(kept, evaluator) or tuned.run(dev_queries)
        value = {"kept": kept, "run": plain_run(runs["fine-tuned"]), "seconds": watch.seconds}
        folder.record("fine-tune", keys["fine-tune"], value)
    else:
        kept, runs["fine-tuned"] = done["kept"], done["run"]
        kept["evaluations"] = [tuple(e) for e in kept["evaluations"]]
        for stage in ("fine-tune", "fine-tuned search"):
            watch.seconds[stage] = done["seconds"][stage]
        tuned = ModelIndex(config, str(work / "model"), data.corpus)
    stages = ("mine", "fine-tune", "fine-tuned search")
    dev("fine-tuned", runs["fine-tuned"], sum(watch.seconds[s] for s in stages))
    with watch.stage("hybrid"):
        weights = hybrids(dev, runs)
    choice, distilled = None, None
    if config.rerank:  # after every first stage: the reranker is trained on the mined file
        trained = rerank.train_stage(
            config,
            folder,
            keys,
            dev,
            data.corpus,
            dev_queries,
            config.rerank_model or base,
            train_file,
            watch.seconds,
        )
        if config.distill:
            with watch.stage("distill"):
                distilled = distill.distill_stage(
                    config,
                    folder,
                    keys["distill"],
                    dev.results["fine-tuned"][METRICS[0]],
                    trained[0],
                    train_file,
                    exact_dev(config, data, dev_queries),
                )
            watch.seconds["distill"] = distilled.summary["seconds"]  # as recorded, if resumed
            if distilled.kept:  # the second round is the dense first stage from here on
                runs["fine-tuned"] = distilled.run
                stages = ("mine", "fine-tune", "fine-tuned search", "reranker", "distill")
                dev("fine-tuned", runs["fine-tuned"], sum(watch.seconds[s] for s in stages))
                tuned = ModelIndex(config, str(work / distill.FOLDER), data.corpus)
                with watch.stage("hybrid"):
                    weights = hybrids(dev, runs)
        choice = rerank.rerank_dev(
            dev,
            trained,
            config.rerank_depth,
            (data.corpus, dev_queries),
            (folder, keys["rerank"]),
            watch.seconds,
        )
    else:
        rerank.forget(work)
    if distilled is None:
        distill.forget(work)
    model_dir = work / (distill.FOLDER if distilled and distilled.kept else "model")
    bm25 = bm25 or BM25Index.build(data.corpus)
    with watch.stage("searcher"):
        write_searcher_folder(
            work / "searcher",
            model_dir,
            Path(config.data_dir) / "corpus.jsonl",
            (tuned.doc_ids, tuned.index),
            bm25,
            weights["fine-tuned"][0],
            config.depth,
            encoder_lengths(config),
            (dev_queries, data.dev_qrels),
            overwrite=True,
            reranker=work / rerank.FOLDER if choice else None,
            rerank_depth=choice.depth if choice else None,
        )
    systems = {"bm25": None, "zero-shot": zero_shot, "fine-tuned": tuned}
    tables = {"dev": dev}
    if data.test_qrels_path:
        tables["test"] = evaluate_test(config, data, systems, work, weights, bm25, choice)
    extra = {
        "mining": asdict(report),
        "dev_queries": len(data.dev_qrels),
        "stage_seconds": watch.seconds,
        "kept_checkpoint": kept,
    }
    if choice:
        extra["rerank"] = choice.summary()
    if distilled:
        extra["distill"] = distilled.summary
    text = write_results(work, tables, extra)
    folder.finish()
    print(text)
    print(usage_lines(out))
    return dev.results


def stage_keys(config: RecipeConfig, base: str) -> dict[str, str]:
    """Each resumable stage's key: its inputs and the settings it reads, chained."""
    c = config.resolved()
    pick = lambda *names: {name: c[name] for name in names}  # noqa: E731
    data = key(
        files_stamp(Path(config.data_dir) / "corpus.jsonl"),
        files_stamp(Path(config.data_dir) / "queries.jsonl"),
        files_stamp(Path(config.data_dir) / "qrels"),
        pick("dev_size", "seed", "max_train_queries", "max_dev_queries", "max_corpus"),
    )
    model = key(base, files_stamp(base))
    keys = {"bm25": key("bm25", data, c["depth"])}
    lengths = pick("query_max_len", "passage_max_len", "depth", "precision")
    keys["zero-shot"] = key("zero-shot", data, model, lengths)
    mining = pick("mine_source", "mine_from", "mine_to", "mine_shift", "negatives", "seed")
    keys["mine"] = key("mine", keys["bm25"], keys["zero-shot"], mining)
    skipped = ("output_dir", "data_dir", "model")
    training = {
        k: v for k, v in c.items() if k not in skipped and not k.startswith(("rerank", "distill"))
    }
    keys["fine-tune"] = key("fine-tune", keys["mine"], data, model, training)
    memory_only = ("rerank_depth", "rerank_chunk_size")  # the depth is the rerank stage's
    reranker = pick(*(k for k in c if k.startswith("rerank_") and k not in memory_only))
    reranker.update(pick("warmup_ratio", "seed", "precision", "positive_sampling"))
    keys["reranker"] = key("reranker", keys["mine"], model, reranker)
    distilling = pick("distill_epochs", "distill_group_size", "distill_learning_rate")
    keys["distill"] = key("distill", keys["reranker"], keys["fine-tune"], distilling)
    first_stage = (keys["fine-tune"], c["distill"] and keys["distill"])
    keys["rerank"] = key("rerank", keys["reranker"], *first_stage, c["rerank_depth"])
    return keys


def _stage_value(run: Run, watch: Stopwatch, stage: str) -> dict[str, Any]:
    return {"run": plain_run(run), "seconds": watch.seconds[stage]}


def usage_lines(out: Path) -> str:
    """How to use what the recipe left: search from Python, serve over HTTP."""
    return (
        f"\nSearch it from Python:\n"
        f"    from densekit.search import load_searcher\n"
        f"    searcher = load_searcher({str(out)!r})  # hybrid, dev-tuned weight\n"
        f"    for hit in searcher.search('your query', k=10): print(hit.rank, hit.docid, hit.title)\n"
        f"Serve it (HTTP API and a page at http://127.0.0.1:8000/):\n"
        f"    densekit serve {out}"
    )


def evaluate_test(
    config: RecipeConfig,
    data: RecipeData,
    systems: dict[str, ModelIndex | str | None],
    out: Path,
    weights: dict[str, tuple],
    bm25: BM25Index,
    choice: rerank.RerankChoice | None = None,
) -> Recorder:
    """The last stage: read the test qrels and score every finished system once (the hybrid
    and rerank rows with the weights, first stage and depth chosen on dev). A system given as a
    :class:`ModelIndex` searches the corpus it already encoded; one given as a model folder (a
    resumed stage) encodes it again."""
    qrels = load_qrels(data.test_qrels_path)
    queries = data.queries_of(qrels)
    test, runs = Recorder(out, "test", qrels), {}
    for system, model in systems.items():
        start = time.perf_counter()
        if model is None:
            runs[system] = bm25_index_run(bm25, queries, config.depth)
        elif isinstance(model, ModelIndex):
            runs[system] = model.run(queries)
        else:
            runs[system] = model_run(config, model, data.corpus, queries)
        test(system, runs[system], time.perf_counter() - start)
    hybrids(test, runs, weights)
    if choice:
        rerank.rerank_split(test, choice, data.corpus, queries)
    return test
