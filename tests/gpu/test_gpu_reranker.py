"""A cross-encoder scoring on CUDA through the first-token path (``modeling.first_token``):
its logits against the whole model's, each pair alone, on the GPU and in fp32 on the CPU."""

from __future__ import annotations

import pytest
import torch
from gpu_support import record, rel_err

from densekit.modeling.reranker import CrossEncoderReranker, RerankerConfig

pytestmark = pytest.mark.gpu

PAIRS = [
    ("what is a kinase", "A kinase is an enzyme that adds phosphate groups to other proteins."),
    ("vaccine", "Vaccines train the immune system; a much longer passage " * 4),
    ("short", "x"),
    ("insulin and the pancreas", "The pancreas secretes insulin into the blood."),
]


def _whole(reranker: CrossEncoderReranker, device: str) -> torch.Tensor:
    """Each pair alone (no padding) through the whole HF classifier: the reference."""
    scores = []
    for query, passage in PAIRS:
        batch = {k: v.to(device) for k, v in reranker.tokenize([(query, passage)]).items()}
        with torch.no_grad():
            scores.append(reranker.model(**batch).logits.view(-1)[0].float().cpu())
    return torch.stack(scores)


def test_first_token_logits_on_cuda_equal_the_whole_model(tiny_bert_dir):
    torch.manual_seed(0)
    reranker = CrossEncoderReranker.from_backbone(tiny_bert_dir, RerankerConfig(max_len=64))
    cpu_whole = _whole(reranker, "cpu")
    reranker.model.to("cuda")
    assert reranker.first_token_only  # the probe check passed on the GPU
    got = torch.from_numpy(reranker.logits(PAIRS, batch_size=3))
    whole = _whole(reranker, "cuda")
    err, err_cpu = rel_err(got, whole), rel_err(got, cpu_whole)
    record("reranker_first_token_cuda_fp32", rel_err=err, rel_err_vs_cpu=err_cpu)
    assert err <= 1e-4 and err_cpu <= 1e-3, f"first-token path on CUDA: {err:.2e} / {err_cpu:.2e}"
    reranker.set_precision("bf16")
    bf16 = torch.from_numpy(reranker.logits(PAIRS, batch_size=3))
    err_bf16 = rel_err(bf16, whole)
    record("reranker_first_token_cuda_bf16", rel_err=err_bf16)
    assert err_bf16 <= 5e-2, f"bf16 autocast on CUDA: {err_bf16:.2e}"
