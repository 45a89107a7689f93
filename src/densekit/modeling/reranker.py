"""Cross-encoder rerankers: score ``(query, passage)`` jointly, one number per pair.

A bi-encoder embeds query and passage apart and compares vectors; a cross-encoder reads both in
one sequence, so every layer can relate query tokens to passage tokens (exact matches, word
order, negation) — more accurate and far slower, hence used on a first stage's top hits only.

The model is ``AutoModelForSequenceClassification(num_labels=1)``: for encoder backbones (BERT,
MiniLM, RoBERTa) the head reads the first token; for decoder backbones (LLaMA, Qwen2) transformers
scores the last non-padding token (located through ``config.pad_token_id``, which is set here
when the tokenizer lacks a pad token). The folder is therefore a plain HF sequence-classification
folder plus:

- ``densekit_reranker_config.json`` — max length, query/passage prefixes, the activation;
- the files sentence-transformers' ``CrossEncoder`` reads (ST 6: ``modules.json``,
  ``sentence_bert_config.json``, ``config_sentence_transformers.json``; ST 4/5: the
  ``sentence_transformers`` entry of ``config.json``; the max length as the tokenizer's
  ``model_max_length``), so ``CrossEncoder(folder).predict`` gives densekit's scores.

Which parameters train: all (the default), bias terms + the head (:meth:`apply_bitfit`), or LoRA
adapters + the head (:meth:`apply_lora`, peft, the head as ``modules_to_save``). A LoRA model's
checkpoints are adapter folders (``adapter_config.json`` + ``adapter_model.safetensors`` with the
head, the tokenizer and densekit's config); :meth:`merge_lora` folds the adapters into the
weights, so the final folder is a plain one (densekit and sentence-transformers load it alike).
:meth:`from_pretrained` loads an adapter folder too (its base named in densekit's config).

A folder saved by sentence-transformers (or any HF sequence-classification folder with one label)
loads here too, with the activation and max length ST would use. Prefixes are densekit's: ST's
``CrossEncoder`` does not prepend them, so a model trained with prefixes is scored by ST on the
texts with the prefixes added by the caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BatchEncoding,
    PreTrainedTokenizerBase,
)

from densekit.data.formatting import TextFormat
from densekit.errors import ConfigError, DataError
from densekit.modeling.first_token import first_token_scores
from densekit.modeling.pair_tokens import PairTokenizer, pad

logger = logging.getLogger(__name__)

CONFIG_NAME = "densekit_reranker_config.json"
# densekit's activation names -> the class path sentence-transformers stores and imports
ACTIVATIONS = {
    "identity": "torch.nn.modules.linear.Identity",
    "sigmoid": "torch.nn.modules.activation.Sigmoid",
    "tanh": "torch.nn.modules.activation.Tanh",
}
_ST_FILES = {
    "modules.json": [
        {
            "idx": 0,
            "name": "0",
            "path": "",
            "type": "sentence_transformers.base.modules.transformer.Transformer",
        }
    ],
    "sentence_bert_config.json": {
        "transformer_task": "sequence-classification",
        "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
        "module_output_name": "scores",
    },
}
_DEFAULT_MAX_LEN = 512
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# the modules of a sequence-classification model that read the score out of the encoder: trained
# in full under LoRA (peft's modules_to_save) and bitfit. BERT's pooler feeds its classifier
# (and is new, random, when the backbone was saved without one); DistilBERT has pre_classifier.
HEAD_MODULES = ("pooler", "pre_classifier", "classifier", "score")
FINE_TUNE_TYPES = ("full", "lora", "bitfit")


def head_modules(model: nn.Module) -> list[str]:
    """The names (last components) of the head modules ``model`` has, in HEAD_MODULES order."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    return [name for name in HEAD_MODULES if name in present]


@dataclass
class RerankerConfig(TextFormat):
    """What besides weights decides a pair's score: the text format, max length, activation.

    ``activation`` is applied to the logit for the scores reported (ST's ``predict`` applies the
    same); rankings always follow the logit, which the monotone activations keep in order.
    """

    max_len: int = _DEFAULT_MAX_LEN
    activation: str = "identity"
    padding_side: str = "right"
    base_model_name_or_path: str | None = None

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"reranker activation {self.activation!r}: expected one of {', '.join(ACTIVATIONS)}"
            )
        if int(self.max_len) < 2:
            raise ConfigError(f"reranker max length must be at least 2, got {self.max_len}")

    def save(self, folder: str | Path) -> None:
        (Path(folder) / CONFIG_NAME).write_text(
            json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8"
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RerankerConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names and v is not None})


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None
    return value if isinstance(value, dict) else {}


