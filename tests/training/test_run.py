"""What a training run checks before it starts, and the loss it builds from the flags."""

from __future__ import annotations

import pytest

from densekit.arguments import DataArguments, ModelArguments, RetrievalTrainingArguments
from densekit.errors import ConfigError
from densekit.modeling.factory import BiEncoderRetriever
from densekit.modeling.losses import InfoNCELoss, MatryoshkaLoss
from densekit.training.run import build_loss, check_steps


def _args(tmp_path, **kwargs):
    return RetrievalTrainingArguments(output_dir=str(tmp_path / "out"), **kwargs)


def test_zero_optimizer_steps_fail_before_training(tmp_path):
    args = _args(tmp_path, per_device_train_batch_size=8)
    with pytest.raises(ConfigError, match="7 training examples make 0 full batches"):
        check_steps(args, 7, "train.jsonl")
    check_steps(args, 8, "train.jsonl")
    accumulating = _args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=3)
    with pytest.raises(ConfigError, match="fewer than one optimizer step"):
        check_steps(accumulating, 8, "train.jsonl")
    # --max_steps does not make batches out of nothing: 0 full batches run 0 steps
    with pytest.raises(ConfigError, match="1 training examples make 0 full batches"):
        check_steps(_args(tmp_path, per_device_train_batch_size=8, max_steps=2), 1, "t")


@pytest.mark.parametrize("flag", ["per_device_train_batch_size", "gc_p_chunk_size"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_sizes_are_refused_before_anything_is_written(tmp_path, flag, value):
    with pytest.raises(ConfigError, match=f"--{flag} must be positive"):
        _args(tmp_path, **{flag: value})
    assert not (tmp_path / "out").exists()


def test_matryoshka_dims_without_weights_wrap_the_chosen_loss(tiny_model):
    model_args = ModelArguments(
        model_name_or_path=tiny_model, use_matryoshka=True, matryoshka_dims="8,16", margin=0.2
    )
    encoder = BiEncoderRetriever.from_model_args(model_args, DataArguments())
    loss = build_loss(model_args, encoder)
    assert isinstance(loss, MatryoshkaLoss) and isinstance(loss.base, InfoNCELoss)
    assert loss.dims == [8, 16] and loss.weights == [1.0, 1.0] and loss.base.margin == 0.2


@pytest.mark.parametrize("sampling", ["grade", "uniform"])
def test_positive_sampling_flag_reaches_the_dataset(tmp_path, write_jsonl, sampling):
    """``--positive_sampling`` decides how the dataset draws graded positives."""
    from types import SimpleNamespace

    from densekit.data.formatting import TextFormat
    from densekit.training.run import build_dataset

    rows = [{"query": "q", "pos": ["a", "b"], "neg": ["n"], "pos_grades": [1, 2]}]
    data_args = DataArguments(
        dataset_path=str(write_jsonl(tmp_path / "t.jsonl", rows)), positive_sampling=sampling
    )
    dataset = build_dataset(data_args, SimpleNamespace(settings=TextFormat()), seed=1)
    assert dataset.graded is (sampling == "grade")
    with pytest.raises(ConfigError, match="grade or uniform"):
        DataArguments(dataset_path="x", positive_sampling="top")


def test_max_positives_flag_caps_the_all_positives_epoch(tmp_path, write_jsonl):
    """``--train_positives all --max_positives 2``: a query with 5 positives gives 2 examples."""
    from types import SimpleNamespace

    from densekit.data.formatting import TextFormat
    from densekit.training.run import build_dataset

    rows = [{"query": "q", "pos": list("abcde"), "neg": ["n"]}, {"query": "r", "pos": ["f"]}]
    path = str(write_jsonl(tmp_path / "t.jsonl", rows))
    formats = SimpleNamespace(settings=TextFormat())
    capped = DataArguments(dataset_path=path, train_positives="all", max_positives=2)
    assert len(build_dataset(capped, formats, seed=1)) == 2 + 1
    every = DataArguments(dataset_path=path, train_positives="all")
    assert len(build_dataset(every, formats, seed=1)) == 5 + 1
    with pytest.raises(ConfigError, match="max_positives"):
        DataArguments(dataset_path=path, max_positives=0)
