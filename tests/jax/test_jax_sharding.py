"""Data parallel over two simulated devices: the update equals one device's on the whole batch
(negatives shared across devices), and GradCache over two devices equals the plain step.

XLA reads the device count once per process, so the checks run in a child process with
``--xla_force_host_platform_device_count=2``; this process's JAX keeps its one device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

CHILD = r"""
import json, sys
import jax, numpy as np, optax
from densekit.jax.encoder import JaxEncoder
from densekit.jax.losses import infonce
from densekit.jax.sharding import DataParallel
from densekit.jax.train_step import StepBuilder, TrainState

assert jax.device_count() == 2, jax.devices()
encoder = JaxEncoder.from_pretrained(sys.argv[1], pooling="mean", normalize=True)
rng = np.random.default_rng(0)

def batch(rows, length):
    ids = rng.integers(5, 500, (rows, length)).astype(np.int32)
    mask = (np.arange(length)[None] < rng.integers(2, length + 1, rows)[:, None]).astype(np.int32)
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": 0 * ids}

queries, passages = batch(4, 8), batch(8, 16)  # 4 queries, groups of 2: 2 queries per device
tx = optax.sgd(1.0)
out = {}
for name, devices, cache in (
    ("one", jax.devices()[:1], None),
    ("two", jax.devices(), None),
    ("two_grad_cache", jax.devices(), (1, 2)),
):
    place = DataParallel(devices)
    loss_fn = lambda q, p: infonce(q, p, temperature=0.05)
    step = StepBuilder(encoder.vectors, loss_fn, tx, place, cache, dropout=False).jitted()
    state = place.replicate(TrainState.create(encoder.params, tx))
    state, loss = step(state, place.global_batch(queries), place.global_batch(passages))
    shards = {len(x.sharding.device_set) for x in jax.tree.leaves(state.params)}
    out[name] = (float(loss), jax.tree.map(np.asarray, state.params), shards)
diff = lambda a, b: max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
start = jax.tree.map(np.asarray, encoder.params)
scale = lambda a: max(float(np.abs(x).max()) for x in jax.tree.leaves(a))
print(json.dumps({
    name: {"loss": loss, "vs_one": diff(params, out["one"][1]), "moved": diff(params, start),
           "scale": scale(params), "devices": sorted(shards)}
    for name, (loss, params, shards) in out.items()
}))
"""


def _small_bert(folder) -> str:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=512,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return str(folder)


def test_two_devices_equal_one_device_and_grad_cache_equals_plain(jax_cpu, tmp_path):
    """Crosses XLA CPU programs that differ in batch split, all-gather and GradCache chunking
    (so in summation order and matmul shapes): loss and weights agree to 1e-5 of their
    magnitude (the weights' largest entry), not absolutely."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, _small_bert(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["one"]["devices"] == [1] and result["two"]["devices"] == [2]
    assert result["one"]["moved"] > 1e-3  # the step changed the weights
    one = result["one"]
    for name in ("two", "two_grad_cache"):
        assert abs(result[name]["loss"] - one["loss"]) < 1e-5 * max(1.0, abs(one["loss"])), result
        assert result[name]["vs_one"] < 1e-5 * max(1.0, one["scale"]), result
