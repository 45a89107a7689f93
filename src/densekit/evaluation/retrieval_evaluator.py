"""Trove's ``RetrievalEvaluator``: full-corpus evaluation and hard-negative mining of a model
over a ``MultiLevelDataset`` (its qrels, queries and corpora), on densekit's exact search.

``evaluate()`` encodes the dataset's corpus and queries, searches exactly and scores nDCG, MRR,
recall, MAP and P at ``ir_metrics_k_values`` (trec_eval semantics), written to
``output_dir/evaluation_results/metrics.json``. ``mine_hard_negatives()`` keeps the
``search_topk`` best unannotated documents per query (searching deeper by the most annotated
documents any query has, as Trove does), written to ``output_dir/hard_negative_mining/
mined_qrels.tsv`` (or ``.jsonl``, Trove's grouped form).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import TrainingArguments

from densekit.atomic import atomic_open
from densekit.compat.flags import notice
from densekit.data.runs import Run, ranked
from densekit.encoders.batched import BatchedTextEncoder
from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate
from densekit.retrieval.dense import dense_run

logger = logging.getLogger(__name__)
_KINDS = ("ndcg", "mrr", "recall", "map", "p")


@dataclass
class EvaluationArguments(TrainingArguments):
    """Trove's evaluation arguments over HF ``TrainingArguments`` (batch size, precision)."""

    output_dir: str | None = field(default=None, metadata={"help": "where results are written"})
    per_device_matmul_batch_size: int = field(default=256, metadata={"help": "queries per search"})
    precompute_corpus_embs: bool = field(default=False, metadata={"help": "always done here"})
    encoding_cache_dir: str | None = field(default=None, metadata={"help": "not cached here"})
    ir_metrics_k_values: str = field(default="1,3,5,10,100", metadata={"help": "cut-offs"})
    ir_metrics_relevance_threshold: int | None = field(default=None, metadata={"help": ">= 1"})
    search_topk: int | None = field(default=None, metadata={"help": "default: largest k"})
    no_annot_in_mined_hn: bool = field(default=True, metadata={"help": "skip judged docs"})
    merge_mined_qrels: bool = field(default=False, metadata={"help": "one file here anyway"})
    pbar_mode: str | None = field(default="all", metadata={"help": "Trove; no effect"})
    print_mode: str | None = field(default="main", metadata={"help": "Trove; no effect"})
    cleanup_temp_artifacts: bool = field(default=True, metadata={"help": "nothing temporary"})
    save_eval_topk_logits: bool = field(default=False, metadata={"help": "write the run too"})
    output_qrel_format: str = field(default="tsv", metadata={"help": "tsv | grouped"})
    fair_sharding: bool = field(default=False, metadata={"help": "one process here"})
    broadcast_output: bool = field(default=True, metadata={"help": "one process here"})
    trove_logging_mode: str = field(default="all", metadata={"help": "Trove; no effect"})

    def __post_init__(self) -> None:
        if self.output_qrel_format not in ("tsv", "grouped"):
            raise ConfigError(f"--output_qrel_format {self.output_qrel_format}: tsv or grouped")
        if not torch.cuda.is_available():
            self.use_cpu = True
        if self.encoding_cache_dir:
            notice(f"--encoding_cache_dir {self.encoding_cache_dir} is ignored: vectors stay in memory")  # fmt: skip
        super().__post_init__()

    @property
    def k_values(self) -> list[int]:
        try:
            return sorted({int(k) for k in self.ir_metrics_k_values.split(",")})
        except ValueError:
            raise ConfigError(f"--ir_metrics_k_values {self.ir_metrics_k_values!r}") from None


