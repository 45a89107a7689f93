"""A LoRA checkpoint encodes without merging, and identically after ``densekit merge-lora``."""

from __future__ import annotations

import numpy as np

from densekit.commands import main as cli
from densekit.commands.train import main as train_main
from densekit.modeling.factory import BiEncoderRetriever
from densekit.retrieval.embeddings import load_embeddings


def test_lora_checkpoint_encodes_identically_before_and_after_merge(
    tiny_model, tiny_train, write_jsonl, tmp_path
):
    """Merged weights (W + BA folded once) against LoRA applied at run time (x W + x A B): other
    arithmetic, same torch kernels; unit vectors, so 1e-5 is relative to their norm of 1."""
    out = tmp_path / "lora"
    flags = [
        "--output_dir", str(out), "--model_name_or_path", tiny_model, "--dataset_path", tiny_train,
        "--lora", "--lora_r", "4", "--pooling", "mean", "--normalize", "--train_group_size", "2",
        "--per_device_train_batch_size", "4", "--max_steps", "3", "--learning_rate", "5e-2",
    ]  # fmt: skip
    assert train_main(flags) == 0
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    merged = tmp_path / "merged"
    assert cli(["merge-lora", "--lora_name_or_path", str(out), "--output_dir", str(merged)]) == 0
    assert (merged / "model.safetensors").is_file() and not (
        merged / "adapter_config.json"
    ).exists()

    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"_id": str(i), "text": f"document {i} on topic {i % 3}"} for i in range(9)],
    )
    vectors = {}
    for name, model in (("base", tiny_model), ("lora", out), ("merged", merged)):
        args = ["--model_name_or_path", str(model), "--dataset_path", str(corpus)]
        assert (
            cli(
                [
                    "encode",
                    *args,
                    "--encode_output_path",
                    str(tmp_path / f"{name}-vectors"),
                    "--pooling",
                    "mean",
                    "--normalize",
                ]
            )
            == 0
        )
        vectors[name] = load_embeddings(tmp_path / f"{name}-vectors")[1]
    np.testing.assert_allclose(vectors["merged"], vectors["lora"], atol=1e-5)
    assert not np.allclose(
        vectors["lora"], vectors["base"], atol=1e-4
    )  # training changed something


def test_merge_refuses_a_folder_without_adapters(tiny_model, tmp_path, capsys):
    assert (
        cli(["merge-lora", "--lora_name_or_path", tiny_model, "--output_dir", str(tmp_path / "m")])
        == 2
    )
    assert "no LoRA adapter" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_lora_training_continues_from_a_saved_adapter(tiny_model, tiny_train, tmp_path):
    import torch

    from densekit.arguments import DataArguments, ModelArguments
    from densekit.data.collator import tokenize
    from densekit.modeling.encoder import DenseEncoder, load_tokenizer

    out = tmp_path / "lora"
    flags = [
        "--output_dir", str(out), "--model_name_or_path", tiny_model, "--dataset_path", tiny_train,
        "--lora", "--pooling", "mean", "--train_group_size", "2",
        "--per_device_train_batch_size", "4", "--max_steps", "2", "--learning_rate", "5e-2",
    ]  # fmt: skip
    assert train_main(flags) == 0
    args = ModelArguments(
        model_name_or_path=tiny_model, pooling="mean", lora=True, lora_name_or_path=str(out)
    )
    resumed = BiEncoderRetriever.from_model_args(args, DataArguments()).eval()
    trainable = [n for n, p in resumed.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    saved = DenseEncoder.from_pretrained(str(out)).eval()
    batch = dict(tokenize(load_tokenizer(tiny_model), ["a query about topic 3"], 16))
    with torch.no_grad():
        torch.testing.assert_close(resumed.encode(batch, True), saved.encode(batch, True))


def test_losses_command_lists_the_registry(capsys):
    assert cli(["losses"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["distill", "infonce", "kl", "listwise", "matryoshka"]
