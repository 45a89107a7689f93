"""Gathering vectors across processes: the one place that knows about ranks.

``gather_with_grad`` concatenates every rank's tensor in rank order while the local slice keeps
its autograd graph, so a loss over the global batch back-propagates into this rank's inputs.
Scaling the loss by the world size then makes DDP's gradient *average* equal the gradient of
the global-batch loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All ranks' ``tensor`` concatenated along dim 0; gradients flow to the local slice only."""
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[rank()] = tensor
    return torch.cat(parts, dim=0)


def gather_ids(ids: torch.Tensor) -> torch.Tensor:
    """All ranks' id tensors concatenated along dim 0 (no gradient). A 2-D tensor is padded
    with -1 to the widest rank's width first, since ranks hold different numbers of ids."""
    if world_size() == 1:
        return ids
    if ids.dim() == 2:
        width = torch.tensor([ids.size(1)], device=ids.device)
        dist.all_reduce(width, op=dist.ReduceOp.MAX)
        ids = torch.nn.functional.pad(ids, (0, int(width) - ids.size(1)), value=-1)
    parts = [torch.empty_like(ids) for _ in range(world_size())]
    dist.all_gather(parts, ids.contiguous())
    return torch.cat(parts, dim=0)
