"""How a query or a passage becomes the text the tokenizer sees.

The encoder's config extends :class:`TextFormat` (``EncoderConfig``), so the model that was
trained with a prefix or a title separator is encoded and evaluated with the same ones; datasets
receive the formatter instead of loose prefix arguments.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TextFormat:
    """Prefixes and the title/text separator; the one place texts are assembled."""

    query_prefix: str = ""
    passage_prefix: str = ""
    passage_field_separator: str = " "

    def format_query(self, text: str, prompt: str | None = None, **_: object) -> str:
        """``prompt`` (a per-record instruction, FlagEmbedding) replaces the query prefix."""
        return (prompt or self.query_prefix) + text

    def format_passage(self, text: str | None, title: str | None = None, **_: object) -> str:
        """``prefix + title + separator + text`` (title and separator dropped when empty)."""
        title = (title or "").strip()
        text = text or ""
        body = f"{title}{self.passage_field_separator}{text}" if title and text else (title or text)
        return self.passage_prefix + body
