"""The tokenizer saved beside a model, and Tevatron's tokenizer-attribute field separators."""

from __future__ import annotations

import re

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from densekit.errors import ConfigError
from densekit.modeling.folders import tokenizer_source

_TOKEN_ATTRIBUTE = re.compile(r"^(bos|eos|sep|cls|pad|unk|mask)_token$")


def load_tokenizer(path: str, padding_side: str = "right") -> PreTrainedTokenizerBase:
    """The tokenizer saved beside a model (or its base for an adapter folder)."""
    source = tokenizer_source(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ConfigError(f"cannot load tokenizer {source!r}: {str(exc).splitlines()[0]}") from None
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:  # decoder-only models ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def field_separator(value: str | None, tokenizer_path: str) -> str | None:
    """Tevatron's ``getattr(tokenizer, value, value)``: ``sep_token`` etc. become the token."""
    if value is None or not _TOKEN_ATTRIBUTE.match(value):
        return value
    token = getattr(load_tokenizer(tokenizer_path), value, None)
    if not token:
        raise ConfigError(f"--passage_field_separator {value}: this tokenizer has no {value}")
    return str(token)
