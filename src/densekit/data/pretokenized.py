"""Tevatron v1's pre-tokenised jsonl turned back into text, once, with the model's tokenizer.

Tevatron v1 stored token ids (no special tokens): training groups as ``{"query": ids,
"positives": [ids], "negatives": [ids]}`` and corpora/queries as ``{"text_id", "text": ids}``.
densekit's readers take text (they never tokenize), so ``densekit convert`` decodes each list
and writes FlagEmbedding-form training rows or BEIR-form records. Every decoded text is
tokenized again and compared with the ids: the count of lists that do not survive the round
trip is reported, so a user knows whether densekit will see exactly Tevatron's tokens.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densekit.atomic import atomic_open
from densekit.data.text_files import iter_jsonl
from densekit.errors import DataError


@dataclass
class ConversionReport:
    records: int = 0
    texts: int = 0
    changed_by_round_trip: int = 0


def _ids(value: Any, what: str, path: Path, line: int) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise DataError(str(path), f"{what} must be a list of token ids", line)
    return value


class _Decoder:
    def __init__(self, tokenizer, report: ConversionReport) -> None:
        self.tokenizer, self.report = tokenizer, report

    def __call__(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids, clean_up_tokenization_spaces=False)
        again = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        self.report.texts += 1
        self.report.changed_by_round_trip += again != ids
        return text


def _convert_row(row: dict[str, Any], decode: _Decoder, path: Path, line: int) -> dict[str, Any]:
    if "text_id" in row:
        return {
            "_id": str(row["text_id"]),
            "text": decode(_ids(row.get("text"), "text", path, line)),
        }
    if "query" in row and "positives" in row:
        lists = {k: row.get(k, []) for k in ("positives", "negatives")}
        for key, value in lists.items():
            if not isinstance(value, list):
                raise DataError(str(path), f"{key} must be a list of id lists", line)
        out: dict[str, Any] = {"query": decode(_ids(row["query"], "query", path, line))}
        if "query_id" in row:
            out["query_id"] = str(row["query_id"])
        out["pos"] = [decode(_ids(p, "positives", path, line)) for p in lists["positives"]]
        out["neg"] = [decode(_ids(n, "negatives", path, line)) for n in lists["negatives"]]
        return out
    raise DataError(
        str(path), "not a pre-tokenised record: expected text_id/text or query/positives", line
    )


def convert_pretokenized(
    path: str | os.PathLike, tokenizer, output: str | os.PathLike
) -> ConversionReport:
    """Decode every record of ``path`` into ``output`` (written atomically)."""
    report = ConversionReport()
    decode = _Decoder(tokenizer, report)
    source = Path(path)
    with atomic_open(output, "w", encoding="utf-8") as handle:
        for line, row in iter_jsonl(source):
            record = _convert_row(row, decode, source, line)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            report.records += 1
        if not report.records:
            raise DataError(str(source), "holds no records (empty)")
    return report