def _activation_name(path: str | None, num_labels: int) -> str:
    """densekit's name for an activation class path sentence-transformers saved."""
    if path is None:  # ST's default: sigmoid for one label
        return "sigmoid" if num_labels == 1 else "identity"
    for name, full in ACTIVATIONS.items():
        if path == full or path.rsplit(".", 1)[-1].lower() == name:
            return name
    raise ConfigError(
        f"cross-encoder activation {path!r} is not supported (expected Identity, Sigmoid or Tanh)"
    )


def st_settings(folder: str | Path, model_config: Any) -> dict[str, Any]:
    """Settings a sentence-transformers (or plain HF) cross-encoder folder implies: the
    activation ST would apply (ST 6 ``config_sentence_transformers.json``, ST 4/5
    ``config.json`` ``sentence_transformers``, older ``sbert_ce_default_activation_function``,
    else sigmoid for one label) and the max length (``sentence_bert_config.json``
    ``max_seq_length``, else the tokenizer's ``model_max_length``, capped by the positions)."""
    folder = Path(folder)
    st6 = _read_json(folder / "config_sentence_transformers.json")
    path = st6.get("activation_fn")
    if path is None:
        legacy = getattr(model_config, "sentence_transformers", None) or {}
        path = legacy.get("activation_fn") if isinstance(legacy, dict) else None
    if path is None:
        path = getattr(model_config, "sbert_ce_default_activation_function", None)
    settings: dict[str, Any] = {"activation": _activation_name(path, model_config.num_labels)}
    limit = _read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    if limit is None:
        limit = _read_json(folder / "tokenizer_config.json").get("model_max_length")
    positions = getattr(model_config, "max_position_embeddings", None) or _DEFAULT_MAX_LEN
    if isinstance(limit, (int, float)) and 1 < limit < 10**9:
        settings["max_len"] = int(min(limit, positions))
    else:
        settings["max_len"] = int(min(_DEFAULT_MAX_LEN, positions))
    return settings


