"""Which float precision to compute in: bf16 where the hardware does it natively, else fp32.

bf16 autocast on a CPU without native bf16 (no AVX512_BF16 or AMX) is several times *slower*
than fp32 (a 384x1536 Linear measured 6.8x slower on an AVX2 machine), so ``auto`` picks bf16
only where it pays: a CUDA GPU with bf16, or a CPU with native bf16 instructions. The
environment variable ``DENSEKIT_PRECISION`` (auto, fp32, bf16) overrides ``auto`` machine-wide.
"""

from __future__ import annotations

import logging
import os
from functools import cache

from densekit.errors import ConfigError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: str = "cpu") -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and the reason in words."""
    import torch  # here: parsers read PRECISIONS without loading torch

    if device.startswith("cuda"):
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ok, "CUDA bf16" if ok else "no CUDA bf16"
    checks = {
        "AMX": getattr(torch.cpu, "_is_amx_tile_supported", lambda: False),
        "AVX512_BF16": getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False),
    }
    found = [name for name, check in checks.items() if check()]
    capability = torch.backends.cpu.get_cpu_capability()
    if found:
        return True, f"CPU with {' and '.join(found)}"
    return False, f"CPU without AVX512_BF16 or AMX (capability {capability})"


def resolve(requested: str, device: str = "cpu") -> str:
    """``fp32`` or ``bf16`` for a requested precision; explicit bf16 without native support
    warns once with the reason."""
    if requested not in PRECISIONS:
        raise ConfigError(f"--precision {requested!r}: expected one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        requested = os.environ.get("DENSEKIT_PRECISION", "auto")
        if requested not in PRECISIONS:
            raise ConfigError(f"DENSEKIT_PRECISION={requested!r}: expected one of {PRECISIONS}")
    native, why = native_bf16(device)
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native:
        _warn_slow_bf16(why)
    return requested


@cache
def _warn_slow_bf16(why: str) -> None:
    logger.warning("bf16 requested on a %s: expect it to be slower than fp32", why)
