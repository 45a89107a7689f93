"""One training process for the GPU check, run under ``torchrun --nproc_per_node 1``.

Modes (each a fresh process, so DeepSpeed's global state never leaks between them):

  plain   the RetrievalTrainer without DeepSpeed, under torch.distributed with world size 1
          (the Trainer's DDP path): without and with GradCache, without and with
          --negatives_cross_device (whose gather is the identity at world size 1).
  zero2   DeepSpeed ZeRO-2 (deepspeed/ds_zero2_config.json) without GradCache; then the check
  zero3   that --grad_cache with --deepspeed is refused; then, as a diagnostic only, one
          GradCache step with that refusal bypassed. zero3 also saves the model (weights
          gathered from the shards) and reloads it.

Every run trains ``--steps`` steps in fp32 on the same 16 items (batch 8, group 2) from the
same tiny model folder, and records the loss of each step and the full gradient of the first
step, read before the optimizer uses it: by a callback in the plain runs, by
``deepspeed.utils.safe_get_full_grad`` just before ``DeepSpeedEngine.step`` under ZeRO.
Results go to ``--out`` (torch.save of a dict); the GPU tests compare them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "gpu"))

from gpu_support import train_items  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from densekit.arguments import RetrievalTrainingArguments  # noqa: E402
from densekit.data.collator import RetrievalCollator  # noqa: E402
from densekit.errors import ConfigError  # noqa: E402
from densekit.modeling.encoder import DenseEncoder, load_tokenizer  # noqa: E402
from densekit.modeling.losses import RetrievalLoss  # noqa: E402
from densekit.training import distributed  # noqa: E402
from densekit.training.trainer import RetrievalTrainer  # noqa: E402

TEMPERATURE = 0.05
CAPTURE: dict = {"pending": False, "grads": None}


class FirstStepGrads(TrainerCallback):
    """Plain runs: the gradients as the optimizer is about to see them (no clipping)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.encoder = encoder
        self.grads: dict | None = None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.grads is None:
            self.grads = {
                n: p.grad.detach().float().cpu().clone()
                for n, p in self.encoder.named_parameters()
                if p.grad is not None
            }


def patch_deepspeed_step() -> None:
    """Under ZeRO the optimizer step happens inside the engine (accelerate calls it from
    ``backward``): read the full fp32 gradients there, before the first step."""
    from deepspeed.utils import safe_get_full_grad

    from deepspeed import DeepSpeedEngine

    original = DeepSpeedEngine.step

    def step(self, *args, **kwargs):
        if CAPTURE["pending"]:
            grads = {}
            for name, param in self.module.named_parameters():
                grad = safe_get_full_grad(param)
                if grad is not None:
                    grads[name] = grad.detach().float().cpu().clone()
            CAPTURE["grads"], CAPTURE["pending"] = grads, False
        return original(self, *args, **kwargs)

    DeepSpeedEngine.step = step


def run(model_dir: str, out_dir: str, steps: int, **flags):
    """A trainer for ``steps`` steps with ``flags``, its gradient watcher and its loss list."""
    args = RetrievalTrainingArguments(  # before the model, as densekit train does (ZeRO-3 init)
        output_dir=out_dir,
        precision="fp32",
        per_device_train_batch_size=8,
        max_steps=steps,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        max_grad_norm=0.0,
        weight_decay=0.0,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=0,
        **flags,
    )
    encoder = DenseEncoder.from_pretrained(
        model_dir, pooling="mean", normalize=True, temperature=TEMPERATURE
    )
    losses: list[float] = []
    loss_fn = RetrievalLoss.create("infonce", temperature=TEMPERATURE)

    def logged(q, p, targets=None):
        value = loss_fn(q, p, targets)
        losses.append(value.detach().float().item())
        return value

    watch = FirstStepGrads(encoder)
    trainer = RetrievalTrainer(
        model=encoder,
        args=args,
        train_dataset=train_items(16, 2),
        data_collator=RetrievalCollator(load_tokenizer(model_dir), 16, 32),
        loss_fn=logged,
        callbacks=[watch],
    )
    return trainer, watch, losses


def train_and_record(model_dir: str, steps: int, **flags) -> dict:
    out = tempfile.mkdtemp(prefix="densekit-gpu-worker-")
    deepspeed = bool(flags.get("deepspeed"))
    trainer, watch, losses = run(model_dir, out, steps, **flags)
    CAPTURE["pending"], CAPTURE["grads"] = deepspeed, None
    trainer.train()
    grads = CAPTURE["grads"] if deepspeed else watch.grads
    return {
        "losses": losses,
        "grads": grads,
        "wrapped": type(trainer.model_wrapped).__name__,
        "world_size": distributed.world_size(),
        "dist_backend": torch.distributed.get_backend()
        if torch.distributed.is_initialized()
        else None,
        "trainer": trainer,
        "out": out,
    }