class CrossEncoderReranker(nn.Module):
    """A sequence-classification backbone with one output, its tokenizer and settings.

    ``forward`` returns one logit per pair; :meth:`score` batches pairs by length and applies
    the activation; :meth:`rerank_run` reranks a run's top hits (``densekit rerank`` and
    ``search.RerankingSearcher`` share it).
    """

    def __init__(
        self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, settings: RerankerConfig
    ) -> None:
        super().__init__()
        if getattr(model.config, "num_labels", 1) != 1:
            raise ConfigError(
                f"a reranker needs one output (num_labels=1), this model has "
                f"{model.config.num_labels}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.bf16 = False  # scoring under bf16 autocast (set_precision); weights stay as loaded
        self._pair_tokenizers: dict[int, PairTokenizer | None] = {}  # by max length, built once
        self.first_token = True  # False: scorer() runs the whole model (a baseline to compare)
        self._scorer: tuple[nn.Module | None, nn.Module | None] = (None, None)  # (model, path)
        _prepare_padding(model, tokenizer, settings.padding_side)

    def set_precision(self, precision: str = "auto") -> str:
        """Score under bf16 autocast where ``precision`` resolves to bf16 on the model's device
        (``auto``: where the device computes bf16 natively); returns what it resolved to."""
        from densekit.precision import resolve

        device = next(self.model.parameters()).device.type
        self.bf16 = resolve(precision, device) == "bf16"
        return "bf16" if self.bf16 else "fp32"

    # ------------------------------------------------------------------ building and folders

    @classmethod
    def from_backbone(
        cls, name_or_path: str, settings: RerankerConfig | None = None, **model_kwargs: Any
    ) -> CrossEncoderReranker:
        """A new reranker from a backbone (its head, if any, is kept when it has one label)."""
        settings = settings or RerankerConfig()
        settings.base_model_name_or_path = settings.base_model_name_or_path or str(name_or_path)
        tokenizer = _load_tokenizer(name_or_path)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                name_or_path, num_labels=1, **model_kwargs
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load {name_or_path!r}: {str(exc).splitlines()[0]}") from None
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions and settings.max_len > positions:
            settings.max_len = int(positions)
        return cls(model, tokenizer, settings)

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> CrossEncoderReranker:
        """Load a densekit reranker folder, or a sentence-transformers ``CrossEncoder`` folder
        (or a plain one-label HF classifier) with the settings ST would use.
        ``overrides`` (e.g. ``max_len``) win over the folder's settings when not None."""
        folder = Path(path)
        if (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
            return cls._from_adapter_folder(folder, overrides)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"{folder}: not a model folder (no config.json)")
        try:
            model_config = AutoConfig.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{folder}: {str(exc).splitlines()[0]}") from None
        values = st_settings(folder, model_config)
        values.update(_read_json(folder / CONFIG_NAME))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = RerankerConfig.from_dict(values)
        tokenizer = _load_tokenizer(str(folder))
        if model_config.num_labels != 1:
            raise ConfigError(
                f"{folder}: a reranker needs one output (num_labels=1), found "
                f"{model_config.num_labels}"
            )
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        return cls(model.eval(), tokenizer, settings)

    @classmethod
    def _from_adapter_folder(cls, folder: Path, overrides: dict[str, Any]) -> CrossEncoderReranker:
        """An adapter folder (a LoRA checkpoint): its base, the adapters and head, merged."""
        from peft import PeftModel

        values = _read_json(folder / CONFIG_NAME)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = RerankerConfig.from_dict(values)
        base = settings.base_model_name_or_path
        if not base:
            raise ConfigError(
                f"{folder}: an adapter folder without its base model in {CONFIG_NAME}"
            )
        reranker = cls.from_backbone(base, settings)
        reranker.model = PeftModel.from_pretrained(reranker.model, str(folder)).merge_and_unload()
        reranker.tokenizer = _load_tokenizer(str(folder))
        _prepare_padding(reranker.model, reranker.tokenizer, settings.padding_side)
        return reranker.eval()

    # ------------------------------------------------------------------ which parameters train

    @property
    def is_lora(self) -> bool:
        """Whether the backbone is wrapped in peft LoRA adapters (not yet merged)."""
        return hasattr(self.model, "peft_config")

    def apply_lora(
        self,
        r: int = 8,
        alpha: int = 32,
        dropout: float = 0.1,
        target_modules: str | Sequence[str] | None = None,
    ) -> None:
        """Wrap the backbone in new LoRA adapters; only they and the head modules train.

        ``target_modules``: a comma list or names; default: densekit's table per model family
        (``modeling.finetune``), else peft's own. The head (:data:`HEAD_MODULES` present) is
        peft's ``modules_to_save``: trained in full, saved with the adapters.
        """
        from peft import LoraConfig, TaskType, get_peft_model

        from densekit.modeling.finetune import default_lora_targets

        if self.is_lora:
            raise ConfigError("this reranker already has LoRA adapters")
        if isinstance(target_modules, str):
            target_modules = [t.strip() for t in target_modules.split(",") if t.strip()]
        targets = list(target_modules or []) or default_lora_targets(self.model.config.model_type)
        config = LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=targets,
            modules_to_save=head_modules(self.model),
            task_type=TaskType.SEQ_CLS,
        )
        try:
            self.model = get_peft_model(self.model, config)
        except ValueError as exc:
            raise ConfigError(
                f"LoRA: {str(exc).splitlines()[0]} (set --lora_target_modules)"
            ) from None

    def apply_bitfit(self) -> None:
        """Freeze everything but bias terms and the head modules (Ben Zaken et al., 2022)."""
        from densekit.modeling.finetune import apply_bitfit

        apply_bitfit(self.model)
        heads = set(head_modules(self.model))
        for name, module in self.model.named_modules():
            if name.rsplit(".", 1)[-1] in heads:
                for param in module.parameters():
                    param.requires_grad = True

    def head_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the head modules (pooler, classifier, score), which a
        reranker built from a retriever or a language model starts with at random."""
        heads = set(head_modules(self.model))
        return [
            param
            for name, module in self.model.named_modules()
            if name.rsplit(".", 1)[-1] in heads
            for param in module.parameters()
            if param.requires_grad
        ]

    def merge_lora(self) -> None:
        """Fold the LoRA adapters into the weights and unwrap: a plain model again (no-op
        without adapters). The trained head copies replace the original head."""
        if self.is_lora:
            self.model = self.model.merge_and_unload()

    def load_weights(self, folder: str | Path) -> None:
        """Load a checkpoint's weights into this model in place (resume, the best checkpoint):
        the adapters and head of an adapter folder, else the full model's weights."""
        folder = Path(folder)
        if self.is_lora:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            weights = folder / ADAPTER_WEIGHTS
            if not weights.is_file():
                raise ConfigError(f"{folder}: no {ADAPTER_WEIGHTS} to load LoRA weights from")
            result = set_peft_model_state_dict(self.model, load_file(str(weights)))
            if result.unexpected_keys:
                raise ConfigError(
                    f"{folder}: adapter weights do not fit this model ({result.unexpected_keys[0]})"
                )
            return
        loaded = AutoModelForSequenceClassification.from_pretrained(folder)
        self.model.load_state_dict(loaded.state_dict())

    def save_pretrained(
        self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None
    ) -> None:
        """HF folder + tokenizer + ST cross-encoder files + densekit's config (written last);
        with unmerged LoRA adapters, an adapter folder (adapters + head, tokenizer, config)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.is_lora:
            if state_dict is not None:
                state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()}
            self.model.save_pretrained(str(folder), state_dict=state_dict)
            self.tokenizer.save_pretrained(folder)
            self.settings.save(folder)
            return
        activation = ACTIVATIONS[self.settings.activation]
        self.model.config.sentence_transformers = {"activation_fn": activation}  # ST 4/5
        if state_dict is not None:
            state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()}
        self.model.save_pretrained(folder, state_dict=state_dict)
        limit = self.tokenizer.model_max_length
        self.tokenizer.model_max_length = self.settings.max_len  # what ST truncates to
        try:
            self.tokenizer.save_pretrained(folder)
        finally:
            self.tokenizer.model_max_length = limit
        for name, value in _ST_FILES.items():
            (folder / name).write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
        st_config = {
            "model_type": "CrossEncoder",
            "activation_fn": activation,
            "prompts": {},
            "default_prompt_name": None,
        }
        (folder / "config_sentence_transformers.json").write_text(
            json.dumps(st_config, indent=2) + "\n", encoding="utf-8"
        )
        self.settings.save(folder)

    # ------------------------------------------------------------------ training hooks

    def activation_checkpointing_enable(
        self,
        activation_checkpointing_kwargs: dict | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        """Called by the HF Trainer (transformers 5) for ``--gradient_checkpointing``;
        non-reentrant suits DDP. With frozen embeddings (LoRA, bitfit) the inputs are made to
        require grads, so a reentrant checkpoint still passes gradients to the adapters."""
        kwargs = activation_checkpointing_kwargs or {"use_reentrant": False}
        backbone = self.model.get_base_model() if self.is_lora else self.model
        if hasattr(backbone, "activation_checkpointing_enable"):
            backbone.activation_checkpointing_enable(
                activation_checkpointing_kwargs=kwargs,
                every_n_layers=every_n_layers,
                offload=offload,
            )
        else:  # transformers 4
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if any(not p.requires_grad for p in backbone.parameters()):
            backbone.enable_input_require_grads()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None):
        """transformers 4's name of :meth:`activation_checkpointing_enable`."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs)

    # ------------------------------------------------------------------ scoring

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """One logit per pair, shape ``[n]`` (the whole model: what training differentiates)."""
        return self.model(**inputs).logits.view(-1)

    def scorer(self) -> nn.Module:
        """What scoring runs (:meth:`logits`, the exported graphs): token inputs -> ``[n]``
        logits, equal to :meth:`forward`'s, with the last layer computed for the first token
        only where the model allows it (:mod:`first_token`), else :meth:`forward`.
        Built once per model object (a LoRA merge replaces it); always in eval mode."""
        if not self.first_token:
            return self
        model, scores = self._scorer
        if model is not self.model:
            scores = first_token_scores(self.model)
            self._scorer = (self.model, scores)
        return self if scores is None else scores.eval()

    @property
    def first_token_only(self) -> bool:
        """Whether :meth:`scorer` takes the first-token path for this model."""
        return self.scorer() is not self

    def format_pair(self, query: str, title: str | None, text: str | None) -> tuple[str, str]:
        """The two texts the tokenizer sees for a query and a passage (prefixes applied)."""
        return self.settings.format_query(query), self.settings.format_passage(text, title)

    def tokenize(
        self, pairs: Sequence[tuple[str, str]], max_len: int | None = None
    ) -> BatchEncoding:
        """Pairs as one padded batch, truncated longest-first to ``max_len`` (ST's way)."""
        queries = [q for q, _ in pairs]
        passages = [p for _, p in pairs]
        return self.tokenizer(
            queries,
            passages,
            max_length=max_len or self.settings.max_len,
            truncation=True,
            padding=True,
            return_tensors="pt",
        )

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """The configured activation, in float64 (sigmoid saturates later than in float32)."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.settings.activation == "sigmoid":
            return 1.0 / (1.0 + np.exp(-logits))
        if self.settings.activation == "tanh":
            return np.tanh(logits)
        return logits

    @torch.inference_mode()
    def logits(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, max_len: int | None = None
    ) -> np.ndarray:
        """Raw logits of formatted pairs, batched by token length (little padding)."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        if batch_size < 1:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        encoded = self._encode_pairs(pairs, max_len or self.settings.max_len)
        order = np.argsort([-len(ids) for ids in encoded["input_ids"]], kind="stable")
        keys = list(encoded.keys())
        out = np.zeros(len(pairs), dtype=np.float32)
        was_training = self.training
        self.eval()
        device = next(self.model.parameters()).device
        scorer = self.scorer()
        try:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = pad(self.tokenizer, {key: [encoded[key][i] for i in rows] for key in keys})
                batch = {k: v.to(device) for k, v in batch.items()}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    out[rows] = scorer(**batch).float().cpu().numpy()
        finally:
            self.train(was_training)
        return out

    def _encode_pairs(self, pairs: Sequence[tuple[str, str]], max_len: int) -> Mapping[str, list]:
        """Unpadded token ids (and type ids, mask) of the pairs, truncated longest-first: each
        distinct text tokenised once where the tokenizer allows it (:mod:`pair_tokens`)."""
        if max_len not in self._pair_tokenizers:
            self._pair_tokenizers[max_len] = PairTokenizer.build(self.tokenizer, max_len)
        fast = self._pair_tokenizers[max_len]
        if fast is not None:
            return fast(pairs)
        return self.tokenizer(
            [q for q, _ in pairs],
            [p for _, p in pairs],
            max_length=max_len,
            truncation=True,
            padding=False,
        )

    def score(
        self,
        queries: Sequence[str],
        passages: Sequence[str | tuple[str, str]],
        batch_size: int = 32,
        activation: bool = True,
    ) -> np.ndarray:
        """Scores of ``(queries[i], passages[i])``; a passage is a text or ``(title, text)``.

        With ``activation`` the numbers are the ones ST's ``CrossEncoder.predict`` reports.
        """
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        pairs = [
            self.format_pair(q, *(p if isinstance(p, tuple) else ("", p)))
            for q, p in zip(queries, passages, strict=True)
        ]
        logits = self.logits(pairs, batch_size)
        return self.activate(logits) if activation else logits.astype(np.float64)

    def rerank_run(
        self,
        run: Iterable[tuple[str, Mapping[str, float]]],
        queries: Mapping[str, str],
        document: Callable[[str], tuple[str, str]],
        depth: int = 100,
        batch_size: int = 32,
        queries_per_chunk: int = 64,
    ) -> Iterator[tuple[str, dict[str, float]]]:
        """Rerank each query's top ``depth`` hits; yields ``(qid, {docid: score})`` best first.

        ``document(docid) -> (title, text)``. Pairs of ``queries_per_chunk`` queries are
        scored together (sorted by length), so memory stays bounded and output can stream.
        Ties on the logit keep the first stage's order.
        """
        if depth < 1:
            raise ConfigError(f"depth must be positive, got {depth}")
        chunk: list[tuple[str, list[str]]] = []
        for qid, hits in run:
            chunk.append((qid, list(hits)[:depth]))
            if len(chunk) >= queries_per_chunk:
                yield from self._rerank_chunk(chunk, queries, document, batch_size)
                chunk = []
        if chunk:
            yield from self._rerank_chunk(chunk, queries, document, batch_size)

    def _rerank_chunk(
        self,
        chunk: list[tuple[str, list[str]]],
        queries: Mapping[str, str],
        document: Callable[[str], tuple[str, str]],
        batch_size: int,
    ) -> Iterator[tuple[str, dict[str, float]]]:
        pairs = []
        for qid, docids in chunk:
            if qid not in queries:
                raise DataError("queries", f"query {qid!r} of the run is not in the queries")
            pairs += [self.format_pair(queries[qid], *document(docid)) for docid in docids]
        logits = self.logits(pairs, batch_size)
        start = 0
        for qid, docids in chunk:
            mine = logits[start : start + len(docids)]
            start += len(docids)
            order = sorted(range(len(docids)), key=lambda i: -float(mine[i]))
            scores = self.activate(mine)
            yield qid, {docids[i]: float(scores[i]) for i in order}


def _load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load tokenizer {path!r}: {str(exc).splitlines()[0]}") from None


def _prepare_padding(model: nn.Module, tokenizer: PreTrainedTokenizerBase, side: str) -> None:
    """Decoders ship without a pad token: use EOS, and tell the model, whose last-token score
    skips padding by ``config.pad_token_id`` (it cannot score a batch without one)."""
    tokenizer.padding_side = side
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError("this tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
