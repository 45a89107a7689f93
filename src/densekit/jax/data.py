"""Training batches for the JAX path: densekit's groups, tokenized to fixed shapes.

Batch ``k`` is a pure function of ``(seed, k)``: the epoch's order is a seeded permutation and
the dataset samples negatives by ``(seed, epoch, index)``, so a resumed run reads exactly the
batches an uninterrupted one reads, without replaying the data. Every batch is padded to the
max lengths (one compiled step, as Tevatron's JAX driver), and each process of a multi-host
run tokenizes only its own rows of the global batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from densekit.data.collator import tokenize
from densekit.data.train_dataset import TrainDataset
from densekit.errors import ConfigError

KEYS = ("input_ids", "attention_mask", "token_type_ids")


def fixed_arrays(encoded: Any, length: int) -> dict[str, np.ndarray]:
    """A tokenizer's padded output as int32 arrays of exactly ``length`` columns."""
    ids = np.asarray(encoded["input_ids"])
    out = {}
    for key in KEYS:
        value = np.asarray(encoded[key]) if key in encoded else np.zeros_like(ids)
        value = value[:, :length].astype(np.int32)
        out[key] = np.pad(value, ((0, 0), (0, length - value.shape[1])))
    return out


class GroupBatches:
    """``batches(step) -> (queries, passages)``: this process's rows of global batch ``step``."""

    def __init__(
        self,
        dataset: TrainDataset,
        tokenizer: Any,
        settings: Any,
        global_batch: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ) -> None:
        self.dataset, self.tokenizer, self.settings = dataset, tokenizer, settings
        self.global_batch, self.seed = global_batch, seed
        self.process_index, self.process_count = process_index, process_count
        self.steps_per_epoch = len(dataset) // global_batch
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"{len(dataset)} training examples make no full batch of {global_batch} "
                "(--per_device_train_batch_size x devices): lower the batch size or add data"
            )
        self._order: tuple[int, np.ndarray] | None = None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def _rows(self, step: int) -> np.ndarray:
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order = (epoch, rng.permutation(len(self.dataset)))
        rows = self._order[1][index * self.global_batch : (index + 1) * self.global_batch]
        return np.array_split(rows, self.process_count)[self.process_index]

    def __call__(self, step: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        self.dataset.set_epoch(self.epoch_of(step))
        items = [self.dataset[int(i)] for i in self._rows(step)]
        settings, eos = self.settings, self.settings.append_eos_token
        q_len, p_len = settings.query_max_len, settings.passage_max_len
        queries = tokenize(self.tokenizer, [it["query"] for it in items], q_len, eos, q_len)
        texts = [text for it in items for text in it["passages"]]
        passages = tokenize(self.tokenizer, texts, p_len, eos, p_len)
        return fixed_arrays(queries, q_len), fixed_arrays(passages, p_len)
