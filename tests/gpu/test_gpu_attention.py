"""SDPA and flash attention on a tiny decoder give the eager path's embeddings.

``--attn_implementation`` goes through densekit's ``build_encoder`` (the train command's path).
Batches mix lengths, so padding (left and right) and, for mean pooling, padded positions are
exercised: a NaN at a padded position would poison a mean-pooled vector.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from gpu_support import record, rel_err

from densekit.data.collator import tokenize
from densekit.modeling.encoder import load_tokenizer
from densekit.modeling.factory import build_encoder

pytestmark = pytest.mark.gpu

TEXTS = [
    "short one",
    "a somewhat longer passage about kinase signalling in tumour cells",
    "insulin",
    "the vaccine trial enrolled many participants across several sites and years of follow up",
]


def _vectors(folder: str, impl: str, pooling: str, side: str, dtype=torch.float32, texts=TEXTS):
    encoder = build_encoder(
        folder,
        attn_implementation=impl,
        pooling=pooling,
        normalize=True,
        padding_side=side,
        append_eos_token=pooling == "last",
    )
    encoder.to("cuda", dtype=dtype).eval()
    tokenizer = load_tokenizer(folder, side)
    encoded = tokenize(tokenizer, texts, 64, append_eos=pooling == "last", pad_to_multiple_of=None)
    batch = {k: v.cuda() for k, v in encoded.items()}
    with torch.no_grad():
        return encoder.encode_passage(batch).float(), encoder


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_sdpa_matches_eager_fp32(tiny_decoder_dir, kind, side, pooling):
    folder = tiny_decoder_dir(kind)
    eager, enc = _vectors(folder, "eager", pooling, side)
    assert enc.query_model.config._attn_implementation == "eager"
    sdpa, enc = _vectors(folder, "sdpa", pooling, side)
    assert enc.query_model.config._attn_implementation == "sdpa"
    assert torch.isfinite(sdpa).all()
    err = rel_err(sdpa, eager)
    record(f"sdpa_vs_eager_{kind}_{side}_{pooling}", rel_err=err)
    assert err <= 1e-4, f"sdpa vs eager: {err:.2e}"


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_sdpa_flash_kernel_matches_eager_bf16(tiny_decoder_dir, kind):
    """PyTorch's flash kernel (forced through SDPA) in bf16 against eager fp32. One text per
    call: the flash kernel takes no padding mask, so each batch is unpadded."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    folder = tiny_decoder_dir(kind)
    errors = []
    for text in TEXTS:
        eager, _ = _vectors(folder, "eager", "last", "right", texts=[text])
        eager16, _ = _vectors(folder, "eager", "last", "right", torch.bfloat16, texts=[text])
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            flash, _ = _vectors(folder, "sdpa", "last", "right", torch.bfloat16, texts=[text])
        # bf16 against fp32: the flash kernel may differ from eager bf16 only by bf16 rounding
        errors.append((rel_err(flash, eager), rel_err(eager16, eager)))
    record(
        f"sdpa_flash_bf16_{kind}",
        flash_vs_fp32=[e[0] for e in errors],
        eager_bf16_vs_fp32=[e[1] for e in errors],
    )
    for flash_err, eager_err in errors:
        assert flash_err <= max(3 * eager_err, 2e-2), errors


@pytest.mark.skipif(
    importlib.util.find_spec("flash_attn") is None,
    reason="flash_attention_2 needs the flash-attn package, which the GPU image lacks and "
    "which cannot travel as a wheel (hundreds of MB); PyTorch's own flash kernel is tested above",
)
@pytest.mark.parametrize("side", ["left", "right"])
def test_flash_attention_2_matches_eager(tiny_decoder_dir, side):
    folder = tiny_decoder_dir("qwen2")
    eager, _ = _vectors(folder, "eager", "last", side, torch.bfloat16)
    flash, enc = _vectors(folder, "flash_attention_2", "last", side, torch.bfloat16)
    assert enc.query_model.config._attn_implementation == "flash_attention_2"
    err = rel_err(flash, eager)
    record(f"flash_attention_2_{side}", rel_err=err)
    assert err <= 2e-2
