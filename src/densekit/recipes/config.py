"""The recipe's knobs: one dataclass, every field a flag, loadable from YAML or JSON.

The resolved config (defaults, file, then flags) is written into the output folder, so a
result can always be traced back to what produced it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from densekit.config_files import read_mapping
from densekit.errors import ConfigError
from densekit.resources import bundled_data_dir

MINE_SOURCES = ("dense", "bm25", "hybrid")
MAX_RERANK_DEPTH = 1000  # what a searcher folder accepts (densekit.search.folder)


@dataclass
class RecipeConfig:
    """Data, model and training knobs of the retriever recipe (defaults: the SciFact setting)."""

    data_dir: str = field(default_factory=lambda: str(bundled_data_dir()))
    output_dir: str = "runs/scifact"
    model: str | None = None
    dev_size: int = 200
    seed: int = 2026
    train_seed: int | None = None  # fine-tuning alone (none: seed): repeats on the same dev split
    epochs: float = 2.0
    batch_size: int = 32
    group_size: int = 2
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    temperature: float = 0.05
    symmetric_loss: bool = False
    query_max_len: int = 64
    passage_max_len: int = 256
    negatives: int = 15
    mine_source: str = "hybrid"  # which run negatives come from: dense, bm25 or hybrid (both fused)
    mine_from: int = 3
    mine_to: int = 50
    mine_shift: bool = True  # a query with k judged positives is mined from rank max(from, k)
    # auto: one per epoch, epochs x judged positives (<= max_positives) where they average 2+
    train_positives: str = "auto"
    max_positives: int = 4  # bounds auto's epoch factor and all's examples per query per epoch
    positive_sampling: str = "grade"  # a no-op on binary qrels (SciFact): every grade is 1
    mask_false_negatives: bool = True
    depth: int = 100
    precision: str = "auto"
    grad_cache: bool = True
    gc_chunk_size: int = 16  # passages per GradCache chunk: bounds the training step memory
    eval_strategy: str = "epoch"  # exact dev evaluation: epoch, steps (every eval_steps) or no
    eval_steps: int = 0
    max_train_queries: int | None = None
    max_dev_queries: int | None = None
    max_corpus: int | None = None
    # opt-in until measured: train a cross-encoder, rerank the dev-best first stage
    rerank: bool = False
    rerank_depth: int = 100
    rerank_model: str | None = None  # a cross-encoder to start from (default: --model)
    rerank_epochs: float = 1.0
    rerank_group_size: int = 8
    rerank_batch_size: int = 16
    rerank_chunk_size: int = 4  # queries per forward/backward: bounds the step's memory
    rerank_learning_rate: float = 2e-5
    # the head's peak rate when it starts at random (no --rerank_model); None: the body's
    rerank_head_learning_rate: float | None = None
    rerank_max_len: int = 256
    # opt-in, with --rerank: a second bi-encoder round on the cross-encoder's scores, kept
    # only when it beats the first round on dev
    distill: bool = False
    distill_epochs: float = 1.0
    distill_group_size: int = 8
    distill_learning_rate: float = 2e-5

    def shrink(self) -> None:
        """The few-minute ``--quick`` variant: 256 train and 100 dev queries, 1,500 passages."""
        self.epochs = min(self.epochs, 1.0)
        self.passage_max_len = 128
        self.negatives = 7
        self.max_train_queries, self.max_dev_queries, self.max_corpus = 256, 100, 1500

    def check(self) -> None:
        """Refuse settings that would only fail after minutes of work."""
        if self.eval_strategy not in ("epoch", "steps", "no"):
            raise ConfigError(f"--eval_strategy {self.eval_strategy}: use epoch, steps or no")
        if self.mine_source not in MINE_SOURCES:
            raise ConfigError(f"--mine_source {self.mine_source}: use {', '.join(MINE_SOURCES)}")
        if self.train_positives not in ("one", "all", "auto"):
            raise ConfigError(f"--train_positives {self.train_positives}: use one, all or auto")
        if self.max_positives < 1:
            raise ConfigError(f"--max_positives {self.max_positives}: use 1 or more")
        if self.positive_sampling not in ("grade", "uniform"):
            raise ConfigError(f"--positive_sampling {self.positive_sampling}: use grade or uniform")
        if self.eval_strategy == "steps" and self.eval_steps < 1:
            raise ConfigError("--eval_strategy steps needs --eval_steps N (N >= 1)")
        if self.rerank:
            self._check_rerank()
        if self.distill:
            self._check_distill()

    def _check_rerank(self) -> None:
        if not 1 <= self.rerank_depth <= MAX_RERANK_DEPTH:
            raise ConfigError(f"--rerank_depth {self.rerank_depth}: use 1..{MAX_RERANK_DEPTH}")
        if self.rerank_group_size < 2:  # the listwise loss compares the positive to negatives
            raise ConfigError(f"--rerank_group_size {self.rerank_group_size}: use 2 or more")
        if self.rerank_max_len < 2:
            raise ConfigError(f"--rerank_max_len {self.rerank_max_len}: use 2 or more")
        if self.rerank_batch_size < 1 or self.rerank_epochs <= 0 or self.rerank_chunk_size < 1:
            raise ConfigError(
                "--rerank_batch_size, --rerank_chunk_size and --rerank_epochs must be positive"
            )

    def _check_distill(self) -> None:
        if not self.rerank:
            raise ConfigError("--distill true needs --rerank true: its teacher is the reranker")
        if self.distill_group_size < 2:  # the KL compares the positive with negatives
            raise ConfigError(f"--distill_group_size {self.distill_group_size}: use 2 or more")
        if self.distill_epochs <= 0 or self.distill_learning_rate <= 0:
            raise ConfigError("--distill_epochs and --distill_learning_rate must be positive")

    def resolved(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: str | Path) -> None:
        (Path(folder) / "recipe_config.json").write_text(
            json.dumps(self.resolved(), indent=2) + "\n", encoding="utf-8"
        )


def _kind(name: str) -> type:
    hint = str(RecipeConfig.__dataclass_fields__[name].type)
    for kind in (bool, int, float):
        if hint.startswith(kind.__name__):
            return kind
    return str


# one --help line per field; the default is appended from RecipeConfig
HELP = {
    "data_dir": "BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/train.tsv)",
    "output_dir": "where runs, models and results.json go",
    "model": "model to start from (none: the bundled all-MiniLM-L6-v2)",
    "dev_size": "training queries held out as the dev split",
    "seed": "seed of the dev split, mining and (unless --train_seed) fine-tuning",
    "train_seed": "seed of fine-tuning alone (batch order, negatives sampled, dropout): repeat "
    "the training on the same dev split and mined file to see its spread (none: --seed)",
    "epochs": "fine-tuning epochs",
    "batch_size": "queries per optimizer step",
    "group_size": "passages per query: 1 positive + n-1 mined negatives",
    "learning_rate": "peak AdamW learning rate",
    "warmup_ratio": "fraction of the steps spent warming up",
    "temperature": "softmax temperature of the contrastive loss",
    "symmetric_loss": "add the passage-to-query loss (true/false)",
    "query_max_len": "query tokens kept",
    "passage_max_len": "passage tokens kept",
    "negatives": "hard negatives mined per query",
    "mine_source": "run the negatives come from: dense, bm25 or hybrid (both fused)",
    "mine_from": "first rank mined (0-based; skips likely unjudged positives)",
    "mine_to": "rank after the last one mined",
    "mine_shift": "a query with k judged positives is mined from rank max(--mine_from, k), same "
    "window width: many judged documents suggest unjudged relevant ones near the top (true/false)",
    "train_positives": "one: a positive sampled per query per epoch; all: one training example "
    "per (query, judged positive) pair, up to --max_positives per query; auto: one, and where "
    "the training queries average 2 or more judged positives, the epochs multiplied by that "
    "mean (rounded, at most --max_positives) so training reaches the judged documents",
    "max_positives": "auto's largest epoch factor; with all, the most examples per query per "
    "epoch, their positives drawn afresh each epoch (by grade where graded)",
    "positive_sampling": "grade: where the qrels grade a query's positives, its positive each "
    "epoch is drawn in proportion to the grade (the gain nDCG counts), so the most relevant are "
    "trained on most; uniform: every judged positive alike (the same on binary qrels)",
    "mask_false_negatives": "leave a query's judged positives out of its in-batch negatives "
    "(true/false)",
    "depth": "search depth of every run",
    "precision": "auto (bf16 where native, else fp32) | fp32 | bf16",
    "grad_cache": "GradCache: large batches in bounded memory (true/false)",
    "gc_chunk_size": "passages per GradCache chunk: bounds the training step memory",
    "eval_strategy": "exact dev evaluation during training: epoch, steps or no (final model "
    "only); the best evaluation is kept, and the zero-shot model when none beats it",
    "eval_steps": "with --eval_strategy steps: evaluate every N steps",
    "max_train_queries": "cap on training queries (none: all)",
    "max_dev_queries": "cap on dev queries (none: all)",
    "max_corpus": "cap on corpus passages (none: all)",
    "rerank": "opt-in (from the bundled bi-encoder it did not learn on SciFact in this budget: "
    "see --rerank_model): train a cross-encoder from --model on the "
    "mined training file (train queries only), rerank the dev-best first stage's top "
    "--rerank_depth, fuse its scores with that stage (weight tuned on dev) and name it in the "
    "searcher folder; costs a cross-encoder training and --rerank_depth pair scorings per "
    "dev/test query (true/false)",
    "rerank_depth": "with --rerank: first-stage hits reranked per query",
    "rerank_model": "with --rerank: the model the cross-encoder starts from, e.g. a "
    "sentence-transformers CrossEncoder folder (none: --model)",
    "rerank_epochs": "with --rerank: cross-encoder training epochs",
    "rerank_group_size": "with --rerank: pairs per query in training: 1 positive + n-1 negatives",
    "rerank_batch_size": "with --rerank: queries per cross-encoder optimizer step",
    "rerank_chunk_size": "with --rerank: queries per forward and backward pass of the "
    "cross-encoder; the step's gradient is still the whole batch's (accumulated), so this bounds "
    "memory only (a divisor of --rerank_batch_size is used: the largest not above it)",
    "rerank_learning_rate": "with --rerank: peak AdamW learning rate of the cross-encoder",
    "rerank_max_len": "with --rerank: tokens kept per (query, passage) pair",
    "rerank_head_learning_rate": "with --rerank: peak learning rate of the cross-encoder's new "
    "head (pooler, classifier) when it starts from --model (not with --rerank_model, whose head "
    "is trained); default: --rerank_learning_rate",
    "distill": "opt-in, with --rerank true: the cross-encoder scores every pair of the mined "
    "file and a second bi-encoder round, from the fine-tuned model, learns those scores (KL "
    "distillation); kept only if its dev nDCG@10 beats the first round's, and then it is the "
    "recipe's dense model (true/false)",
    "distill_epochs": "with --distill: epochs of the second round",
    "distill_group_size": "with --distill: passages per query scored by the teacher: 1 positive "
    "+ n-1 mined negatives",
    "distill_learning_rate": "with --distill: peak AdamW learning rate of the second round",
}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (``--batch_size 64``, ``--grad_cache false``)."""
    defaults = asdict(RecipeConfig(data_dir="the bundled SciFact data"))
    for item in fields(RecipeConfig):
        kind = _kind(item.name)
        default = defaults[item.name]
        shown = (
            f"{HELP[item.name]} (default: {default})" if default is not None else HELP[item.name]
        )
        parser.add_argument(
            f"--{item.name}",
            type=_parse_bool if kind is bool else kind,
            default=None,
            metavar=kind.__name__.upper(),
            help=shown.replace("%", "%%"),
        )


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_config(args: argparse.Namespace) -> RecipeConfig:
    """Defaults, then ``--config FILE``, then flags given on the command line."""
    config = RecipeConfig()
    known = RecipeConfig.__dataclass_fields__
    config_file = getattr(args, "config", None)
    values = read_mapping(config_file, known, "recipe setting") if config_file else {}
    values.update({k: v for k, v in vars(args).items() if v is not None})
    for key, value in values.items():
        if key in RecipeConfig.__dataclass_fields__ and value is not None:
            kind = _kind(key)
            if kind is bool and isinstance(value, str):  # bool("false") would be True
                value = _parse_bool(value)
            setattr(config, key, value if kind is str or isinstance(value, kind) else kind(value))
    return config
