"""A BERT-family model's last layer computed for the first token only, where nothing else of
that layer is read.

A sequence classifier's logit reads one position of the last layer: the first (``[CLS]`` /
``<s>``); so does a bi-encoder with ``cls`` pooling. Every other position of that layer -- its
query projection, attention row, output projection and feed-forward -- is computed and thrown
away; only the last layer's keys and values need every position. :class:`FirstTokenStates` runs
the layers before the last as the model does, then the last one for the first position alone:
the same state for about 5/6 of a layer less work (MiniLM-L6: ~14% of the matmuls).
:class:`FirstTokenScores` puts the classifier's own head on it. Reranker scoring and exports and
``cls``-pooled encoder exports use them; training keeps the whole model.

Only models whose layers have BERT's structure (``attention.self.query/key/value``,
``attention.output``, ``intermediate``, ``output``; absolute positions; no decoder) are taken,
and each is checked against the model's own forward on a probe batch when built
(:func:`first_token_states` and :func:`first_token_scores` return None otherwise).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

# probe check: the first-token path against the model, relative to the outputs' magnitude
_PROBE_TOLERANCE = 1e-4


class FirstTokenStates(nn.Module):
    """A BERT-family base model's last hidden state at position 0, shape ``[batch, 1, hidden]``."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.last = base.encoder.layer[-1]
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
        return _first_position(self.last, states, attention_mask)


class FirstTokenScores(nn.Module):
    """A BERT-family classifier's one-label logits, shape ``[batch]``, through
    :class:`FirstTokenStates` and the classifier's own head."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model  # the HF classifier, whole (its parameters; the head)
        self.states = FirstTokenStates(model.base_model)
        self.pooler = getattr(model.base_model, "pooler", None)  # BERT: dense + tanh on [:, 0]

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """``inputs``: the classifier's token inputs, as :class:`FirstTokenStates` takes them."""
        first = self.states(**inputs)
        if self.pooler is not None:  # BertForSequenceClassification: pooler, dropout, classifier
            return self.model.classifier(self.pooler(first)).view(-1)
        return self.model.classifier(first).view(-1)  # RoBERTa / ELECTRA heads read [:, 0]


def first_token_states(base: nn.Module) -> FirstTokenStates | None:
    """:class:`FirstTokenStates` of the base model ``base`` (e.g. a ``BertModel``) when its
    structure allows it and it reproduces ``last_hidden_state[:, 0]`` on a probe; else None."""
    if not _has_bert_layers(base):
        return None
    states = FirstTokenStates(base)

    def whole(**inputs: torch.Tensor) -> torch.Tensor:
        return base(**inputs, return_dict=True).last_hidden_state[:, 0]

    return states if _reproduces(base, whole, lambda **i: states(**i)[:, 0]) else None


def first_token_scores(model: nn.Module) -> FirstTokenScores | None:
    """:class:`FirstTokenScores` of the HF classifier ``model`` when its structure allows it and
    it reproduces the model's logits on a probe; None for any other model (score it whole)."""
    base = getattr(model, "base_model", None)
    if (
        base is None
        or base is model
        or not isinstance(getattr(model, "classifier", None), nn.Module)
    ):
        return None
    if not _has_bert_layers(base):
        return None
    scores = FirstTokenScores(model)

    def whole(**inputs: torch.Tensor) -> torch.Tensor:
        return model(**inputs).logits.view(-1)

    return scores if _reproduces(model, whole, scores) else None


def _has_bert_layers(base: nn.Module) -> bool:
    config = getattr(base, "config", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if config is None or not isinstance(layers, nn.ModuleList) or not len(layers):
        return False
    if getattr(config, "is_decoder", False):
        return False
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False
    last = layers[-1]
    attention = getattr(getattr(last, "attention", None), "self", None)
    projections = [getattr(attention, name, None) for name in ("query", "key", "value")]
    modules = [
        getattr(last.attention, "output", None),
        getattr(last, "intermediate", None),
        getattr(last, "output", None),
    ]
    return (
        all(isinstance(part, nn.Linear) for part in projections)
        and hasattr(attention, "num_attention_heads")
        and hasattr(attention, "attention_head_size")
        and all(isinstance(module, nn.Module) for module in modules)
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
def _reproduces(model: nn.Module, whole, path) -> bool:
    """``path`` against ``whole`` on a small padded batch of random tokens, in eval mode."""
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
        expected = whole(**inputs).float()
        got = path(**inputs).float()
    except (RuntimeError, TypeError, AttributeError, ValueError):
        return False
    finally:
        model.train(was_training)
    if got.shape != expected.shape or not torch.isfinite(got).all():
        return False
    scale = max(1.0, float(expected.abs().max()))
    tolerance = _PROBE_TOLERANCE if parameter.dtype == torch.float32 else 2e-2
    return float((got - expected).abs().max()) <= tolerance * scale
