"""``trove.modeling``: the encoder, its Trove constructor, the arguments and the loss."""

from __future__ import annotations

from densekit.arguments import ModelArguments
from densekit.compat.trove.modeling import encoder_default
from densekit.compat.trove.modeling.encoder_default import DefaultEncoder
from densekit.modeling.factory import BiEncoderRetriever
from densekit.modeling.losses import RetrievalLoss

__all__ = [
    "BiEncoderRetriever",
    "DefaultEncoder",
    "ModelArguments",
    "RetrievalLoss",
    "encoder_default",
]
