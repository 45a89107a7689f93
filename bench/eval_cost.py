"""What evaluation during training costs: one exact full-corpus evaluation of the SciFact dev
split against one training step of the recipe, and the approximate (group re-ranking) metrics
per query, on the bundled MiniLM, in the same process.

    python bench/eval_cost.py                  # the recipe's shapes: batch 32 x group 4, 256 tokens
    python bench/eval_cost.py --quick          # small shapes, a smoke test

The exact evaluation encodes the whole corpus, so its cost is that of encoding 5,183 passages;
the approximate one encodes each dev query with a group of 16 passages.
"""

from __future__ import annotations

import argparse
import tempfile

from _common import DATA, alternate, header, load_texts, median, model_path, spread


def _trainer(args, encoder):
    from densekit.arguments import RetrievalTrainingArguments
    from densekit.training.trainer import RetrievalTrainer

    trainer_args = RetrievalTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        grad_cache=True,
        gc_q_chunk_size=args.chunk,
        gc_p_chunk_size=args.chunk,
        report_to=[],
    )
    return RetrievalTrainer(model=encoder, args=trainer_args)


def _batch(tokenizer, queries, passages, size, group, args):
    from densekit.data.collator import RetrievalCollator

    items = [
        {"query": queries[i % len(queries)],
         "passages": [passages[(i * group + j) % len(passages)] for j in range(group)]}
        for i in range(size)
    ]  # fmt: skip
    return RetrievalCollator(tokenizer, args.query_len, args.passage_len)(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--query_len", type=int, default=64)
    parser.add_argument("--passage_len", type=int, default=256)
    parser.add_argument("--eval_group", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.chunk, args.passage_len, args.rounds = 8, 4, 64, 1
    header("evaluation cost during training", args)

    import torch

    from densekit.data.qrels import load_qrels
    from densekit.data.readers import load_corpus, load_queries
    from densekit.evaluation.exact import ExactEvaluator
    from densekit.evaluation.ir_metrics import IRMetrics
    from densekit.modeling.encoder import DenseEncoder, load_tokenizer

    torch.manual_seed(0)
    encoder = DenseEncoder.from_pretrained(
        model_path(), query_max_len=args.query_len, passage_max_len=args.passage_len
    )
    tokenizer = load_tokenizer(model_path())
    corpus = load_corpus(DATA / "corpus.jsonl")
    qrels = load_qrels(DATA / "qrels" / "dev.tsv")
    queries = load_queries(DATA / "queries.jsonl")
    if args.quick:
        corpus = corpus.select(range(500))
    exact = ExactEvaluator(corpus, queries, qrels)
    _, passages, query_text = load_texts()
    texts = list(query_text.values())
    train_batch = _batch(tokenizer, texts, passages, args.batch, args.group, args)
    eval_batch = _batch(tokenizer, texts, passages, 32, args.eval_group, args)
    trainer = _trainer(args, encoder)
    metrics = IRMetrics()

    def step():
        encoder.zero_grad(set_to_none=True)
        trainer.training_step(encoder, train_batch)

    def approximate():
        _, scores, labels = trainer.prediction_step(encoder, eval_batch, False)
        metrics.add(scores.numpy(), labels.numpy())

    times = alternate(
        {"train step": step, "exact eval": lambda: exact(encoder, tokenizer),
         "approx. 32 queries": approximate},
        rounds=args.rounds,
    )  # fmt: skip
    step_s, exact_s = median(times["train step"]), median(times["exact eval"])
    per_query = median(times["approx. 32 queries"]) / 32
    print(f"corpus {len(corpus)} passages, {len(exact.queries)} dev queries")
    print(f"train step (GradCache)   : {step_s:.1f} s (spread {spread(times['train step'])})")
    print(f"exact eval (full corpus) : {exact_s:.1f} s (spread {spread(times['exact eval'])})")
    print(
        f"approximate eval         : {per_query * 1000:.0f} ms per query (group {args.eval_group})"
    )
    print(f"exact eval = {exact_s / step_s:.2f} training steps; approximate on "
          f"{len(exact.queries)} queries = {per_query * len(exact.queries) / step_s:.2f} steps")  # fmt: skip


if __name__ == "__main__":
    main()
