"""A SciFact-derived collection shaped like the held-out data of issue 22: short keyword queries,
dozens of judged documents per query, graded relevance, documents judged for many queries.

The held-out set (medical documents, keyword queries, graded judgments by citation: a document
an article cites directly is grade 2, one cited through a linked article grade 1) is not on these
machines. This builds the same shape from SciFact's claims and their judged abstracts:

- a query is a content word or a pair of adjacent content words of the claims (``insulin``,
  ``breast cancer``), kept when it occurs in ``--min_claims``..``--max_claims`` claims;
- grade 2: the judged abstracts of the claims that contain the query (the "direct citations");
- grade 1: the judged abstracts of claims linked to one of those, i.e. sharing at least
  ``--link_words`` topical words with it (words in at most ``--max_claims`` claims): the
  "indirect citations".

Relevance goes through the claims, never through the abstracts' own words, so BM25 is not an
oracle; the judgments are incomplete (abstracts on the topic that no claim cites are unjudged),
as in the held-out data. Written as a BEIR folder (corpus.jsonl, queries.jsonl,
qrels/train.tsv with grades) that ``densekit recipe --data_dir`` reads:

    .venv/bin/python bench/graded_topics.py --out /tmp/graded-topics
    .venv/bin/densekit recipe --data_dir /tmp/graded-topics --output_dir runs/graded --epochs 1
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from densekit.resources import bundled_data_dir

WORD = re.compile(r"[a-z0-9][a-z0-9\-]*[a-z0-9]|[a-z]")


def content_words(text: str) -> list[str]:
    """Lower-cased words of 3+ characters that are not stop words or bare numbers, in order."""
    words = WORD.findall(text.lower())
    return [w for w in words if len(w) >= 3 and w not in ENGLISH_STOP_WORDS and not w.isdigit()]


def keys_of(words: list[str]) -> set[str]:
    """The claim's candidate queries: each content word and each adjacent pair."""
    return set(words) | {f"{a} {b}" for a, b in pairwise(words)}


def read_qrels(path: Path) -> dict[str, set[str]]:
    judged: dict[str, set[str]] = defaultdict(set)
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        qid, docid, grade = line.split("\t")
        if float(grade) > 0:
            judged[qid].add(docid)
    return judged


def build(source: Path, args) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Keyword queries and their graded judgments from ``source``'s claims and train qrels."""
    claims = {}
    for line in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        claims[row["_id"]] = content_words(row["text"])
    cited = read_qrels(source / "qrels" / "train.tsv")
    claims = {qid: words for qid, words in claims.items() if qid in cited}
    by_key: dict[str, list[str]] = defaultdict(list)
    for qid, words in claims.items():
        for key in keys_of(words):
            by_key[key].append(qid)
    # links count topical words only: "increased" or "patients" link half the claims
    sets = {
        qid: {w for w in words if len(by_key[w]) <= args.max_claims}
        for qid, words in claims.items()
    }
    queries, qrels = {}, {}
    for key, direct in sorted(by_key.items()):
        if not args.min_claims <= len(direct) <= args.max_claims:
            continue
        grades = {doc: 2 for qid in direct for doc in cited[qid]}
        for qid in direct:
            for other, words in sets.items():
                if other not in direct and len(sets[qid] & words) >= args.link_words:
                    for doc in cited[other]:
                        grades.setdefault(doc, 1)
        qid = f"t{len(queries)}"
        queries[qid], qrels[qid] = key, grades
    return queries, qrels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(bundled_data_dir()), help="a BEIR SciFact folder")
    p.add_argument("--out", required=True)
    p.add_argument("--min_claims", type=int, default=3)
    p.add_argument("--max_claims", type=int, default=40)
    p.add_argument("--link_words", type=int, default=2)
    args = p.parse_args()
    source, out = Path(args.source), Path(args.out)
    queries, qrels = build(source, args)
    if out.exists():
        shutil.rmtree(out)
    (out / "qrels").mkdir(parents=True)
    shutil.copy(source / "corpus.jsonl", out / "corpus.jsonl")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as handle:
        for qid, text in queries.items():
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with open(out / "qrels" / "train.tsv", "w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid, grades in qrels.items():
            for doc, grade in sorted(grades.items()):
                handle.write(f"{qid}\t{doc}\t{grade}\n")
    judged = [len(g) for g in qrels.values()]
    top = [sum(v == 2 for v in g.values()) for g in qrels.values()]
    per_doc: dict[str, int] = defaultdict(int)
    for grades in qrels.values():
        for doc in grades:
            per_doc[doc] += 1
    words = [len(text.split()) for text in queries.values()]
    print(f"{out}: {len(queries)} queries ({statistics.mean(words):.1f} words), "
          f"judged per query mean {statistics.mean(judged):.1f} median "
          f"{statistics.median(judged)} (grade 2: mean {statistics.mean(top):.1f}); "
          f"{len(per_doc)} judged documents, each judged for "
          f"{statistics.mean(per_doc.values()):.1f} queries on average")  # fmt: skip


if __name__ == "__main__":
    main()
