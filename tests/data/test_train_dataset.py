"""TrainDataset: seeded group sampling, repairs of short rows, text formatting, teacher scores."""

from __future__ import annotations

import pytest

from densekit.data.formatting import TextFormat
from densekit.data.readers import load_corpus, load_train
from densekit.data.train_dataset import Corpus, TrainDataset


@pytest.fixture(scope="module")
def many_negs(tmp_path_factory, write_jsonl):
    """10 queries, each with 3 positives and 12 negatives; passage text names its query."""
    rows = [
        {
            "query_id": f"q{i}",
            "query": f"query {i}",
            "pos": [f"pos {i}.{j}" for j in range(3)],
            "neg": [f"neg {i}.{j}" for j in range(12)],
        }
        for i in range(10)
    ]
    return load_train(write_jsonl(tmp_path_factory.mktemp("many") / "t.jsonl", rows))


def _epoch_items(dataset, epoch=0):
    dataset.set_epoch(epoch)
    return [dataset[i] for i in range(len(dataset))]


def test_group_shape_and_membership(many_negs):
    dataset = TrainDataset(many_negs, group_size=5)
    assert len(dataset) == 10
    for i, item in enumerate(_epoch_items(dataset)):
        assert item["query"] == f"query {i}"
        assert len(item["passages"]) == 5
        assert item["passages"][0] in {f"pos {i}.{j}" for j in range(3)}
        negatives = item["passages"][1:]
        assert set(negatives) <= {f"neg {i}.{j}" for j in range(12)}
        assert len(set(negatives)) == 4  # enough negatives: sampled without replacement
        assert item["scores"] is None


def test_sampling_is_deterministic_per_seed_and_varies(many_negs):
    first = _epoch_items(TrainDataset(many_negs, group_size=5, seed=1))
    again = _epoch_items(TrainDataset(many_negs, group_size=5, seed=1))
    assert first == again
    other_seed = _epoch_items(TrainDataset(many_negs, group_size=5, seed=2))
    assert other_seed != first
    dataset = TrainDataset(many_negs, group_size=5, seed=1)
    assert _epoch_items(dataset, epoch=1) != first
    assert _epoch_items(dataset, epoch=0) == first  # going back reproduces epoch 0


def test_too_few_negatives_sampled_with_replacement(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "t.jsonl", [{"query": "q", "pos": ["p"], "neg": ["n1", "n2"]}])
    dataset = TrainDataset(load_train(path), group_size=8)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        item = dataset[0]
        assert len(item["passages"]) == 8
        assert item["passages"][0] == "p"
        assert set(item["passages"][1:]) <= {"n1", "n2"}


def test_zero_negatives_filled_from_other_rows(tmp_path, write_jsonl):
    rows = [{"query": f"q{i}", "pos": [f"p{i}"]} for i in range(6)]
    dataset = TrainDataset(load_train(write_jsonl(tmp_path / "t.jsonl", rows)), group_size=4)
    for i in range(6):
        item = dataset[i]
        assert len(item["passages"]) == 4
        assert item["passages"][0] == f"p{i}"
        fillers = item["passages"][1:]
        assert set(fillers) <= {f"p{j}" for j in range(6) if j != i}


def test_zero_negatives_filled_from_corpus(tmp_path, write_jsonl):
    corpus_path = write_jsonl(
        tmp_path / "corpus.jsonl", [{"_id": f"d{j}", "text": f"corpus text {j}"} for j in range(20)]
    )
    rows = [{"query": "q", "positive_document_ids": ["d0"]}]
    dataset = TrainDataset(
        load_train(write_jsonl(tmp_path / "t.jsonl", rows)),
        group_size=6,
        corpus=Corpus(load_corpus(corpus_path)),
    )
    item = dataset[0]
    assert item["passages"][0] == "corpus text 0"
    assert len(item["passages"]) == 6
    assert set(item["passages"][1:]) <= {f"corpus text {j}" for j in range(20)}


def test_group_size_one_is_just_the_positive(many_negs):
    item = TrainDataset(many_negs, group_size=1)[3]
    assert len(item["passages"]) == 1
    assert item["passages"][0].startswith("pos 3.")


