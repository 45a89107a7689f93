"""Training groups: one query, one positive and ``group_size - 1`` negatives per item.

Sampling is seeded by (seed, epoch, index), so a run is reproducible and each epoch sees other
positives and negatives. With ``positives="all"`` an epoch holds one item per (query, judged
positive) pair instead of one per query, so every judged passage is trained on, not one
sampled per query per epoch. Rows with too few negatives are repaired by sampling with
replacement; rows with none get random corpus passages (or other queries' positives without a
corpus). Records stay in Arrow; only the sampled passages become Python strings.

Where a record grades its positives (``pos_grades``, written by ``densekit mine`` from graded
qrels), ``positives="one"`` draws a positive with probability proportional to its grade, the
gain nDCG gives it (``positive_sampling="uniform"`` ignores grades); binary data is unchanged.

Each item also carries stable ids of its passages and of all its query's positives, so the
trainer can keep a passage that is judged relevant to a query from counting as that query's
in-batch negative (:func:`passage_id`).
"""

from __future__ import annotations

import hashlib
import logging
import random
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
from torch.utils.data import Dataset

from densekit.data.formatting import TextFormat
from densekit.errors import DataError

logger = logging.getLogger(__name__)

POSITIVES = ("one", "all")
POSITIVE_SAMPLING = ("grade", "uniform")
# a random fill-in passage's teacher score: this far below the row's lowest, so a softmax over
# the group gives it almost no weight (e^-10) instead of the positive's when the row has none
FILLER_MARGIN = 10.0


def passage_id(passage: dict[str, Any]) -> int:
    """A stable 63-bit id: of the docid when the passage has one, else of its title and text,
    so the same passage gets the same id in every row, process and run."""
    key = (
        f"d\0{passage['docid']}"
        if passage.get("docid")
        else (f"t\0{passage.get('title') or ''}\0{passage.get('text') or ''}")
    )
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class Corpus:
    """Random access to passages by docid over an Arrow corpus (docid, title, text)."""

    def __init__(self, table: datasets.Dataset, source: str = "corpus") -> None:
        self.table = table
        self.source = source
        self.row_of = {docid: i for i, docid in enumerate(table["docid"])}

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, docid: str) -> bool:
        return docid in self.row_of

    def get(self, docid: str) -> dict[str, str]:
        row = self.row_of.get(docid)
        if row is None:
            raise DataError(self.source, f"document id {docid!r} is not in the corpus")
        return self.table[row]