class RetrievalEvaluator:
    """Evaluate a model, or mine hard negatives with it, over one or several datasets."""

    def __init__(
        self,
        args: EvaluationArguments,
        model,
        tokenizer=None,
        data_collator=None,
        eval_dataset=None,
        compute_metrics=None,
        **_: Any,
    ) -> None:
        self.args, self.model, self.eval_dataset = args, model, eval_dataset
        self.tokenizer = tokenizer if tokenizer is not None else data_collator.tokenizer
        self.collator = data_collator
        if compute_metrics is not None:
            notice("compute_metrics is not used: metrics follow --ir_metrics_k_values")

    def _datasets(self, dataset) -> dict[str, Any]:
        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None:
            raise ConfigError("there is no dataset to evaluate")
        return dataset if isinstance(dataset, dict) else {"eval": dataset}

    @contextlib.contextmanager
    def _lengths(self):
        """The collator's lengths (Trove encodes with them) for the duration of a search."""
        saved = self.model.settings
        if self.collator is not None:
            self.model.settings = dataclasses.replace(
                saved,
                query_max_len=self.collator.query_max_len,
                passage_max_len=self.collator.passage_max_len,
            )
        try:
            yield
        finally:
            self.model.settings = saved

    def _search(self, dataset, depth: int) -> Run:
        queries = datasets.Dataset.from_dict(
            {"query_id": dataset.qids, "text": [dataset.query_text[q] for q in dataset.qids]}
        )
        self.model.to(self.args.device).eval()
        with torch.no_grad(), self._lengths():
            encoder = BatchedTextEncoder(self.model, self.tokenizer, "torch", self.args.bf16)
            return dense_run(encoder, dataset.corpus.table, queries, depth)

    def evaluate(self, eval_dataset=None) -> dict[str, dict[str, Any]]:
        """``{name: {"metrics": {...}, "logits": run or None}}`` per dataset, written to disk."""
        ks = self.args.k_values
        metrics = [f"{kind}@{k}" for kind in _KINDS for k in ks]
        threshold = self.args.ir_metrics_relevance_threshold or 1
        results = {}
        for name, dataset in self._datasets(eval_dataset).items():
            run = self._search(dataset, self.args.search_topk or max(ks))
            qrels = {q: {d: int(s) for d, s in docs.items()} for q, docs in dataset.scores.items()}
            means = evaluate(run, qrels, metrics, threshold)[1]
            results[name] = {"metrics": means, "logits": run if self.args.save_eval_topk_logits else None}  # fmt: skip
            print(json.dumps({name: means}, indent=2))
        self._write(results, "evaluation_results")
        return results

    def mine_hard_negatives(self, eval_dataset=None) -> dict[str, Run]:
        """The ``search_topk`` most similar unannotated documents of every query, per dataset."""
        topk = self.args.search_topk or max(self.args.k_values)
        mined = {}
        for name, dataset in self._datasets(eval_dataset).items():
            judged = dataset.scores if self.args.no_annot_in_mined_hn else {}
            extra = max((len(d) for d in judged.values()), default=0)
            run = self._search(dataset, topk + extra)
            mined[name] = {
                qid: dict([hit for hit in ranked(hits) if hit[0] not in judged.get(qid, {})][:topk])
                for qid, hits in run.items()
            }
        self._write({n: {"mined": r} for n, r in mined.items()}, "hard_negative_mining")
        return mined

    def _write(self, results: dict[str, dict[str, Any]], kind: str) -> None:
        if not self.args.output_dir:
            return
        for name, result in results.items():
            folder = Path(self.args.output_dir, kind)
            folder = folder / name if len(results) > 1 else folder
            folder.mkdir(parents=True, exist_ok=True)
            if result.get("metrics") is not None:
                with atomic_open(folder / "metrics.json", "w", encoding="utf-8") as handle:
                    handle.write(json.dumps(result["metrics"], indent=2) + "\n")
            qrels = result.get("mined") or result.get("logits")
            if qrels is not None:
                stem = "mined_qrels" if kind == "hard_negative_mining" else "logits"
                self._write_qrels(folder / stem, qrels)

    def _write_qrels(self, stem: Path, run: Run) -> None:
        """Trove's output: tsv ``query-id corpus-id score``, or grouped jsonl per query."""
        if self.args.output_qrel_format == "grouped":
            with atomic_open(stem.with_suffix(".jsonl"), "w", encoding="utf-8") as handle:
                for qid, hits in run.items():
                    docids, scores = zip(*ranked(hits), strict=True) if hits else ((), ())
                    handle.write(json.dumps({"qid": qid, "docid": list(docids), "score": list(scores)}) + "\n")  # fmt: skip
            return
        with atomic_open(stem.with_suffix(".tsv"), "w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for qid, hits in run.items():
                handle.writelines(f"{qid}\t{docid}\t{score!r}\n" for docid, score in ranked(hits))


__all__ = ["EvaluationArguments", "RetrievalEvaluator"]
