"""A model's corpus encoded once into an exact index, searched with the recipe's settings.

Every dense system of the recipe (zero-shot, fine-tuned, distilled) goes through here, so each
model encodes the corpus once and every encode uses the recipe's lengths and precision.
"""

from __future__ import annotations

import datasets

from densekit.data.runs import Run
from densekit.encoders import EncoderSpec, load_encoder
from densekit.encoders.streaming import encode_all
from densekit.recipes.config import RecipeConfig
from densekit.retrieval.dense import index_corpus
from densekit.retrieval.search import search_index


def bf16(config: RecipeConfig) -> bool:
    """Whether the config's precision resolves to bf16 on this machine."""
    from densekit import precision

    return precision.resolve(config.precision) == "bf16"


class ModelIndex:
    """A model with its corpus encoded once into an exact (Flat) index, to search any queries."""

    def __init__(self, config: RecipeConfig, model: str, corpus: datasets.Dataset) -> None:
        self.config, self.model = config, model
        precision = "bf16" if bf16(config) else "fp32"
        spec = EncoderSpec(model, precision=precision, overrides=encoder_lengths(config))
        self.encoder = load_encoder(spec)
        self.doc_ids, self.index = index_corpus(self.encoder, corpus)

    def run(self, queries: datasets.Dataset) -> Run:
        """The exact-search run of ``queries`` (the recipe's depth)."""
        query_ids, vectors = encode_all(self.encoder, queries, is_query=True)
        return search_index(query_ids, vectors, self.index, self.doc_ids, self.config.depth)


def encoder_lengths(config: RecipeConfig) -> dict[str, int]:
    """The recipe's query and passage lengths, which every encode of the recipe uses."""
    return {"query_max_len": config.query_max_len, "passage_max_len": config.passage_max_len}


def model_run(config: RecipeConfig, model: str, corpus, queries: datasets.Dataset) -> Run:
    """``model``'s exact-search run over ``queries`` with the recipe's lengths."""
    return ModelIndex(config, model, corpus).run(queries)