def test_title_text_separator_and_prefixes(tmp_path, write_jsonl):
    rows = [
        {
            "query": "what is a cat",
            "positive_passages": [{"docid": "1", "title": "Cat", "text": "A feline."}],
            "negative_passages": [{"docid": "2", "title": "", "text": "No title here."}],
        }
    ]
    dataset = TrainDataset(
        load_train(write_jsonl(tmp_path / "t.jsonl", rows)),
        group_size=2,
        text_format=TextFormat("query: ", "passage: ", " [SEP] "),
    )
    item = dataset[0]
    assert item["query"] == "query: what is a cat"
    assert item["passages"] == ["passage: Cat [SEP] A feline.", "passage: No title here."]


def test_format_passage_drops_empty_parts():
    plain, prefixed = TextFormat(passage_field_separator=" | "), TextFormat("", "p: ", " | ")
    assert plain.format_passage("body", "T") == "T | body"
    assert plain.format_passage("body", "") == "body"
    assert prefixed.format_passage("", "T") == "p: T"
    assert prefixed.format_passage("body", None) == "p: body"


def test_prompt_field_overrides_query_prefix(tmp_path, write_jsonl):
    rows = [
        {"query": "with prompt", "pos": ["p1"], "prompt": "Instruct: find it. Query: "},
        {"query": "no prompt", "pos": ["p2"]},
    ]
    dataset = TrainDataset(
        load_train(write_jsonl(tmp_path / "t.jsonl", rows)),
        group_size=1,
        text_format=TextFormat(query_prefix="query: "),
    )
    assert dataset[0]["query"] == "Instruct: find it. Query: with prompt"
    assert dataset[1]["query"] == "query: no prompt"


def test_teacher_scores_follow_the_chosen_passages(tmp_path, write_jsonl):
    # each passage's score is encoded in its text, so alignment can be checked independently
    rows = [
        {
            "query": f"q{i}",
            "pos": [f"pos {s}" for s in (10, 11, 12)],
            "pos_scores": [10, 11, 12],
            "neg": [f"neg {s}" for s in range(6)],
            "neg_scores": list(range(6)),
        }
        for i in range(5)
    ]
    dataset = TrainDataset(load_train(write_jsonl(tmp_path / "t.jsonl", rows)), group_size=4)
    assert dataset.has_scores
    for epoch in range(3):
        for item in _epoch_items(dataset, epoch):
            expected = [float(text.split()[1]) for text in item["passages"]]
            assert item["scores"] == pytest.approx(expected)


def test_teacher_scores_with_replacement_sampling(tmp_path, write_jsonl):
    rows = [
        {"query": "q", "pos": ["pos 7"], "pos_scores": [7], "neg": ["neg 3"], "neg_scores": [3]}
    ]
    item = TrainDataset(load_train(write_jsonl(tmp_path / "t.jsonl", rows)), group_size=4)[0]
    assert item["passages"] == ["pos 7", "neg 3", "neg 3", "neg 3"]
    assert item["scores"] == pytest.approx([7.0, 3.0, 3.0, 3.0])


def test_scores_dropped_when_some_rows_lack_them(tmp_path, write_jsonl):
    rows = [
        {"query": "a", "pos": ["p"], "pos_scores": [1.0]},
        {"query": "b", "pos": ["p"]},
    ]
    dataset = TrainDataset(load_train(write_jsonl(tmp_path / "t.jsonl", rows)), group_size=1)
    assert not dataset.has_scores
    assert dataset[0]["scores"] is None


