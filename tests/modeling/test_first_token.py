"""The last layer for the first token only: the HF classifier's own forward is the oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification

from densekit.modeling.first_token import (
    FirstTokenScores,
    FirstTokenStates,
    first_token_scores,
    first_token_states,
)
from densekit.modeling.reranker import CrossEncoderReranker, RerankerConfig

ENCODERS = ["bert", "roberta", "xlm-roberta", "electra"]


def classifier(model_type: str, layers: int = 3) -> nn.Module:
    """A random one-label classifier with weights large enough that the logits spread."""
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
        type_vocab_size=2,
        initializer_range=0.3,
        num_labels=1,
    )
    return AutoModelForSequenceClassification.from_config(config).eval()


def batch(rows: int = 6, length: int = 20) -> dict[str, torch.Tensor]:
    """Random tokens, right padding of different lengths, two segments."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    for row in range(1, rows):
        mask[row, length - 3 * row :] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


@pytest.mark.parametrize("model_type", ENCODERS)
def test_logits_equal_the_whole_model(model_type):
    model = classifier(model_type)
    scores = first_token_scores(model)
    assert isinstance(scores, FirstTokenScores)
    inputs = batch()
    with torch.no_grad():
        expected = model(**inputs).logits.view(-1)
        got = scores(**inputs)
    assert float(expected.std()) > 1e-3  # the rows differ: a wrong mask or row would show
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize("model_type", ENCODERS)
def test_states_equal_the_base_model_first_position(model_type):
    """What cls pooling reads: the base model's last hidden state at position 0."""
    base = classifier(model_type).base_model
    states = first_token_states(base)
    assert isinstance(states, FirstTokenStates)
    inputs = batch()
    with torch.no_grad():
        expected = base(**inputs).last_hidden_state[:, 0]
        got = states(**inputs)[:, 0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_the_last_layer_feed_forward_sees_one_position_per_row():
    model = classifier("bert")
    scores = first_token_scores(model)
    seen = {}
    layers = model.base_model.encoder.layer
    hooks = [
        layer.intermediate.dense.register_forward_hook(
            lambda _m, args, _o, i=i: seen.__setitem__(i, tuple(args[0].shape))
        )
        for i, layer in enumerate(layers)
    ]
    with torch.no_grad():
        scores(**batch(rows=4, length=16))
    for hook in hooks:
        hook.remove()
    assert seen == {0: (4, 16, 32), 1: (4, 16, 32), 2: (4, 1, 32)}
    assert len(layers) == 3  # the model itself keeps every layer


def test_a_head_that_reads_more_than_the_first_token_is_scored_whole():
    """The probe check catches a head the structure test cannot see."""

    class MeanPooler(nn.Module):
        def __init__(self, dense: nn.Linear) -> None:
            super().__init__()
            self.dense = dense

        def forward(self, states: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.dense(states.mean(1)))

    model = classifier("bert")
    model.bert.pooler = MeanPooler(model.bert.pooler.dense)
    assert first_token_scores(model) is None


@pytest.mark.parametrize("model_type", ["distilbert", "deberta-v2"])
def test_other_layer_structures_are_scored_whole(model_type):
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, vocab_size=120, num_labels=1)
    for name, value in {"dim": 32, "hidden_size": 32, "n_layers": 2, "num_hidden_layers": 2,
                        "n_heads": 4, "num_attention_heads": 4, "hidden_dim": 48,
                        "intermediate_size": 48}.items():  # fmt: skip
        if hasattr(config, name):
            setattr(config, name, value)
    assert first_token_scores(AutoModelForSequenceClassification.from_config(config)) is None


def test_decoders_are_scored_whole(tiny_decoder):
    reranker = CrossEncoderReranker.from_backbone(tiny_decoder("llama"))
    assert not reranker.first_token_only


def test_reranker_scores_through_it_and_follows_a_new_model(tiny_model):
    reranker = CrossEncoderReranker.from_backbone(tiny_model, RerankerConfig(max_len=32))
    assert reranker.first_token_only
    pairs = [("a query", "a passage about kinases"), ("b", "short"), ("c", "x y z " * 5)]
    with torch.no_grad():
        whole = [
            float(reranker(**reranker.tokenize([pair])).view(-1)[0])  # forward: the whole model
            for pair in pairs
        ]
    got = reranker.logits(pairs, batch_size=2)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(whole), rtol=1e-5, atol=1e-6)
    first = reranker.scorer()
    assert reranker.scorer() is first  # built once per model
    reranker.model = classifier("bert", layers=2)
    assert reranker.scorer() is not first and reranker.scorer().model is reranker.model


def test_an_unmerged_lora_reranker_is_scored_whole_and_takes_the_path_once_merged(tiny_model):
    reranker = CrossEncoderReranker.from_backbone(tiny_model, RerankerConfig(max_len=32))
    reranker.apply_lora(r=4)
    assert reranker.is_lora and not reranker.first_token_only
    reranker.merge_lora()
    assert reranker.first_token_only
