"""Tokenise ``(query, passage)`` pairs for a cross-encoder as the tokenizer's own pair call does,
for less work.

A reranker scores each query against ~100 passages and keeps at most ``max_len`` tokens of a
pair; the tokenizer's pair call tokenises the whole query and the whole passage once per pair
(SciFact abstracts run to ~300 tokens, the pair keeps 125). :class:`PairTokenizer` tokenises each
distinct text of a call once, a passage only up to a space past which the pair cannot reach, and
joins each pair with the fast tokenizer's own post-processing (``tokenizers``'
``Tokenizer.post_process``: the same longest-first truncation, special tokens and type ids as a
pair call, which encodes both texts apart and then calls it).

Why the cut is exact: it falls on a space after a non-space character, and the pre-tokenizers
accepted here (BERT's, whitespace, byte-level with its regex, metaspace that splits) never make a
token across such a space, so the tokens before the cut are the whole text's. Longest-first
truncation depends on the passage's length only through ``min(length, budget)`` and whether it
is longer than the query, so a cut keeping at least ``budget`` tokens and more than the query's
gives the same pair. A tokenizer outside that list (e.g. no pre-tokenizer, left truncation) gets
``None`` from :meth:`PairTokenizer.build` and the caller uses the pair call; so does one that
does not reproduce the pair call on a probe set at build time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

# pre-tokenizers after which no token spans a space (type -> the settings that must hold)
_SPLITTING = {
    "BertPreTokenizer": {},
    "Whitespace": {},
    "WhitespaceSplit": {},
    "ByteLevel": {"use_regex": True},
    "Metaspace": {"split": True},
}
_POST_PROCESSORS_WITH_TYPE_IDS = {"BertProcessing", "RobertaProcessing", "TemplateProcessing"}
# first cut: this many characters per token needed (English subwords average 4-5); a cut that
# holds too few tokens is tokenised again whole
_CHARS_PER_TOKEN = 6
_PROBE_TEXT = (
    "Naïve   T-cell responses (CD4+/CD8+) to the vaccine's antigen were measured\tat 3, 6 and "
    "12 months; in vitro, IL-2 rose 2.5-fold.\nNo change was seen in the placebo arm, whereas "
    "über-responders showed über-activation — an effect 'unexpectedly' strong. "
)


def _splits_on_spaces(pre_tokenizer: dict | None) -> bool:
    if not pre_tokenizer:
        return False
    if pre_tokenizer.get("type") == "Sequence":
        return any(_splits_on_spaces(p) for p in pre_tokenizer.get("pretokenizers", []))
    wanted = _SPLITTING.get(pre_tokenizer.get("type"))
    return wanted is not None and all(pre_tokenizer.get(k, v) == v for k, v in wanted.items())


def _cut(text: str, chars: int) -> str:
    """``text`` up to the first space at or after ``chars`` that follows a non-space (whole
    if there is none)."""
    at = text.find(" ", chars)
    while at != -1 and text[at - 1].isspace():
        at = text.find(" ", at + 1)
    return text if at == -1 else text[:at]


class PairTokenizer:
    """``tokenizer(queries, passages, max_length=max_len, truncation=True)``'s ids, type ids and
    mask (as lists, unpadded), from each distinct text tokenised once and passages cut."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_len: int) -> None:
        from tokenizers import Tokenizer

        source = tokenizer.backend_tokenizer
        self.plain = Tokenizer.from_str(source.to_str())
        self.plain.no_truncation()
        self.plain.no_padding()
        self.joining = Tokenizer.from_str(self.plain.to_str())
        self.joining.enable_truncation(max_len, stride=0, strategy="longest_first")
        self.budget = max_len - source.num_special_tokens_to_add(is_pair=True)
        names = tokenizer.model_input_names
        self.keys = ["input_ids"] + [k for k in ("token_type_ids", "attention_mask") if k in names]

    @classmethod
    def build(cls, tokenizer: PreTrainedTokenizerBase, max_len: int) -> PairTokenizer | None:
        """A pair tokenizer for ``tokenizer`` at ``max_len``, or None where the cut could change
        the tokens (see the module's docstring) or the probe pairs come out differently."""
        if not getattr(tokenizer, "is_fast", False) or tokenizer.truncation_side != "right":
            return None
        layout = json.loads(tokenizer.backend_tokenizer.to_str())
        if not _splits_on_spaces(layout.get("pre_tokenizer")):
            return None
        processor = (layout.get("post_processor") or {}).get("type")
        if "token_type_ids" in tokenizer.model_input_names and (
            processor not in _POST_PROCESSORS_WITH_TYPE_IDS
        ):
            return None  # the pair call's type ids come from encoding each side apart
        pairs = cls(tokenizer, max_len)
        if max_len < 8 or pairs.budget < 2:
            return None
        probe = [
            (query, passage)
            for query in ("", "t cell", _PROBE_TEXT[: 6 * max_len], _PROBE_TEXT * 4)
            for passage in ("", "IL-2", _PROBE_TEXT * (1 + max_len // 40), _PROBE_TEXT[:90])
        ]
        expected = tokenizer(
            [q for q, _ in probe], [p for _, p in probe], max_length=max_len, truncation=True
        )
        got = pairs(probe)
        return pairs if all(got[k] == expected[k] for k in pairs.keys) else None

    def _encode(self, texts: list[str]) -> list:
        """Each text's tokens without special tokens (no character offsets where the
        ``tokenizers`` version can skip them: nothing here reads them)."""
        encode = getattr(self.plain, "encode_batch_fast", self.plain.encode_batch)
        return encode(texts, add_special_tokens=False)

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> dict[str, list[list[int]]]:
        queries = list(dict.fromkeys(q for q, _ in pairs))
        query_codes = dict(
            zip(queries, self.plain.encode_batch(queries, add_special_tokens=False), strict=True)
        )
        needed: dict[str, int] = {}  # passage -> tokens its cut must keep
        for query, passage in pairs:
            least = max(self.budget, len(query_codes[query].ids) + 1)
            needed[passage] = max(needed.get(passage, 0), least)
        texts = list(needed)
        cuts = [_cut(t, _CHARS_PER_TOKEN * needed[t]) for t in texts]
        codes = self._encode(cuts)
        short = [
            i
            for i, (text, cut, code) in enumerate(zip(texts, cuts, codes, strict=True))
            if cut != text and len(code.ids) < needed[text]
        ]
        whole = self._encode([texts[i] for i in short])
        for i, code in zip(short, whole, strict=True):
            codes[i] = code
        passage_codes = dict(zip(texts, codes, strict=True))
        joined = [self.joining.post_process(query_codes[q], passage_codes[p]) for q, p in pairs]
        out = {"input_ids": [e.ids for e in joined]}
        if "token_type_ids" in self.keys:
            out["token_type_ids"] = [e.type_ids for e in joined]
        if "attention_mask" in self.keys:
            out["attention_mask"] = [e.attention_mask for e in joined]
        return out


def pad(tokenizer: PreTrainedTokenizerBase, rows: Mapping[str, Sequence[list[int]]]) -> dict:
    """``tokenizer.pad(rows, padding=True, return_tensors="pt")`` for ids, type ids and masks,
    filled in numpy (the tokenizer's pad walks every row in Python)."""
    fill = {
        "input_ids": tokenizer.pad_token_id,
        "token_type_ids": tokenizer.pad_token_type_id,
        "attention_mask": 0,
    }
    width = max(len(ids) for ids in rows["input_ids"])
    left = tokenizer.padding_side == "left"
    out = {}
    for key, values in rows.items():
        table = np.full((len(values), width), fill[key], dtype=np.int64)
        for i, row in enumerate(values):
            if left:
                table[i, width - len(row) :] = row
            else:
                table[i, : len(row)] = row
        out[key] = torch.from_numpy(table)
    return out