class TrainDataset(Dataset):
    """Items ``{"query", "passages", "scores"}`` ready for the collator.

    ``records`` is the canonical train table from ``densekit.data.readers``; ``corpus`` resolves
    passages given only by id. ``scores`` holds teacher scores when every row has them.
    ``text_format`` (the encoder's config, normally) turns queries and passages into text.
    ``positives``: ``"one"`` positive sampled per query per epoch (Tevatron's way), or ``"all"``:
    one item per (query, positive) pair; ``max_positives`` caps ``"all"`` at that many items per
    query, whose positives are drawn afresh each epoch without replacement (so every positive
    is seen over the epochs, and an epoch's length stays bounded on data with dozens of judged
    positives per query). ``positive_sampling``: ``"grade"`` draws a record's positive(s) in
    proportion to its ``pos_grades`` where it has them, ``"uniform"`` draws every positive alike.
    """

    def __init__(
        self,
        records: datasets.Dataset,
        group_size: int,
        corpus: Corpus | None = None,
        text_format: TextFormat | None = None,
        seed: int = 42,
        positives: str = "one",
        positive_sampling: str = "grade",
        max_positives: int | None = None,
    ) -> None:
        if positives not in POSITIVES:
            raise DataError("training data", f"positives={positives!r}: use one or all")
        if max_positives is not None and max_positives < 1:
            raise DataError("training data", f"max_positives={max_positives}: use 1 or more")
        if positive_sampling not in POSITIVE_SAMPLING:
            raise DataError(
                "training data", f"positive_sampling={positive_sampling!r}: use grade or uniform"
            )
        self.graded = positive_sampling == "grade"
        self.records = records
        self.group_size = group_size
        self.corpus = corpus
        self.text_format = text_format or TextFormat()
        self.seed = seed
        self.epoch = 0
        self.max_positives = max_positives
        self.pairs = self._positive_pairs() if positives == "all" else None
        self.has_scores = self._all_rows_have_scores()
        self._check_ids_resolvable()
        self._log_repairs()

    def _positive_pairs(self) -> np.ndarray:
        """``[(row, slot)]``: a slot per positive of every row (at most ``max_positives``), in
        row order; an uncapped slot is the positive's index."""
        counts = pc.list_value_length(self.records.data.column("pos")).to_numpy(
            zero_copy_only=False
        )
        if self.max_positives is not None:
            counts = np.minimum(counts, self.max_positives)
        rows = np.repeat(np.arange(len(counts)), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        return np.stack([rows, np.arange(len(rows)) - starts], axis=1)

    def _neg_counts(self) -> np.ndarray:
        column = self.records.data.column("neg")
        return pc.list_value_length(column).to_numpy(zero_copy_only=False)

    def _all_rows_have_scores(self) -> bool:
        if len(self.records) == 0:
            return False
        counts = pc.list_value_length(self.records.data.column("pos_scores")).to_numpy(
            zero_copy_only=False
        )
        return bool((counts > 0).all())

    def _check_ids_resolvable(self) -> None:
        texts = pc.list_flatten(self.records.data.column("pos"))
        if (
            self.corpus is None
            and len(texts)
            and pc.any(pc.is_null(pc.struct_field(texts, "text"))).as_py()
        ):
            raise DataError("training data", "passages are given by id only: pass --corpus_path")
        if self.corpus is not None:
            self._check_ids_in_corpus()

    def _check_ids_in_corpus(self) -> None:
        """Every passage given only by id must be in the corpus: fail before training starts."""
        columns = self.records.select_columns(["query_id", "pos", "neg"])
        for start, batch in enumerate(columns.iter(batch_size=4096)):
            for offset, qid in enumerate(batch["query_id"]):
                for passage in batch["pos"][offset] + batch["neg"][offset]:
                    if passage["text"] is None and passage["docid"] not in self.corpus:
                        raise DataError(
                            self.corpus.source,
                            f"document id {passage['docid']!r} of training query {qid!r} "
                            f"(record {start * 4096 + offset + 1}) is not in the corpus",
                        )

    def _log_repairs(self) -> None:
        needed = self.group_size - 1
        if needed <= 0:
            return
        counts = self._neg_counts()
        short = int(((counts > 0) & (counts < needed)).sum())
        empty = int((counts == 0).sum())
        if short:
            logger.warning(
                "%d of %d rows have fewer than %d negatives: sampled with replacement",
                short,
                len(counts),
                needed,
            )
        if empty:
            logger.warning(
                "%d of %d rows have no negatives: random %s passages used instead",
                empty,
                len(counts),
                "corpus" if self.corpus is not None else "in-data positive",
            )

    def set_epoch(self, epoch: int) -> None:
        """Called at each epoch start so sampling differs per epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records) if self.pairs is None else len(self.pairs)

    def _text(self, passage: dict[str, Any]) -> str:
        if passage["text"] is None:
            passage = self.corpus.get(passage["docid"])
        return self.text_format.format_passage(passage["text"], passage["title"])

    def _random_passages(
        self, rng: random.Random, count: int, exclude: int
    ) -> list[dict[str, Any]]:
        if self.corpus is not None:
            return [self.corpus.table[rng.randrange(len(self.corpus))] for _ in range(count)]
        out = []
        while len(out) < count:
            other = rng.randrange(len(self.records))
            if other != exclude or len(self.records) == 1:
                out.append(rng.choice(self.records[other]["pos"]))
        return out

    def _weights(self, row: dict[str, Any]) -> list[float] | None:
        """The row's positives' grades as sampling weights (None: draw them alike)."""
        grades = row.get("pos_grades")
        if self.graded and grades and len(set(grades)) > 1:  # equal grades: as binary data
            return grades
        return None

    def _pick_positive(self, rng: random.Random, row: dict[str, Any]) -> int:
        weights = self._weights(row)
        if weights:
            return rng.choices(range(len(row["pos"])), weights=weights)[0]
        return rng.randrange(len(row["pos"]))

    def _epoch_positives(self, row: dict[str, Any], record: int) -> list[int]:
        """The ``max_positives`` positives a capped row trains on this epoch: drawn without
        replacement (by grade: each draw in proportion to the grades left), the same for all
        the row's slots of the epoch, fresh the next epoch."""
        rng = random.Random(f"positives/{self.seed}/{self.epoch}/{record}")
        weights = self._weights(row)
        if weights is None:
            return rng.sample(range(len(row["pos"])), self.max_positives)
        # Efraimidis-Spirakis: the largest keys u^(1/w) are a weighted draw without replacement
        keys = [rng.random() ** (1.0 / w) for w in weights]
        return sorted(range(len(keys)), key=keys.__getitem__, reverse=True)[: self.max_positives]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = random.Random(hash((self.seed, self.epoch, index)))
        if self.pairs is None:
            row = self.records[index]
            pos_index = self._pick_positive(rng, row)
        else:
            record, pos_index = (int(v) for v in self.pairs[index])
            row = self.records[record]
            if self.max_positives is not None and len(row["pos"]) > self.max_positives:
                pos_index = self._epoch_positives(row, record)[pos_index]
            index = record  # random fill-ins exclude this query's own row
        chosen = [row["pos"][pos_index]]
        scores = [row["pos_scores"][pos_index]] if self.has_scores else []
        needed = self.group_size - 1
        negatives = row["neg"]
        if needed > 0 and negatives:
            if len(negatives) >= needed:
                picks = rng.sample(range(len(negatives)), needed)
            else:
                picks = [rng.randrange(len(negatives)) for _ in range(needed)]
            chosen += [negatives[i] for i in picks]
            if self.has_scores:
                scores += [row["neg_scores"][i] for i in picks]
        elif needed > 0:
            chosen += self._random_passages(rng, needed, index)
            if self.has_scores:  # no teacher score for a random passage: far below any seen
                scores += [min(row["pos_scores"] + row["neg_scores"]) - FILLER_MARGIN] * needed
        return {
            "query": self.text_format.format_query(row["query"], prompt=row["prompt"]),
            "passages": [self._text(p) for p in chosen],
            "scores": scores or None,
            "passage_ids": [passage_id(p) for p in chosen],
            "positive_ids": [passage_id(p) for p in row["pos"]],
        }