def test_all_positives_gives_one_item_per_query_positive_pair(tmp_path, write_jsonl):
    """``positives="all"``: an epoch holds every (query, positive) pair exactly once, each item's
    target is that pair's positive, and its negatives still come from its own row."""
    rows = [
        {"query": f"query {i}", "pos": [f"pos {i}.{j}" for j in range(i + 1)],
         "neg": [f"neg {i}.{j}" for j in range(4)]}
        for i in range(4)
    ]  # fmt: skip
    dataset = TrainDataset(
        load_train(write_jsonl(tmp_path / "t.jsonl", rows)), group_size=3, positives="all"
    )
    assert len(dataset) == 1 + 2 + 3 + 4
    items = _epoch_items(dataset)
    pairs = sorted((item["query"], item["passages"][0]) for item in items)
    assert pairs == sorted((f"query {i}", f"pos {i}.{j}") for i in range(4) for j in range(i + 1))
    for item in items:
        i = item["query"].split()[1]
        assert set(item["passages"][1:]) <= {f"neg {i}.{j}" for j in range(4)}
    with pytest.raises(Exception, match="one or all"):
        TrainDataset(dataset.records, group_size=3, positives="some")


def test_passage_ids_name_passages_and_every_positive(tmp_path, write_jsonl):
    """Items carry stable ids: the same docid -> the same id wherever it appears (the text may
    differ), passages without docids by their text; ``positive_ids`` lists all the row's
    positives, not only the sampled one."""
    from densekit.data.train_dataset import passage_id

    rows = [
        {"query_id": "a", "query": "qa",
         "positive_passages": [{"docid": "d1", "title": "", "text": "one"},
                               {"docid": "d2", "title": "", "text": "two"}],
         "negative_passages": [{"docid": "d3", "title": "", "text": "three"}]},
        {"query_id": "b", "query": "qb",
         "positive_passages": [{"docid": "d2", "title": "", "text": "two, again"}],
         "negative_passages": [{"docid": "d1", "title": "", "text": "one"}]},
    ]  # fmt: skip
    dataset = TrainDataset(load_train(write_jsonl(tmp_path / "t.jsonl", rows)), group_size=2)
    first, second = dataset[0], dataset[1]
    ids = {"d1": passage_id({"docid": "d1"}), "d2": passage_id({"docid": "d2"})}
    assert sorted(first["positive_ids"]) == sorted(ids.values())
    assert second["positive_ids"] == [ids["d2"]]
    assert second["passage_ids"] == [ids["d2"], ids["d1"]]
    assert len({*ids.values(), passage_id({"docid": "d3"})}) == 3
    by_text = passage_id({"docid": None, "title": "t", "text": "x"})
    assert by_text == passage_id({"title": "t", "text": "x"}) != passage_id({"text": "x"})
    assert 0 <= by_text < 2**63


def test_capped_all_positives_draw_distinct_positives_afresh_each_epoch(tmp_path, write_jsonl):
    """``max_positives=3``: a row with 6 positives gives 3 items per epoch with 3 different
    positives, other ones in other epochs (all 6 within 30 epochs); rows at or under the cap
    give exactly what the uncapped dataset gives."""
    rows = [
        {"query": f"query {i}", "pos": [f"pos {i}.{j}" for j in range(k)],
         "neg": [f"neg {i}.{j}" for j in range(4)]}
        for i, k in enumerate((1, 3, 6))
    ]  # fmt: skip
    records = load_train(write_jsonl(tmp_path / "t.jsonl", rows))
    capped = TrainDataset(records, group_size=2, positives="all", max_positives=3)
    uncapped = TrainDataset(records, group_size=2, positives="all")
    assert len(capped) == 1 + 3 + 3 and len(uncapped) == 1 + 3 + 6
    seen = set()
    for epoch in range(30):
        items = _epoch_items(capped, epoch)
        targets = [item["passages"][0] for item in items if item["query"] == "query 2"]
        assert len(targets) == len(set(targets)) == 3
        seen |= set(targets)
        under = [item for item in items if item["query"] != "query 2"]
        full = [item for item in _epoch_items(uncapped, epoch) if item["query"] != "query 2"]
        assert under == full
    assert seen == {f"pos 2.{j}" for j in range(6)}
    with pytest.raises(Exception, match="max_positives"):
        TrainDataset(records, group_size=2, positives="all", max_positives=0)