def gather_identity() -> dict:
    """``gather_with_grad`` at world size 1 on CUDA: the same tensor, gradients flowing."""
    x = torch.randn(4, 8, device="cuda", requires_grad=True)
    y = distributed.gather_with_grad(x)
    (y * 2).sum().backward()
    return {
        "same_values": bool(torch.equal(y.detach(), x.detach())),
        "grad_ok": bool(torch.equal(x.grad, torch.full_like(x, 2.0))),
    }


def mode_plain(model_dir: str, steps: int) -> dict:
    result = {}
    gc = {"grad_cache": True, "gc_q_chunk_size": 3, "gc_p_chunk_size": 5}
    for name, flags in {
        "plain": {},
        "plain_gc": gc,
        "xdev": {"negatives_cross_device": True},
        "xdev_gc": {"negatives_cross_device": True, **gc},
    }.items():
        record = train_and_record(model_dir, steps, **flags)
        record.pop("trainer")
        result[name] = record
    result["gather"] = gather_identity()
    return result


def fresh_accelerator_state() -> None:
    """Forget the last Trainer's accelerator state (its DeepSpeed plugin) before the next one."""
    with contextlib.suppress(Exception):
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()


def mode_zero(model_dir: str, steps: int, stage: int, result: dict) -> None:
    """Fills ``result`` as it goes, so a failure late in the run keeps what came before."""
    config = str(ROOT / "deepspeed" / f"ds_zero{stage}_config.json")
    patch_deepspeed_step()
    result["config"] = config
    record = train_and_record(model_dir, steps, deepspeed=config)
    trainer = record.pop("trainer")
    result["ds"] = record
    if stage == 3:
        try:
            result["saved"] = save_and_reload(trainer, record["out"])
        except Exception as exc:  # the comparisons above stay recorded
            result["saved"] = {"error": "".join(traceback.format_exception_only(exc)).strip()}
    del trainer

    # --grad_cache with --deepspeed: refused with one clear line.
    fresh_accelerator_state()
    try:
        run(model_dir, tempfile.mkdtemp(), steps, deepspeed=config, grad_cache=True)
        result["refusal"] = None
    except ConfigError as exc:
        result["refusal"] = str(exc)
    except Exception as exc:
        result["refusal"] = {"error": "".join(traceback.format_exception_only(exc)).strip()}

    # Diagnostic only: what GradCache would do under ZeRO were the refusal bypassed.
    fresh_accelerator_state()
    try:
        trainer, _, losses = run(model_dir, tempfile.mkdtemp(), 1, deepspeed=config)
        trainer.args.grad_cache, trainer.args.gc_q_chunk_size, trainer.args.gc_p_chunk_size = (
            True,
            3,
            5,
        )
        CAPTURE["pending"], CAPTURE["grads"] = True, None
        trainer.train()
        result["bypass"] = {"losses": losses, "grads": CAPTURE["grads"]}
    except Exception as exc:  # recorded, never fatal
        result["bypass"] = {"error": "".join(traceback.format_exception_only(exc)).strip()}


def save_and_reload(trainer: RetrievalTrainer, out: str) -> dict:
    """ZeRO-3: save through densekit (weights gathered from the shards), reload, compare with
    the engine's full fp32 parameters."""
    from deepspeed.utils import safe_get_full_fp32_param

    from densekit.training.checkpoints import save_final

    folder = os.path.join(out, "final")
    save_final(trainer, folder)
    engine_params = {
        n: safe_get_full_fp32_param(p).float().cpu()
        for n, p in trainer.model_wrapped.module.named_parameters()
    }
    reloaded = DenseEncoder.from_pretrained(folder)
    errors = {}
    for name, param in reloaded.named_parameters():
        ref = engine_params.get(name)
        if ref is None:
            errors[name] = "missing in the engine"
            continue
        errors[name] = float((param.float() - ref).abs().max())
    dtypes = sorted({str(p.dtype) for p in reloaded.parameters()})
    return {"max_abs_err": errors, "dtypes": dtypes, "files": sorted(os.listdir(folder))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["plain", "zero2", "zero3"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    result: dict = {}
    try:
        if args.mode == "plain":
            result.update(mode_plain(args.model, args.steps))
        else:
            mode_zero(args.model, args.steps, int(args.mode[-1]), result)
    finally:
        torch.save(result, args.out)
    with contextlib.suppress(Exception):
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
