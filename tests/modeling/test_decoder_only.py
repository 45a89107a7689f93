"""Decoder-only backbones (tiny random LLaMA- and Qwen2-style): last-token pooling with EOS,
identical vectors under left and right padding, LoRA on their projection layers.

Left padding, right padding and no padding run the same torch model on other shapes and masks,
hence other CPU kernels and summation orders: the unnormalized vectors agree to 1e-4 relatively
and to 1e-5 of their largest entry (``_assert_close``), not bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from densekit.arguments import DataArguments, ModelArguments
from densekit.data.collator import tokenize
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.modeling.factory import BiEncoderRetriever

TEXTS = ["short one", "a somewhat longer text about proteins and receptors", "mid length text"]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def decoder(request, tiny_decoder) -> str:
    return tiny_decoder(request.param)


def _assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    atol = 1e-5 * max(1.0, expected.abs().max().item())
    torch.testing.assert_close(got, expected, atol=atol, rtol=1e-4)


def _vectors(encoder, model_path, side, append_eos=True):
    tokenizer = load_tokenizer(model_path, padding_side=side)
    batch = tokenize(tokenizer, TEXTS, 32, append_eos=append_eos, pad_to_multiple_of=8)
    with torch.no_grad():
        return batch, encoder.encode(dict(batch), is_query=False)


def test_last_token_pooling_is_padding_side_independent(decoder):
    encoder = DenseEncoder.from_pretrained(decoder, pooling="last", append_eos_token=True).eval()
    right_batch, right = _vectors(encoder, decoder, "right")
    left_batch, left = _vectors(encoder, decoder, "left")
    assert (left_batch["attention_mask"][:, 0] == 0).any()  # left padding really happened
    _assert_close(left, right)
    # each row's last real token is the EOS appended after truncation
    eos = load_tokenizer(decoder).eos_token_id
    lengths = right_batch["attention_mask"].sum(dim=1)
    for row, length in enumerate(lengths):
        assert right_batch["input_ids"][row, length - 1] == eos
        assert left_batch["input_ids"][row, -1] == eos
    # and one text alone (no padding at all) gives the same vector as in the batch
    single = tokenize(
        load_tokenizer(decoder), TEXTS[:1], 32, append_eos=True, pad_to_multiple_of=None
    )
    with torch.no_grad():
        alone = encoder.encode(dict(single), is_query=False)
    _assert_close(alone[0], right[0])


def test_lora_defaults_target_the_decoder_projections(decoder):
    encoder = BiEncoderRetriever.from_model_args(
        ModelArguments(model_name_or_path=decoder, pooling="eos", lora=True),
        DataArguments(append_eos_token=True),
    )
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f"{proj}.lora_A" in n for n in trainable), proj
    assert encoder.settings.pooling == "last"


@pytest.mark.parametrize("pooling", ["cls", "mean", "last"])
def test_absolute_position_encoder_is_padding_side_independent(tiny_model, pooling):
    """BERT's learned positions would shift under left padding without per-row position ids."""
    encoder = DenseEncoder.from_pretrained(tiny_model, pooling=pooling).eval()
    _, right = _vectors(encoder, tiny_model, "right", append_eos=False)
    left_batch, left = _vectors(encoder, tiny_model, "left", append_eos=False)
    assert (left_batch["attention_mask"][:, 0] == 0).any()
    _assert_close(left, right)
