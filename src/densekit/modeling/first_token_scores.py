"""An encoder cross-encoder's logits with its last layer computed for the first token only.

A BERT-family sequence classifier reads one position of the last layer: the first (``[CLS]`` /
``<s>``). Every other position of that layer -- its query projection, attention row, output
projection and feed-forward -- is computed and thrown away; only the last layer's keys and
values need every position. :class:`FirstTokenScores` runs the layers before the last as the
model does, then the last one for the first position alone, then the model's own head: the same
logits for about 5/6 of a layer less work (MiniLM-L6: ~14% of a pair's matmuls). Scoring and
the exported reranker graphs use it; training keeps the whole model.

Only models whose layers have BERT's structure (``attention.self.query/key/value``,
``attention.output``, ``intermediate``, ``output``; absolute positions; no decoder) and whose
head reads the first position are taken, and each is checked against the model's own forward
on a probe batch when built (:func:`first_token_scores` returns None otherwise).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

# probe check: logits of the model and of the first-token path, relative to their magnitude
_PROBE_TOLERANCE = 1e-4


class FirstTokenScores(nn.Module):
    """``model``'s one-label logits, shape ``[batch]``, from token ids, mask and token types."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model  # the HF classifier, whole (its parameters; the head)
        base = model.base_model
        self.last = base.encoder.layer[-1]
        self.pooler = getattr(base, "pooler", None)  # BERT: dense + tanh on the first position
        self.below = _without_last_layer(base)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        states = self.below(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,  # every BERT-family model takes it (None: zeros)
            return_dict=True,
        ).last_hidden_state
        first = _first_position(self.last, states, attention_mask)
        if self.pooler is not None:  # BertForSequenceClassification: pooler, dropout, classifier
            return self.model.classifier(self.pooler(first)).view(-1)
        return self.model.classifier(first).view(-1)  # RoBERTa / ELECTRA heads read [:, 0]


def first_token_scores(model: nn.Module) -> FirstTokenScores | None:
    """:class:`FirstTokenScores` of ``model`` when its structure allows it and it reproduces the
    model's logits on a probe batch; None for any other model (score it whole)."""
    if not _has_bert_layers(model):
        return None
    scores = FirstTokenScores(model)
    if not _reproduces(model, scores):
        return None
    return scores


def _has_bert_layers(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    base = getattr(model, "base_model", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if config is None or base is None or base is model or not isinstance(layers, nn.ModuleList):
        return False
    if not len(layers) or getattr(config, "is_decoder", False):
        return False
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False
    if not isinstance(getattr(model, "classifier", None), nn.Module):
        return False
    last = layers[-1]
    attention = getattr(getattr(last, "attention", None), "self", None)
    parts = (getattr(attention, name, None) for name in ("query", "key", "value"))
    return (
        all(isinstance(part, nn.Linear) for part in parts)
        and hasattr(attention, "num_attention_heads")
        and hasattr(attention, "attention_head_size")
        and all(
            isinstance(module, nn.Module)
            for module in (
                getattr(last.attention, "output", None),
                getattr(last, "intermediate", None),
                getattr(last, "output", None),
            )
        )
    )


def _without_last_layer(base: nn.Module) -> nn.Module:
    """A view of ``base`` (shared modules and parameters) whose encoder stops one layer early
    and has no pooler; ``base`` itself is untouched."""
    view = copy.copy(base)
    view._modules = dict(base._modules)
    encoder = copy.copy(base.encoder)
    encoder._modules = dict(base.encoder._modules)
    encoder.layer = nn.ModuleList(list(base.encoder.layer)[:-1])
    view.encoder = encoder
    if "pooler" in view._modules:
        view.pooler = None
    return view


def _first_position(layer: nn.Module, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BERT's layer for position 0 only: its query against every position's keys and values,
    then the attention output and feed-forward of that row; shape ``[batch, 1, hidden]``."""
    attention = layer.attention.self
    rows, heads, size = (
        states.shape[0],
        attention.num_attention_heads,
        attention.attention_head_size,
    )

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(rows, -1, heads, size).transpose(1, 2)

    first = states[:, :1]
    context = F.scaled_dot_product_attention(
        split(attention.query(first)),
        split(attention.key(states)),
        split(attention.value(states)),
        attn_mask=mask[:, None, None, :].bool(),
    )
    context = context.transpose(1, 2).reshape(rows, 1, heads * size)
    attended = layer.attention.output(context, first)
    return layer.output(layer.intermediate(attended), attended)


@torch.no_grad()
def _reproduces(model: nn.Module, scores: FirstTokenScores) -> bool:
    """Both paths on a small padded batch of random tokens, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters())
        vocab = int(model.config.vocab_size)
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(min(5, vocab - 1), vocab, (3, 12), generator=generator)
        mask = torch.ones_like(ids)
        mask[1, 7:] = 0
        mask[2, 3:] = 0
        inputs = {
            "input_ids": ids.to(parameter.device),
            "attention_mask": mask.to(parameter.device),
        }
        if getattr(model.config, "type_vocab_size", 0) > 1:
            types = torch.zeros_like(ids)
            types[:, 6:] = 1
            inputs["token_type_ids"] = types.to(parameter.device)
        expected = model(**inputs).logits.view(-1).float()
        got = scores(**inputs).float()
    except (RuntimeError, TypeError, AttributeError, ValueError):
        return False
    finally:
        model.train(was_training)
    if got.shape != expected.shape or not torch.isfinite(got).all():
        return False
    scale = max(1.0, float(expected.abs().max()))
    tolerance = _PROBE_TOLERANCE if parameter.dtype == torch.float32 else 2e-2
    return float((got - expected).abs().max()) <= tolerance * scale
