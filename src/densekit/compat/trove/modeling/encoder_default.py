"""``trove.modeling.encoder_default``: Trove's ``DefaultEncoder``, the class a custom encoder
inherits from (e.g. Trove's ``EncoderWithTaskInstructions``, which formats queries with a task
instruction). ``BiEncoderRetriever.from_model_args`` builds the subclass whose class name or
``_alias`` is ``--encoder_class``; pooling and normalization come from the model arguments.
"""

from __future__ import annotations

from densekit.modeling.factory import BiEncoderRetriever


class DefaultEncoder(BiEncoderRetriever):
    """densekit's encoder under Trove's name: ``format_query(text, dataset=...)`` and
    ``format_passage(text, title, dataset=...)`` are what a subclass overrides."""

    _alias = "default"


__all__ = ["DefaultEncoder"]
