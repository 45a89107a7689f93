"""Command-line arguments: canonical Tevatron-v2 names, with the seed toolkits' names as aliases.

Parsed with ``transformers.HfArgumentParser``; a single ``.json`` or ``.yaml`` file works too.
Fields left at ``None`` mean "not given": the model folder (densekit or sentence-transformers
config) then supplies the value, so the bundled MiniLM needs no flags.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import HfArgumentParser, TrainingArguments

from densekit import precision
from densekit.compat import apply as peer_apply
from densekit.compat.flags import check, find
from densekit.config_files import coerce_numbers, read_mapping
from densekit.errors import ConfigError
from densekit.hardware import hardware_problems
from densekit.modeling.config import pooling_name
from densekit.resources import bundled_model_path


def _alias(*names: str, help: str = "", **kwargs) -> dict:
    return {"aliases": list(names), "help": help, **kwargs}


def require_positive(args: object, *names: str) -> None:
    """One clear line for the first of ``names`` that is not a positive number."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be positive, got {value}")


@dataclass
class ModelArguments:
    """What to load and how to turn token states into one vector."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "HF model folder or hub name; default: the bundled all-MiniLM-L6-v2"},
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "defaults to the model"})
    cache_dir: str | None = field(default=None, metadata={"help": "HF cache folder"})
    pooling: str | None = field(
        default=None,
        metadata=_alias("--sentence_pooling_method", help="cls | mean | last (= eos, last_token)"),
    )
    normalize: bool | None = field(
        default=None, metadata=_alias("--normalized", help="L2-normalize embeddings")
    )
    temperature: float | None = field(
        default=None,
        metadata={"help": "softmax temperature; default 0.05 when normalizing, else 1.0"},
    )
    add_pooler: bool = field(default=False, metadata={"help": "linear projection after pooling"})
    projection_in_dim: int | None = field(default=None, metadata={"help": "pooler input size"})
    projection_out_dim: int | None = field(default=None, metadata={"help": "pooler output size"})
    untie_encoder: bool = field(default=False, metadata={"help": "separate query/passage towers"})
    encoder_class: str = field(
        default="default", metadata={"help": "Trove: a DefaultEncoder subclass's name or _alias"}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "refused if a model needs it"})
    use_peft: bool = field(default=False, metadata={"help": "Trove name of --lora"})
    temperature_learnable: bool = field(default=False, metadata={"help": "Trove; ignored"})
    loss: str = field(default="infonce", metadata={"help": "see `densekit losses`"})
    fine_tune_type: str = field(default="full", metadata={"help": "full (= sft) | lora | bitfit"})
    lora: bool = field(default=False, metadata={"help": "same as --fine_tune_type lora"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout"})
    lora_target_modules: str | None = field(
        default=None, metadata={"help": "comma list; default per model family"}
    )
    lora_name_or_path: str | None = field(default=None, metadata={"help": "adapter to continue"})
    load_in_4bit: bool = field(default=False, metadata={"help": "bitsandbytes 4-bit (GPU only)"})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa | eager | flash_attention_2"}
    )
    use_flash_attention: bool = field(
        default=False, metadata={"help": "PaddleNLP name: attn_implementation=flash_attention_2"}
    )
    # losses
    use_matryoshka: bool = field(default=False, metadata={"help": "Matryoshka loss"})
    matryoshka_dims: str = field(default="64,128,256,512,768", metadata={"help": "comma list"})
    matryoshka_loss_weights: str | None = field(
        default=None, metadata={"help": "comma list; default: 1 for every dim"}
    )
    margin: float = field(default=0.0, metadata={"help": "additive margin on the positive score"})
    use_inbatch_neg: bool = field(
        default=True, metadata={"help": "score against every passage in the batch"}
    )
    distil_temperature: float = field(default=1.0, metadata={"help": "teacher softmax temperature"})
    symmetric_loss: bool = field(default=False, metadata={"help": "add passage→query InfoNCE"})

    def __post_init__(self) -> None:
        if self.model_name_or_path is None:
            self.model_name_or_path = bundled_model_path()
        if self.fine_tune_type == "sft":
            self.fine_tune_type = "full"
        if self.lora or self.use_peft:
            self.fine_tune_type = "lora"
        if self.fine_tune_type not in ("full", "lora", "bitfit"):
            raise ConfigError(
                f"--fine_tune_type {self.fine_tune_type!r}: expected full, sft, lora or bitfit"
            )
        if self.pooling is not None:
            self.pooling = pooling_name(self.pooling)
        if isinstance(self.lora_target_modules, list):  # Trove writes them space-separated
            self.lora_target_modules = ",".join(self.lora_target_modules)
        check(find("temperature_learnable", "train"), self.temperature_learnable)
        if self.trust_remote_code:
            _check_remote_code(self.model_name_or_path)
        if self.use_flash_attention:
            self.attn_implementation = "flash_attention_2"

    def encoder_kwargs(self, data_args: DataArguments | None = None) -> dict[str, Any]:
        """Keyword arguments of ``densekit.modeling.factory.build_encoder`` for these flags.

        The mapping lives here, at the edge, so modeling never imports the argument layer.
        """
        data_args = data_args or DataArguments()
        return {
            "model_name_or_path": self.model_name_or_path,
            "cache_dir": self.cache_dir,
            "attn_implementation": self.attn_implementation,
            "load_in_4bit": self.load_in_4bit,
            "fine_tune_type": self.fine_tune_type,
            "lora": {
                "r": self.lora_r,
                "alpha": self.lora_alpha,
                "dropout": self.lora_dropout,
                "target_modules": self.lora_target_modules,
                "adapter_path": self.lora_name_or_path,
            },
            "pooling": self.pooling,
            "normalize": self.normalize,
            "temperature": self.temperature,
            "query_prefix": data_args.query_prefix,
            "passage_prefix": data_args.passage_prefix,
            "passage_field_separator": data_args.passage_field_separator,
            "query_max_len": data_args.query_max_len,
            "passage_max_len": data_args.passage_max_len,
            "append_eos_token": data_args.append_eos_token or None,
            "padding_side": data_args.padding_side,
            "untie_encoder": self.untie_encoder or None,
            "add_pooler": self.add_pooler,
            "projection_in_dim": self.projection_in_dim,
            "projection_out_dim": self.projection_out_dim,
        }


@dataclass
class DataArguments:
    """Where the training data is and how groups and texts are built."""

    dataset_path: str | None = field(
        default=None,
        metadata=_alias("--train_dir", help="train file(s) or folder(s) (also --train_data a b)"),
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "datasets.load_dataset name, or a local path"}
    )
    corpus_path: str | None = field(
        default=None, metadata={"help": "corpus for id-only training data (Tevatron v2)"}
    )
    train_group_size: int = field(
        default=8, metadata=_alias("--train_n_passages", "--group_size", help="1 pos + n-1 negs")
    )
    query_max_len: int = field(default=32, metadata=_alias("--q_max_len", help="query tokens kept"))
    passage_max_len: int = field(
        default=128, metadata=_alias("--p_max_len", help="passage tokens kept")
    )
    query_prefix: str | None = field(
        default=None,
        metadata=_alias(
            "--query_instruction_for_retrieval",
            help="text before each query (default: the model's)",
        ),
    )
    passage_prefix: str | None = field(
        default=None,
        metadata=_alias(
            "--passage_instruction_for_retrieval",
            help="text before each passage (default: the model's)",
        ),
    )
    passage_field_separator: str | None = field(
        default=None, metadata={"help": "joins title and text (default: the model's, else a space)"}
    )
    append_eos_token: bool = field(default=False, metadata={"help": "append EOS after truncation"})
    padding_side: str | None = field(default=None, metadata={"help": "right | left"})
    pad_to_multiple_of: int = field(default=8, metadata={"help": "dynamic padding multiple"})
    max_example_num_per_dataset: int = field(
        default=100_000_000, metadata={"help": "cap per training file"}
    )
    dataset_proc_num: int = field(default=1, metadata={"help": "processes to read data files"})
    train_positives: str = field(
        default="one",
        metadata={
            "help": "one: a positive sampled per query per epoch; all: one training example per "
            "(query, judged positive) pair"
        },
    )
    max_positives: int | None = field(
        default=None,
        metadata={
            "help": "with --train_positives all: at most this many examples per query per epoch, "
            "their positives drawn afresh each epoch (by grade where graded); none: every one"
        },
    )
    positive_sampling: str = field(
        default="grade",
        metadata={
            "help": "grade: a positive is drawn in proportion to its graded label (pos_grades) "
            "where the data grades them; uniform: every positive alike"
        },
    )
    passage_selection_strategy: str | None = field(
        default=None, metadata={"help": "MultiLevelDataset: most_relevant | random (Trove)"}
    )

    def __post_init__(self) -> None:
        if self.dataset_path is None and self.dataset_name is not None:
            self.dataset_path = self.dataset_name
        require_positive(
            self,
            "train_group_size",
            "query_max_len",
            "passage_max_len",
            "max_example_num_per_dataset",
            "dataset_proc_num",
        )
        if self.pad_to_multiple_of < 0:
            raise ConfigError("--pad_to_multiple_of must be 0 (off) or positive")
        if self.train_positives not in ("one", "all"):
            raise ConfigError(f"--train_positives {self.train_positives!r}: expected one or all")
        if self.max_positives is not None and self.max_positives < 1:
            raise ConfigError(f"--max_positives must be 1 or more, got {self.max_positives}")
        if self.positive_sampling not in ("grade", "uniform"):
            raise ConfigError(
                f"--positive_sampling {self.positive_sampling!r}: expected grade or uniform"
            )
        if self.padding_side not in (None, "left", "right"):
            raise ConfigError(f"--padding_side {self.padding_side!r}: expected left or right")


@dataclass
class RetrievalTrainingArguments(TrainingArguments):
    """HF TrainingArguments plus what a retriever needs (GradCache, cross-device negatives)."""

    output_dir: str | None = field(default=None, metadata={"help": "where the model is saved"})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "allow writing into a non-empty output_dir"}
    )
    negatives_cross_device: bool = field(
        default=False, metadata=_alias("--negatives_x_device", help="gather negatives over ranks")
    )
    mask_false_negatives: bool = field(
        default=True,
        metadata={
            "help": "leave passages judged relevant to a query (same docid, or same text) out of "
            "its in-batch negatives (infonce)"
        },
    )
    grad_cache: bool = field(default=False, metadata={"help": "GradCache large batches"})
    gc_q_chunk_size: int = field(default=4, metadata={"help": "GradCache query chunk"})
    gc_p_chunk_size: int = field(default=32, metadata={"help": "GradCache passage chunk"})
    gradient_checkpointing: bool = field(
        default=False, metadata=_alias("--recompute", help="recompute activations in backward")
    )
    dataloader_drop_last: bool = field(
        default=True, metadata={"help": "contrastive batches must be full"}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "kept for the collator"})
    eval_corpus: str | None = field(
        default=None, metadata={"help": "corpus for exact full-corpus evaluation during training"}
    )
    eval_queries: str | None = field(default=None, metadata={"help": "queries for it"})
    eval_qrels: str | None = field(default=None, metadata={"help": "qrels for it"})
    eval_metrics: str = field(
        default="ndcg@10,mrr@10,recall@100", metadata={"help": "metrics logged as eval_<name>"}
    )
    eval_depth: int = field(default=100, metadata={"help": "search depth of the exact evaluation"})
    precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 where native, else fp32) | fp32 | bf16 (= --bf16)"},
    )
    warmup_ratio: float | None = field(
        default=None, metadata={"help": "warmup fraction (transformers 4 name of --warmup_steps)"}
    )
    trove_logging_mode: str | None = field(default=None, metadata={"help": "Trove; ignored"})

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise ConfigError("--output_dir is required")
        self._warmup_from_ratio()
        if self.trove_logging_mode is not None:
            check(find("trove_logging_mode", "train"), self.trove_logging_mode)
        require_positive(
            self,
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "gc_q_chunk_size",
            "gc_p_chunk_size",
        )
        if self.learning_rate < 0 or self.num_train_epochs < 0:
            raise ConfigError("--learning_rate and --num_train_epochs must not be negative")
        self._check_exact_eval()
        if not torch.cuda.is_available():
            self.use_cpu = True
        self._resolve_precision()
        super().__post_init__()

    def _warmup_from_ratio(self) -> None:
        """transformers 5 dropped ``warmup_ratio``: a ``warmup_steps`` below 1 is the fraction."""
        if self.warmup_ratio is None:
            return
        if self.warmup_steps:
            raise ConfigError("give --warmup_ratio or --warmup_steps, not both")
        if not 0 <= self.warmup_ratio <= 1:
            raise ConfigError(f"--warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        self.warmup_steps = min(self.warmup_ratio, 1 - 1e-9)  # 1.0 would read as one step

    @property
    def exact_eval(self) -> bool:
        return bool(self.eval_corpus)

    def _check_exact_eval(self) -> None:
        """Exact evaluation needs all three files; best-model selection needs an eval set and
        a metric that is computed. Checked before anything is read or written."""
        given = [self.eval_corpus, self.eval_queries, self.eval_qrels]
        if any(given) and not all(given):
            raise ConfigError(
                "exact evaluation needs --eval_corpus, --eval_queries and --eval_qrels"
            )
        if self.exact_eval and str(self.eval_strategy) in ("no", "IntervalStrategy.NO"):
            self.eval_strategy = "epoch"
        metric = (self.metric_for_best_model or "").removeprefix("eval_")
        if self.load_best_model_at_end and not self.exact_eval and not metric:
            raise ConfigError(
                "--load_best_model_at_end needs an eval set (--eval_corpus/--eval_queries/"
                "--eval_qrels) and --metric_for_best_model"
            )
        computed = [m.strip().lower() for m in self.eval_metrics.split(",")]
        if self.exact_eval and metric and metric not in (*computed, "loss"):
            raise ConfigError(
                f"--metric_for_best_model {metric} is not computed; --eval_metrics gives "
                f"{', '.join(computed)}"
            )

    def _resolve_precision(self) -> None:
        """``--bf16`` and ``--fp16`` are explicit; otherwise ``--precision`` decides (``auto``:
        bf16 only where the device computes it natively)."""
        if self.fp16:
            return
        requested = "bf16" if self.bf16 else self.precision
        device = "cpu" if self.use_cpu else "cuda"
        self.bf16 = precision.resolve(requested, device) == "bf16"
        self.precision = "bf16" if self.bf16 else "fp32"


PARSER_TYPES = (ModelArguments, DataArguments, RetrievalTrainingArguments)


def _check_remote_code(model: str) -> None:
    """densekit runs no code shipped with a model: refuse one whose config asks for it."""
    import json
    from pathlib import Path

    config = Path(model) / "config.json"
    if config.is_file() and "auto_map" in json.loads(config.read_text("utf-8")):
        raise ConfigError(f"--trust_remote_code: {model} needs its own code; densekit runs none")
    check(find("trust_remote_code", "train"), True)


def build_parser() -> HfArgumentParser:
    """The parser for ``densekit train`` (also used to list flags in docs and tests)."""
    parser = HfArgumentParser(PARSER_TYPES)
    # HfArgumentParser wants a value after an Optional[bool] flag; a bare --normalize means True.
    for action in parser._actions:
        if action.dest == "normalize":
            action.nargs, action.const = "?", True
        if action.dest == "lora_target_modules":  # comma list (Tevatron) or words (Trove)
            action.nargs = "+"
    peer_apply.add_to_parser(parser, "train")
    return parser


def parse_train_args(
    argv: list[str] | None = None, check_hardware: bool = True
) -> tuple[ModelArguments, DataArguments, RetrievalTrainingArguments]:
    """Parse flags (or one .json/.yaml file) into the three argument dataclasses.

    With ``check_hardware`` a GPU-only flag on a CPU machine raises one clear ConfigError
    before any dataclass validation runs; without it such flags are dropped (used by tests
    that only check parsing of the seed command lines).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        return _parse_file(argv[0], check_hardware)
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        raise ConfigError(f"unknown flag(s): {' '.join(unknown)}")
    used, given = peer_apply.used_flags(parser, argv)
    values = peer_apply.translate_train(vars(namespace), used, given)
    return _to_dataclasses(values, check_hardware)


