"""Flags that need hardware or packages a CPU-only machine lacks, found before any work."""

from __future__ import annotations

import torch

# (attribute, message) for each GPU-only flag.
GPU_ONLY = (
    ("fp16", "--fp16 needs a CUDA GPU; on CPU use --bf16 (autocast) or drop it"),
    ("deepspeed", "--deepspeed needs the deepspeed package and a CUDA GPU; drop it on CPU"),
    ("load_in_4bit", "--load_in_4bit needs bitsandbytes and a CUDA GPU"),
)


def hardware_problems(namespace) -> list[str]:
    """Messages for each flag in ``namespace`` that this machine cannot honour."""
    problems = []
    has_cuda = torch.cuda.is_available()
    for attr, message in GPU_ONLY:
        if getattr(namespace, attr, None) and not has_cuda:
            problems.append(message)
    if (
        getattr(namespace, "use_flash_attention", False)
        or getattr(namespace, "attn_implementation", None) == "flash_attention_2"
    ) and not has_cuda:
        problems.append("flash attention needs a CUDA GPU and flash-attn; use sdpa on CPU")
    return problems
