"""The model-folder registry: every kind read on a folder built here, the order they are tried
in, one line for a folder no kind reads, a kind registered by a test; and sentence-transformers
``Dense`` modules with an activation, against sentence-transformers itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from densekit.errors import ConfigError
from densekit.inference.encode import encode_texts
from densekit.modeling import folders
from densekit.modeling.config import EncoderConfig, resolve_config
from densekit.modeling.encoder import DenseEncoder, load_tokenizer, represent
from densekit.modeling.folders import KINDS, ModelFolder, read_folder

TEXTS = [
    "A short query.",
    "Protein folding kinetics depend on temperature and local structure. " * 4,
    "x",
]
ORDER = ["densekit", "tevatron-v1", "sentence-transformers", "lora-adapter", "hugging-face"]


def _st_folder(tiny_model: str, folder: Path, *head) -> str:
    """The tiny BERT as a sentence-transformers model: Transformer, mean Pooling, ``head``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    transformer = Transformer(tiny_model)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), "mean"), *head]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return str(folder)


def _dense(activation: torch.nn.Module | None = None):
    """A 32 -> 16 ST Dense; ``None`` leaves ST's default activation (Tanh)."""
    from sentence_transformers.models import Dense

    torch.manual_seed(5)
    if activation is None:
        return Dense(32, 16)
    return Dense(32, 16, activation_function=activation)


def _normalize():
    from sentence_transformers.models import Normalize

    return Normalize()


def _densekit_vectors(path: str, is_query: bool = False) -> np.ndarray:
    encoder = DenseEncoder.from_pretrained(path).eval()
    return encode_texts(encoder, load_tokenizer(path), TEXTS, is_query, progress=False)


def _st_vectors(path: str) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu").encode(TEXTS, convert_to_numpy=True)


def _assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Relative to the vectors' scale: CPUs differ in the last bits."""
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.fixture(scope="module")
def st_tanh(tiny_model, tmp_path_factory) -> str:
    """ST folder with Pooling + Dense (ST's default Tanh) + Normalize."""
    return _st_folder(tiny_model, tmp_path_factory.mktemp("st") / "tanh", _dense(), _normalize())


# ---------------------------------------------------------------------- each kind


def _densekit(tiny_model: str, folder: Path) -> str:
    encoder = DenseEncoder.from_pretrained(tiny_model, pooling="mean", add_pooler=True)
    encoder.save_pretrained(folder, tokenizer=load_tokenizer(tiny_model))
    return str(folder)


def _tevatron_v1(tiny_model: str, folder: Path) -> str:
    shutil.copytree(tiny_model, folder)
    linear = torch.nn.Linear(32, 8)
    torch.save({f"linear_q.{k}": v for k, v in linear.state_dict().items()}, folder / "pooler.pt")
    (folder / "pooler_config.json").write_text(json.dumps({"normalize": True}))
    return str(folder)


def _lora(tiny_model: str, folder: Path) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    model = get_peft_model(
        AutoModel.from_pretrained(tiny_model), LoraConfig(r=2, target_modules=["query"])
    )
    model.save_pretrained(folder)
    return str(folder)


def _untied_hf(tiny_model: str, folder: Path) -> str:
    for tower in ("query_model", "passage_model"):
        shutil.copytree(tiny_model, folder / tower)
    return str(folder)


def test_densekit_folder(tiny_model, tmp_path):
    read = read_folder(_densekit(tiny_model, tmp_path / "m"))
    assert read.kind == "densekit" and read.towers == (str(tmp_path / "m"),)
    assert read.settings["pooling"] == "mean" and read.projection is not None
    assert read.projection()["weight"].shape == (32, 32)


def test_tevatron_v1_folder_pins_the_pooler_sizes(tiny_model, tmp_path):
    read = read_folder(_tevatron_v1(tiny_model, tmp_path / "v1"))
    assert read.kind == "tevatron-v1"
    assert read.settings == {"pooling": "cls", "normalize": True}
    assert read.pinned == {"projection_in_dim": 32, "projection_out_dim": 8}
    config = resolve_config(read, projection_out_dim=4, pooling="mean")
    assert (config.projection_out_dim, config.pooling) == (8, "mean")  # weights > flags > folder


def test_sentence_transformers_folder(st_tanh):
    read = read_folder(st_tanh)
    assert read.kind == "sentence-transformers"
    assert read.settings["projection_activation"] == "Tanh" and read.settings["normalize"]
    assert read.projection()["weight"].shape == (16, 32)


def test_lora_adapter_folder(tiny_model, tmp_path):
    read = read_folder(_lora(tiny_model, tmp_path / "lora"))
    assert read.kind == "lora-adapter" and read.settings == {}
    assert read.adapter_base == tiny_model and read.tokenizer_path == tiny_model


def test_hugging_face_folder_hub_name_and_untied_towers(tiny_model, tmp_path):
    assert read_folder(tiny_model).kind == "hugging-face"
    hub = read_folder("org/model")
    assert (hub.kind, hub.towers, hub.settings) == ("hugging-face", ("org/model",), {})
    untied = read_folder(_untied_hf(tiny_model, tmp_path / "u"))
    assert untied.kind == "hugging-face" and untied.untied
    assert untied.pinned == {"untie_encoder": True}
    assert not DenseEncoder.from_pretrained(untied.path).tied


# ---------------------------------------------------------------------- the registry


