"""Tevatron v1 model folders: pooler.pt is applied (checked against a hand computation), and
``--passage_field_separator sep_token`` means the tokenizer's [SEP]."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModel

from densekit.errors import ConfigError
from densekit.modeling.encoder import DenseEncoder, load_tokenizer


@pytest.fixture
def v1_folder(tiny_model, tmp_path):
    """The tiny BERT saved as Tevatron v1 saves a model trained with --add_pooler (tied)."""
    folder = tmp_path / "v1"
    shutil.copytree(tiny_model, folder)
    torch.manual_seed(3)
    linear = torch.nn.Linear(32, 16)
    # Tevatron's DensePooler: linear_p is linear_q when tied; its state dict holds both names.
    state = {f"{side}.{k}": v for side in ("linear_q", "linear_p") for k, v in linear.state_dict().items()}  # fmt: skip
    torch.save(state, folder / "pooler.pt")
    config = {"input_dim": 32, "output_dim": 16, "tied": True, "normalize": True}
    (folder / "pooler_config.json").write_text(json.dumps(config))
    return folder, linear


def test_pooler_pt_projects_the_cls_state(v1_folder):
    folder, linear = v1_folder
    encoder = DenseEncoder.from_pretrained(str(folder)).eval()
    assert encoder.pooler is not None and encoder.settings.pooling == "cls"
    tokenizer = load_tokenizer(str(folder))
    batch = dict(tokenizer(["a query about kinases"], return_tensors="pt"))
    backbone = AutoModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        cls = backbone(**batch).last_hidden_state[:, 0]
        expected = torch.nn.functional.normalize(cls @ linear.weight.T + linear.bias, dim=-1)
        got = encoder.encode(batch, is_query=True)
    assert got.shape == (1, 16)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)


def test_untied_pooler_is_refused(v1_folder):
    folder, _ = v1_folder
    state = torch.load(folder / "pooler.pt")
    state["linear_p.weight"] = state["linear_p.weight"] + 1
    torch.save(state, folder / "pooler.pt")
    with pytest.raises(ConfigError, match="untied"):
        DenseEncoder.from_pretrained(str(folder))


def test_sep_token_separator_is_the_tokenizers_token(tiny_model):
    encoder = DenseEncoder.from_pretrained(tiny_model, passage_field_separator="sep_token")
    assert encoder.settings.passage_field_separator == "[SEP]"
    assert encoder.format_passage("body", "Title") == "Title[SEP]body"
    literal = DenseEncoder.from_pretrained(tiny_model, passage_field_separator=" | ")
    assert literal.format_passage("body", "Title") == "Title | body"
