"""The corpus behind the hits: texts read back by docid, in one gather, as the file has them."""

from __future__ import annotations

import json

from densekit.search import CorpusStore


def test_documents_in_one_gather_equal_the_file(tmp_path, write_jsonl):
    rows = [
        {"_id": "d1", "title": "T1", "text": "first"},
        {"_id": "d2", "title": "", "text": "second"},
        {"_id": "d3", "title": "T3", "text": "third"},
    ]
    path = write_jsonl(tmp_path / "corpus.jsonl", rows)
    store = CorpusStore.open(path)
    expected = {r["_id"]: (r["title"], r["text"]) for r in map(json.loads, path.open())}
    asked = ["d3", "missing", "d1", "d3", "d2"]
    assert store.documents(asked) == [expected.get(d, ("", "")) for d in asked]
    assert store.documents(["missing"]) == [("", "")]
    assert store.documents([]) == []
    assert store.document("d2") == ("", "second")