def test_registry_order_most_specific_first(tmp_path):
    assert [kind.name for kind in KINDS] == ORDER
    markers = ["config.json", "adapter_config.json", "modules.json", "pooler.pt"]
    (tmp_path / "pooler_config.json").write_text("{}")
    firsts = []
    for marker in [*markers, "densekit_config.json"]:
        (tmp_path / marker).write_text("{}")  # each kind's marker beside the later kinds'
        firsts.append(next(kind.name for kind in KINDS if kind.matches(str(tmp_path))))
    assert firsts == ORDER[::-1]


def test_a_folder_no_kind_reads_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        read_folder(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path} is not a model folder: no densekit_config.json, pooler.pt, modules.json, "
        "adapter_config.json or config.json"
    )
    with pytest.raises(ConfigError, match="does not exist"):
        read_folder(tmp_path / "missing")


class ToyFolder:
    """A kind invented by the test: ``toy.json`` names the backbone and the pooling."""

    name = "toy"
    looks_for = "toy.json"

    def matches(self, path: str) -> bool:
        return (Path(path) / "toy.json").is_file()

    def read(self, path: str) -> ModelFolder:
        toy = json.loads((Path(path) / "toy.json").read_text())
        return ModelFolder(path, self.name, (toy["backbone"],), {"pooling": toy["pooling"]})


def test_a_registered_kind_is_used(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "KINDS", list(KINDS))
    folders.register(ToyFolder())
    assert [kind.name for kind in folders.KINDS] == [*ORDER[:-1], "toy", "hugging-face"]
    (tmp_path / "toy.json").write_text(json.dumps({"backbone": tiny_model, "pooling": "mean"}))
    encoder = DenseEncoder.from_pretrained(str(tmp_path))
    assert encoder.settings.pooling == "mean" and encoder.tied
    with pytest.raises(ConfigError, match=r"adapter_config.json, toy.json or config.json$"):
        read_folder(tmp_path / "toy.json")


# ---------------------------------------------------------------------- Dense activations


@pytest.mark.parametrize(
    "activation", [None, torch.nn.GELU(), torch.nn.Identity()], ids=["default", "gelu", "identity"]
)
def test_dense_activation_vectors_equal_sentence_transformers(tiny_model, tmp_path, activation):
    path = _st_folder(tiny_model, tmp_path / "st", _dense(activation), _normalize())
    ours = _densekit_vectors(path)
    assert ours.shape == (len(TEXTS), 16)
    _assert_close(ours, _st_vectors(path))


def test_dense_without_activation_key_is_st_default_tanh(tiny_model, tmp_path):
    path = _st_folder(tiny_model, tmp_path / "st", _dense(torch.nn.ReLU()))
    config_file = tmp_path / "st" / "2_Dense" / "config.json"
    config = json.loads(config_file.read_text())
    del config["activation_function"]  # what older ST versions and hand-made folders hold
    config_file.write_text(json.dumps(config))
    assert read_folder(path).settings["projection_activation"] == "Tanh"
    _assert_close(_densekit_vectors(path), _st_vectors(path))


def test_densekit_saves_a_dense_activation_sentence_transformers_loads(st_tanh, tmp_path):
    encoder = DenseEncoder.from_pretrained(st_tanh).eval()
    tokenizer = load_tokenizer(st_tanh)
    encoder.save_pretrained(tmp_path / "m", tokenizer=tokenizer)
    dense = json.loads((tmp_path / "m" / "2_Dense" / "config.json").read_text())
    assert dense["activation_function"] == "torch.nn.modules.activation.Tanh"
    assert (
        json.loads((tmp_path / "m" / "densekit_config.json").read_text())["projection_activation"]
        == "Tanh"
    )
    ours = encode_texts(encoder, tokenizer, TEXTS, False, progress=False)
    _assert_close(_st_vectors(str(tmp_path / "m")), ours)
    _assert_close(_densekit_vectors(str(tmp_path / "m")), ours)
    _assert_close(_st_vectors(st_tanh), ours)


def test_represent_applies_the_activation_for_every_backend():
    """The ONNX / OpenVINO runners call ``represent`` on their token states: it activates."""
    torch.manual_seed(0)
    hidden, mask = torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.long)
    linear = torch.nn.Linear(4, 5)
    settings = EncoderConfig(pooling="cls", projection_activation="Sigmoid")
    with torch.no_grad():
        expected = torch.sigmoid(linear(hidden[:, 0]))
        torch.testing.assert_close(represent(hidden, mask, settings, linear), expected)


def test_onnx_backend_applies_the_activation(st_tanh, tmp_path):
    pytest.importorskip("onnxruntime")
    from densekit.inference.backends import load_backend

    folder = str(shutil.copytree(st_tanh, tmp_path / "st"))
    encoder = DenseEncoder.from_pretrained(folder).eval()
    exported = load_backend(encoder, load_tokenizer(folder), folder, "onnx")
    ours = encode_texts(exported, load_tokenizer(folder), TEXTS, False, progress=False)
    _assert_close(ours, _st_vectors(folder))


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("torch.nn.modules.activation.PReLU", "has weights"),
        ("mypackage.activations.Swish", "torch.nn activations only"),
        ("torch.nn.modules.linear.Linear", "torch.nn activations only"),
    ],
)
def test_unsupported_dense_activation_is_one_line(st_tanh, tmp_path, path, reason):
    folder = tmp_path / "st"
    shutil.copytree(st_tanh, folder)
    config_file = folder / "2_Dense" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "activation_function": path}))
    with pytest.raises(ConfigError, match=reason) as caught:
        DenseEncoder.from_pretrained(str(folder))
    assert "\n" not in str(caught.value)