def test_capped_draws_follow_the_grades_without_replacement(tmp_path, write_jsonl):
    """Grades [1, 1, 1, 1, 1, 5], 2 drawn per epoch: the grade-5 positive is among them with
    probability 5/10 + 5 * (1/10) * (5/9) = 0.7778 (drawn first, or second after one of the
    others: each draw in proportion to the grades left), within 6 sigma over 3,000 epochs;
    uniform: 2/6."""
    rows = [{"query": "q", "pos": [f"p{j}" for j in range(6)], "neg": ["n"],
             "pos_grades": [1, 1, 1, 1, 1, 5]}]  # fmt: skip
    records = load_train(write_jsonl(tmp_path / "t.jsonl", rows))
    draws = 3000

    def share(sampling):
        dataset = TrainDataset(
            records, group_size=2, positives="all", max_positives=2, positive_sampling=sampling
        )
        hits = 0
        for epoch in range(draws):
            targets = {item["passages"][0] for item in _epoch_items(dataset, epoch)}
            assert len(targets) == 2
            hits += "p5" in targets
        return hits / draws

    for sampling, p in (("grade", 0.5 + 5 * 0.1 * 5 / 9), ("uniform", 2 / 6)):
        assert abs(share(sampling) - p) <= 6 * (p * (1 - p) / draws) ** 0.5, sampling


def test_graded_positives_are_drawn_in_proportion_to_their_grade(tmp_path, write_jsonl):
    """``pos_grades`` [1, 3]: the grade-3 positive is drawn 3/4 of the time (a binomial
    frequency within 6 sigma over 2,000 epochs); ``uniform`` and a row without grades: 1/2."""
    rows = [
        {"query": "graded", "pos": ["low", "high"], "neg": ["n"], "pos_grades": [1, 3]},
        {"query": "binary", "pos": ["one", "two"], "neg": ["n"]},
    ]
    records = load_train(write_jsonl(tmp_path / "t.jsonl", rows))
    draws = 2000

    def share(dataset, row, passage):
        hits = 0
        for epoch in range(draws):
            dataset.set_epoch(epoch)
            hits += dataset[row]["passages"][0] == passage
        return hits / draws

    def within(observed, p):
        return abs(observed - p) <= 6 * (p * (1 - p) / draws) ** 0.5

    graded = TrainDataset(records, group_size=2)
    assert within(share(graded, 0, "high"), 0.75)
    assert within(share(graded, 1, "two"), 0.5)
    uniform = TrainDataset(records, group_size=2, positive_sampling="uniform")
    assert within(share(uniform, 0, "high"), 0.5)
    with pytest.raises(Exception, match="grade or uniform"):
        TrainDataset(records, group_size=2, positive_sampling="best")


def test_random_fill_ins_get_teacher_scores_far_below_the_rows(tmp_path, write_jsonl):
    """A row without negatives is filled with other rows' passages; the teacher never scored
    them, so they get the row's lowest score minus 10 (almost no softmax weight), not the
    positive's own score."""
    rows = [
        {"query": "a", "pos": ["pa"], "pos_scores": [2.0], "neg": []},
        {"query": "b", "pos": ["pb"], "pos_scores": [1.0], "neg": ["nb"], "neg_scores": [0.5]},
    ]
    item = TrainDataset(load_train(write_jsonl(tmp_path / "t.jsonl", rows)), group_size=3)[0]
    assert item["passages"][0] == "pa" and item["scores"] == pytest.approx([2.0, -8.0, -8.0])


def test_equal_grades_sample_as_binary_data(tmp_path, write_jsonl):
    """Grades that are all equal weigh nothing: the same draws as the file without them."""
    plain = [{"query": "q", "pos": ["a", "b", "c"], "neg": [f"n{i}" for i in range(9)]}]
    graded = [{**plain[0], "pos_grades": [2, 2, 2]}]
    items = []
    for rows, name in ((plain, "p.jsonl"), (graded, "g.jsonl")):
        dataset = TrainDataset(load_train(write_jsonl(tmp_path / name, rows)), group_size=4)
        items.append([_epoch_items(dataset, epoch)[0]["passages"] for epoch in range(20)])
    assert items[0] == items[1]