def _parse_file(path: str, check_hardware: bool):
    known = {f.name for dtype in PARSER_TYPES for f in dtype.__dataclass_fields__.values()}
    peer = {f.name for f in peer_apply.flags_for("train") if not f.on_parser}
    values = coerce_numbers(read_mapping(path, known | peer, what="flag"), PARSER_TYPES)
    used = set(values)
    values = {
        (peer_apply.DEST + k if k in peer and k not in known else k): v for k, v in values.items()
    }
    values = peer_apply.translate_train(values, used, set(values) & known)
    return _to_dataclasses(values, check_hardware)


def _to_dataclasses(values: dict, check_hardware: bool):
    from types import SimpleNamespace

    problems = hardware_problems(SimpleNamespace(**values))
    if problems and check_hardware:
        raise ConfigError(problems[0])
    if problems:
        values = {**values, "fp16": False, "deepspeed": None, "load_in_4bit": False}
        values["use_flash_attention"] = False
        if values.get("attn_implementation") == "flash_attention_2":
            values["attn_implementation"] = None
    out = []
    for dtype in PARSER_TYPES:
        names = {f.name for f in dtype.__dataclass_fields__.values() if f.init}
        try:
            out.append(dtype(**{k: v for k, v in values.items() if k in names}))
        except ValueError as exc:  # TrainingArguments validation
            raise ConfigError(str(exc).splitlines()[0]) from None
    return tuple(out)
