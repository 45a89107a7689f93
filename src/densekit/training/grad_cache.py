"""GradCache: contrastive batches larger than memory, with exactly the full-batch gradient.

1. every chunk is encoded without a graph, its random state saved;
2. the loss runs on the detached full batch of vectors, giving d loss / d vector;
3. every chunk is encoded again with its random state restored (so dropout replays exactly)
   and back-propagated with its slice of those cached gradients.
Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", 2021.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch


class RandomState:
    """The CPU and CUDA generator states at one moment, to replay a forward pass's dropout."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        devices = list(range(torch.cuda.device_count())) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


def split_batch(batch: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    """Split a tokenized batch into chunks of ``size`` rows."""
    keys = list(batch.keys())
    pieces = [batch[k].split(size, dim=0) for k in keys]
    return [dict(zip(keys, chunk, strict=True)) for chunk in zip(*pieces, strict=True)]


def grad_cache_step(
    encode_query: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    encode_passage: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    query: dict[str, torch.Tensor],
    passage: dict[str, torch.Tensor],
    q_chunk: int,
    p_chunk: int,
    loss_and_backward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    no_sync: Callable[[], contextlib.AbstractContextManager],
) -> torch.Tensor:
    """One GradCache step; returns the (detached) loss.

    ``loss_and_backward(q, p)`` computes the loss on leaf vectors and back-propagates it (so the
    caller decides scaling and AMP). ``no_sync()`` suppresses DDP's gradient all-reduce: every
    chunk but the final pair runs under it, and the last query and passage chunks back-propagate
    together so that all parameters of both towers take part in the one synchronised backward.
    """
    q_chunks, p_chunks = split_batch(query, q_chunk), split_batch(passage, p_chunk)
    q_states, p_states, q_reps, p_reps = [], [], [], []
    with torch.no_grad():
        for chunk in q_chunks:
            q_states.append(RandomState())
            q_reps.append(encode_query(chunk))
        for chunk in p_chunks:
            p_states.append(RandomState())
            p_reps.append(encode_passage(chunk))
    q_all = torch.cat(q_reps).detach().requires_grad_()
    p_all = torch.cat(p_reps).detach().requires_grad_()
    loss = loss_and_backward(q_all, p_all)
    q_grads = q_all.grad.split(q_chunk)
    p_grads = p_all.grad.split(p_chunk)

    jobs = [(encode_query, c, s, g) for c, s, g in zip(q_chunks, q_states, q_grads, strict=True)]
    jobs += [(encode_passage, c, s, g) for c, s, g in zip(p_chunks, p_states, p_grads, strict=True)]
    last_q = len(q_chunks) - 1
    synced = [jobs[last_q], jobs[-1]]
    with no_sync():
        for index, (encode, chunk, state, grad) in enumerate(jobs[:-1]):
            if index == last_q:
                continue
            with state.replay():
                reps = encode(chunk)
            reps.backward(grad.to(reps.dtype))
    surrogate = []
    for encode, chunk, state, grad in synced:
        with state.replay():
            surrogate.append((encode(chunk) * grad.to(torch.float32)).sum())
    torch.stack(surrogate).sum().backward()
    return loss.detach()
