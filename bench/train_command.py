"""What a user waits per training step: the whole `densekit train` command against
sentence-transformers' SentenceTransformerTrainer with MultipleNegativesRankingLoss, each a fresh
process on the same 16 x (query, positive, 3 negatives) SciFact groups, lengths 64/256.

Per-step time = (t(N steps) - t(2 steps)) / (N - 2), so start-up, data loading and saving cancel;
rounds alternate which side runs first. Environment: N (8), ROUNDS (2), PREC (fp32 | bf16),
DK_EXTRA (more `densekit train` flags).

    N=8 ROUNDS=2 PREC=fp32 .venv/bin/python bench/train_command.py
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
from _common import DATA, load_texts

from densekit.data.qrels import load_qrels
from densekit.data.readers import load_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
N = int(os.environ.get("N", 8))
ROUNDS = int(os.environ.get("ROUNDS", 2))
PREC = os.environ.get("PREC", "fp32")
BS = 16
GROUP = 4
EXTRA = os.environ.get("DK_EXTRA", "").split()
work = tempfile.mkdtemp(prefix="densekit-train-command-")
doc_ids, passages, qtext = load_texts()

corpus = load_corpus(DATA / "corpus.jsonl")
title = dict(zip(corpus["docid"], corpus["title"], strict=False))
text = dict(zip(corpus["docid"], corpus["text"], strict=False))
fmt = dict(zip(doc_ids, passages, strict=False))
qrels = load_qrels(DATA / "qrels" / "train-split.tsv")
judged = {d for v in qrels.values() for d in v}
pool = [d for d in doc_ids if d not in judged]
rng = random.Random(0)
qids = sorted(qrels)[: BS * N]
recs, st_rows = [], []
for q in qids:
    pos = next(d for d, r in qrels[q].items() if r > 0)
    negs = rng.sample(pool, GROUP - 1)
    recs.append(
        {
            "query_id": q,
            "query": qtext[q],
            "positive_passages": [{"docid": pos, "title": title[pos], "text": text[pos]}],
            "negative_passages": [{"docid": d, "title": title[d], "text": text[d]} for d in negs],
        }
    )
    st_rows.append([qtext[q], fmt[pos], *[fmt[d] for d in negs]])
with open(f"{work}/train.jsonl", "w") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
Path(f"{work}/st.json").write_text(json.dumps(st_rows))
ST = f'''
import json, sys, torch, warnings; warnings.filterwarnings("ignore")
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
rows = json.load(open("{work}/st.json"))
ds = Dataset.from_dict({{"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows],
    **{{f"negative_{{j}}": [r[1 + j] for r in rows] for j in range(1, {GROUP})}}}})
m = SentenceTransformer("{_common.model_path()}", device="cpu"); m.max_seq_length = 256
args = SentenceTransformerTrainingArguments(output_dir="{work}/st-out", per_device_train_batch_size={BS},
    max_steps=int(sys.argv[1]), learning_rate=2e-5, warmup_steps=0, save_strategy="no", report_to="none",
    use_cpu=True, dataloader_drop_last=True, seed=0, logging_steps=1000, bf16={PREC == "bf16"})
SentenceTransformerTrainer(model=m, args=args, train_dataset=ds, loss=MultipleNegativesRankingLoss(m, scale=20.0)).train()
'''
Path(f"{work}/st_train.py").write_text(ST)
env = dict(
    os.environ,
    TQDM_DISABLE="1",
    HF_HUB_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
)


def dk(n):
    return [
        PY,
        "-m",
        "densekit",
        "train",
        "--model_name_or_path",
        _common.model_path(),
        "--dataset_path",
        f"{work}/train.jsonl",
        "--output_dir",
        f"{work}/dk-out-{n}",
        "--overwrite_output_dir",
        "--per_device_train_batch_size",
        str(BS),
        "--train_group_size",
        str(GROUP),
        "--query_max_len",
        "64",
        "--passage_max_len",
        "256",
        "--max_steps",
        str(n),
        "--learning_rate",
        "2e-5",
        "--temperature",
        "0.05",
        "--precision",
        PREC,
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--logging_steps",
        "1000",
        *EXTRA,
    ]


def st(n):
    return [PY, f"{work}/st_train.py", str(n)]


def run(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        print(r.stdout[-2000:], r.stderr[-4000:])
        raise SystemExit(cmd)
    return time.perf_counter() - t


res = {"densekit": {}, "st": {}}
for rnd in range(ROUNDS):
    order = [("densekit", dk), ("st", st)] if rnd % 2 == 0 else [("st", st), ("densekit", dk)]
    for name, mk in order:
        for n in (N, 2):
            res[name].setdefault(n, []).append(run(mk(n)))
    per = {k: (v[N][-1] - v[2][-1]) / (N - 2) for k, v in res.items()}
    print(
        f"round {rnd + 1}: "
        + ", ".join(
            f"{k} t{N} {v[N][-1]:.1f}s t2 {v[2][-1]:.1f}s per-step {per[k]:.2f}s"
            for k, v in res.items()
        )
        + f"; st/densekit {per['st'] / per['densekit']:.3f}",
        flush=True,
    )
best = {k: min((a - b) / (N - 2) for a, b in zip(v[N], v[2], strict=False)) for k, v in res.items()}
print(f"best per-step: {best}; throughput densekit/st {best['st'] / best['densekit']:.3f} ({PREC})")
