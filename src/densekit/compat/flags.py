"""The peers' flags: what every flag of Tevatron (v1, v2), FlagEmbedding, PaddleNLP and Trove
train/encode/search drivers (and FlagEmbedding's ``hn_mine.py``) means in densekit.

This table is the one source of the flag mapping: every command's parser gets its peer flags
from it (:func:`densekit.compat.apply.add_to_parser`), and the README table is generated from it.
Each row of :data:`TABLE` is one flag of one or more commands: it maps to densekit's own
(``map``, converted where needed by :mod:`densekit.compat.apply`), or has no meaning here and is
accepted and reported once as ignored with the reason (``ignore``), or cannot be honoured and
stops with one line (``refuse``). The last column lists values densekit already behaves as (no
notice), or a note for the README. ``@`` marks a flag densekit's parser has itself (an alias or
a field of the argument classes), listed for the README table, which is generated from here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from densekit.errors import ConfigError

TRAIN, ENCODE, SEARCH, MINE = "train", "encode", "search", "mine"
PEERS = {
    "t1": "Tevatron v1",
    "t2": "Tevatron v2",
    "fe": "FlagEmbedding",
    "pd": "PaddleNLP",
    "tr": "Trove",
    "hf4": "transformers 4",
}
REASONS = {
    "CACHE": "densekit reads data into the datasets cache (set HF_DATASETS_CACHE to move it)",
    "TEXT_ONLY": "densekit encodes text only (no images, audio or video)",
    "SAMPLING": "densekit samples the positive and the negatives per epoch (seeded)",
    "ENCODE_ONLY": "an encoding flag: run densekit encode",
    "HF4_GONE": "removed from transformers 5; no effect on training",
}

# name | peers | commands | kind | action | target or reason | honoured values or note
TABLE = """\
train_n_passages | t1 | train | int | map@ | train_group_size
group_size | tr | train | int | map@ | train_group_size
q_max_len | t1 | train,encode | int | map@ | query_max_len
p_max_len | t1 | train,encode | int | map@ | passage_max_len
negatives_x_device | t1 | train | bool | map@ | negatives_cross_device
sentence_pooling_method | fe,pd | train,encode | str | map@ | pooling
normalized | pd | train,encode | bool | map@ | normalize
normlized | fe | train | bool | map | normalize | `--normalize` (FlagEmbedding v1's spelling)
train_dir | t1 | train | str | map@ | dataset_path
query_instruction_for_retrieval | fe,pd | train,encode | str | map@ | query_prefix
passage_instruction_for_retrieval | fe,pd | train,encode | str | map@ | passage_prefix
recompute | pd | train | bool | map@ | gradient_checkpointing
encode_num_shard | t1 | encode | int | map@ | num_shards
encode_shard_index | t1 | encode | int | map@ | shard_index
dataset_number_of_shards | t2 | encode | int | map@ | num_shards
dataset_shard_index | t2 | encode | int | map@ | shard_index
per_device_eval_batch_size | t1,t2 | encode | int | map@ | batch_size
use_peft | tr | train | bool | map@ | fine_tune_type | True: `--fine_tune_type lora`
encoder_class | tr | train | str | refuse@ | densekit train builds the default encoder (from Python, a subclass of DefaultEncoder is chosen by its name or _alias) | default,none
trust_remote_code | fe,tr | train,encode | bool | ignore@ | densekit runs no model code: a model that needs none loads as usual, one that needs it is refused | False
train_data | fe,pd | train | list | map | dataset_path | `--dataset_path`: one or more files or folders (a folder: its json/jsonl files)
dataset_name | t1,t2 | encode | str | map | dataset_path | a hub name (v1: name/split); a loader name (json) means `--dataset_path` holds the data
encode_in_path | t1 | encode | list | map | dataset_path | `--dataset_path` (one file or folder; pre-tokenised records are read too)
encoded_save_path | t1 | encode | str | map | encode_output_path
encode_is_qry | t1 | encode | bool | map | encode_is_query
dataset_split | t2 | train,encode | str | map | dataset_split | split of a hub `--dataset_name`
dataset_config | t2 | train,encode | str | map | dataset_config | config of a hub `--dataset_name`
corpus_name | t2 | train | str | map | corpus_path
corpus_split | t2 | train | str | map | corpus_split | split of a hub `--corpus_path`
corpus_config | t2 | train | str | map | corpus_config | config of a hub `--corpus_path`
num_proc | t2 | train | int | map | dataset_proc_num
num_proc | t2 | encode | int | ignore | encode reads its input in one pass
dataset_proc_num | t1 | encode | int | ignore | encode reads its input in one pass
train_yaml | t2 | train | str | refuse | list the training files with --dataset_path instead
dataset_cache_dir | t2 | train,encode | str | ignore | CACHE
data_cache_dir | t1 | train,encode | str | ignore | CACHE
cache_path | fe | train | str | ignore | CACHE
assets_path | t2 | train,encode | str | ignore | TEXT_ONLY
encode_text | t2 | train,encode | bool | ignore | TEXT_ONLY | True
encode_image | t2 | train,encode | bool | ignore | TEXT_ONLY
encode_audio | t2 | train,encode | bool | ignore | TEXT_ONLY
encode_video | t2 | train,encode | bool | ignore | TEXT_ONLY
positive_passage_no_shuffle | t1,t2,tr | train | bool | ignore | SAMPLING | False
negative_passage_no_shuffle | t1,t2,tr | train | bool | ignore | SAMPLING | False
add_special_tokens | t2 | train,encode | bool | refuse | densekit always adds the special tokens | True
knowledge_distillation | fe | train | bool | map | loss | True: `--loss distill` on `pos_scores`/`neg_scores`
query_instruction_format | fe | train | str | map | query_prefix | `--query_prefix` = format(instruction, '') (the query must come last)
passage_instruction_format | fe | train | str | map | passage_prefix | `--passage_prefix` = format(instruction, '') (the passage must come last)
shuffle_ratio | fe | train | float | ignore | text-shuffling augmentation is not implemented | 0,0.0
same_dataset_within_batch | fe | train | bool | ignore | batches mix all files, as FlagEmbedding's default does (its per-folder rules need this mode) | False
small_threshold | fe | train | int | ignore | only with --same_dataset_within_batch | 0
drop_threshold | fe | train | int | ignore | only with --same_dataset_within_batch | 0
passage_selection_strategy | tr | train | str | ignore@ | it selects passages of a MultiLevelDataset (Python API), not of jsonl training data
output_dir | t1,t2 | encode | str | ignore | Tevatron's trainer folder; vectors go to --encode_output_path
do_encode | t1 | train | bool | ignore | ENCODE_ONLY | False
encode_is_query | t2 | train | bool | ignore | ENCODE_ONLY | False
encode_output_path | t2 | train | str | ignore | ENCODE_ONLY
encoded_save_path | t1 | train | str | ignore | ENCODE_ONLY
encode_is_qry | t1 | train | bool | ignore | ENCODE_ONLY | False
encode_in_path | t1 | train | list | ignore | ENCODE_ONLY
encode_num_shard | t1 | train | int | ignore | ENCODE_ONLY | 1
encode_shard_index | t1 | train | int | ignore | ENCODE_ONLY | 0
dataset_number_of_shards | t2 | train | int | ignore | ENCODE_ONLY | 1
dataset_shard_index | t2 | train | int | ignore | ENCODE_ONLY | 0
save_text | t1,t2 | search | bool | map | ranking_format | `--ranking_format tevatron` (qid, docid, score; without it a TREC run)
quiet | t1,t2 | search | bool | map | quiet | no progress bars
shard_search | t2 | search | bool | map | shard_by_shard
gpu_float32 | t2 | search | bool | ignore | densekit searches in float32 on the CPU
cpu_search | t2 | search | bool | ignore | densekit searches on the CPU already
config_name | t1,t2,fe | train,encode | str | ignore | the config.json stored with the model is used
tokenizer_name | t1,t2,fe | encode | str | map | tokenizer_name | the tokenizer folder (default: the model's)
model_revision | t2,tr | train,encode | str | ignore | models are local folders; there is no revision
token | fe | train | str | ignore | models are local folders; no hub token is used
use_fast_tokenizer | fe | train | bool | ignore | densekit uses the fast tokenizer | True
use_slow_tokenizer | fe | train | bool | ignore | densekit uses the fast tokenizer | False
dtype | t1,t2 | train,encode | str | ignore | JAX weight dtype; use --precision or --bf16
torch_dtype | tr | train | str | ignore | weights load in float32; use --precision or --bf16 | auto,float32
is_bidirectional | t2 | train,encode | bool | ignore | Tevatron's SPLADE driver only | False
pooling_strategy | t2 | train,encode | str | ignore | Tevatron's SPLADE driver only
normalize_embeddings | fe | train | bool | map | normalize
fix_position_embedding | fe | train | bool | ignore | position embeddings train with the rest | False
sub_batch_size | fe | train | int | ignore | chunking the forward does not change the gradients (--grad_cache saves memory)
kd_loss_type | fe | train | str | map | loss | with --knowledge_distillation: `--loss distill` (m3_kd_loss is KL plus a constant)
use_mrl | fe | train | bool | map | use_matryoshka
mrl_dims | fe | train | list | map | matryoshka_dims | `--matryoshka_dims`
temperature_learnable | tr | train | bool | ignore@ | the temperature stays fixed (Trove does not save a learned one either) | False
trove_logging_mode | tr | train | str | ignore@ | densekit logs on the first process only
colbert_dim | fe | train | int | ignore | dense vectors only (BGE-M3 multi-vector) | -1
unified_finetuning | fe | train | bool | ignore | dense vectors only (BGE-M3) | False
use_self_distill | fe | train | bool | ignore | dense vectors only (BGE-M3) | False
self_distill_start_step | fe | train | int | ignore | dense vectors only (BGE-M3) | -1
fix_encoder | fe | train | bool | ignore | BGE-M3 heads only; the encoder trains | False
example_query_max_len | fe | train | int | ignore | in-context examples are not supported
example_passage_max_len | fe | train | int | ignore | in-context examples are not supported
retrieval_use_examples | fe | train | bool | ignore | in-context examples are not supported | False
icl_suffix_str | fe | train | str | ignore | in-context examples are not supported
additional_special_tokens | fe | train | list | ignore | no tokens are added: such markers stay plain text
use_lora | fe | train | bool | map | fine_tune_type | True: `--fine_tune_type lora`
lora_rank | fe | train | int | map | lora_r
target_modules | fe | train | list | map | lora_target_modules | `--lora_target_modules`
peft_model_path | fe | train | str | map | lora_name_or_path
from_peft | fe | train | str | map | lora_name_or_path
raw_peft | fe | train | str | ignore | continue from an adapter with --lora_name_or_path
use_flash_attn | fe | train | bool | map | use_flash_attention
modules_to_save | fe | train | list | ignore | only the LoRA adapters train
lora_modules_to_save | tr | train | list | ignore | only the LoRA adapters train
lora_task_type | tr | train | str | ignore | densekit's adapters are FEATURE_EXTRACTION | FEATURE_EXTRACTION
use_rslora | tr | train | bool | refuse | rank-stabilised LoRA is not implemented (nor in Trove) | False
save_merged_lora_model | fe | train | bool | ignore | merge afterwards with densekit merge-lora | False
only_merge_lora_model | fe | train | bool | ignore | merge with densekit merge-lora | False
load_in_8bit | tr | train | bool | refuse | 8-bit loading is not supported; --load_in_4bit (GPU) is | False
bnb_4bit_quant_type | tr | train | str | ignore | 4-bit loading uses nf4 | nf4
use_bnb_nested_quant | tr | train | bool | ignore | 4-bit loading is not nested | False
lora_name_or_path | t2 | encode | str | map | lora_name_or_path | the adapter, loaded over `--model_name_or_path`
lora | t2 | encode | bool | ignore | the adapter folder (--lora_name_or_path) says it is LoRA
padding_side | t2 | encode | str | ignore | densekit's vectors do not depend on the padding side
attn_implementation | t2,tr | encode | str | ignore | the attention kernel changes speed, not the vectors beyond float rounding
pad_to_multiple_of | t2 | encode | int | ignore | padding does not change the vectors
cache_dir | t1,t2 | encode | str | ignore | models are local folders
dataloader_num_workers | t1,t2 | encode | int | ignore | tokenisation runs in the main process
warmup_ratio | hf4,t1,t2,fe,tr | train | float | map@ | warmup_steps | `--warmup_steps` as a fraction of the steps (transformers 5's form)
evaluation_strategy | hf4 | train | str | map | eval_strategy
per_gpu_train_batch_size | hf4 | train | int | map | per_device_train_batch_size
per_gpu_eval_batch_size | hf4 | train | int | map | per_device_eval_batch_size
no_cuda | hf4 | train | bool | map | use_cpu
adafactor | hf4 | train | bool | map | optim | True: `--optim adafactor`
logging_dir | hf4 | train | str | ignore | transformers 5 logs under --output_dir
save_safetensors | hf4 | train | bool | ignore | densekit always saves safetensors | True
group_by_length | hf4 | train | bool | ignore | batches are not grouped by length | False
use_mps_device | hf4 | train | bool | ignore | HF4_GONE
jit_mode_eval | hf4 | train | bool | ignore | HF4_GONE
use_ipex | hf4 | train | bool | ignore | HF4_GONE
fp16_opt_level | hf4 | train | str | ignore | HF4_GONE
half_precision_backend | hf4 | train | str | ignore | HF4_GONE
fp16_backend | hf4 | train | str | ignore | HF4_GONE
tpu_num_cores | hf4 | train | int | ignore | HF4_GONE
tpu_metrics_debug | hf4 | train | bool | ignore | HF4_GONE
past_index | hf4 | train | int | ignore | HF4_GONE
fsdp_min_num_params | hf4 | train | int | ignore | HF4_GONE
fsdp_transformer_layer_cls_to_wrap | hf4 | train | str | ignore | HF4_GONE
use_legacy_prediction_loop | hf4 | train | bool | ignore | HF4_GONE
include_inputs_for_metrics | hf4 | train | bool | ignore | HF4_GONE
push_to_hub_model_id | hf4 | train | str | ignore | HF4_GONE
push_to_hub_organization | hf4 | train | str | ignore | HF4_GONE
push_to_hub_token | hf4 | train | str | ignore | HF4_GONE
mp_parameters | hf4 | train | str | ignore | HF4_GONE
torchdynamo | hf4 | train | str | ignore | HF4_GONE
ray_scope | hf4 | train | str | ignore | HF4_GONE
dispatch_batches | hf4 | train | bool | ignore | HF4_GONE
split_batches | hf4 | train | bool | ignore | HF4_GONE
include_tokens_per_second | hf4 | train | bool | ignore | HF4_GONE
model_name_or_path | fe | mine | str | map | embedder_name_or_path | `--embedder_name_or_path` (hn_mine.py v1's name)
embedder_model_class | fe | mine | str | refuse@ | in-context examples (decoder-only-icl) are not supported | encoder-only-base,encoder-only-m3,decoder-only-base
examples_for_task | fe | mine | str | refuse@ | in-context examples (decoder-only-icl) are not supported
use_gpu_for_searching | fe | mine | bool | ignore | densekit searches exactly on the CPU | False
search_batch_size | fe | mine | int | ignore | FAISS searches all queries at once here
use_fp16 | fe | mine | bool | ignore | vectors are computed in float32 | False
devices | fe | mine | list | ignore | one device, chosen automatically
cache_dir | fe | mine | str | ignore | models are local folders
"""


@dataclass(frozen=True)
class PeerFlag:
    """One peer flag of one or more commands and what it means here."""

    name: str
    peers: tuple[str, ...]
    commands: tuple[str, ...]
    kind: str  # str | int | float | bool | list (space-separated values)
    action: str  # map | ignore | refuse
    target: str  # densekit destination (map) or the reason (ignore, refuse)
    honoured: tuple = ()  # values densekit already behaves as: no notice
    note: str = ""  # how a mapped value is used, when more than a rename
    on_parser: bool = False  # densekit's parser has it itself (listed for the README)

    def describe(self) -> str:
        """The README cell: what densekit does with the flag."""
        if self.action == "map":
            return self.note or f"`--{self.target}`"
        values = ", ".join(map(str, self.honoured))
        if self.action == "refuse":
            return f"refused{f' unless {values}' if values else ''}: {self.target}"
        return f"ignored: {self.target}{f' (no notice when {values})' if values else ''}"


def _value(text: str, kind: str) -> Any:
    if kind == "bool":
        return text == "True"
    return {"int": int, "float": float}.get(kind, str)(text)


def _parse(table: str) -> tuple[PeerFlag, ...]:
    flags = []
    for line in table.splitlines():
        name, peers, commands, kind, action, target, *rest = (c.strip() for c in line.split("|"))
        extra = rest[0] if rest else ""
        mapped = action.startswith("map")
        flags.append(
            PeerFlag(
                name=name,
                peers=tuple(PEERS[p] for p in peers.split(",")),
                commands=tuple(commands.split(",")),
                kind=kind,
                action=action.rstrip("@"),
                target=REASONS.get(target, target),
                honoured=()
                if mapped or not extra
                else tuple(_value(v, kind) for v in extra.split(",")),
                note=extra if mapped else "",
                on_parser=action.endswith("@"),
            )
        )
    return tuple(flags)


FLAGS = _parse(TABLE)

# Flags that identify a peer's command line (names several peers share do not).
SIGNATURES = {
    "Tevatron v1": {"train_dir", "train_n_passages", "q_max_len", "p_max_len", "negatives_x_device",
                    "dataset_proc_num", "do_encode", "data_cache_dir"},
    "FlagEmbedding": {"normalize_embeddings", "normlized", "kd_loss_type", "knowledge_distillation",
                      "cache_path", "query_instruction_format", "passage_instruction_format",
                      "same_dataset_within_batch", "sub_batch_size", "use_mrl", "mrl_dims",
                      "use_lora", "lora_rank", "target_modules", "shuffle_ratio",
                      "small_threshold", "drop_threshold", "fix_position_embedding",
                      "peft_model_path", "from_peft", "additional_special_tokens",
                      "use_flash_attn", "save_merged_lora_model"},
    "PaddleNLP": {"fine_tune_type", "use_matryoshka", "matryoshka_dims", "matryoshka_loss_weights",
                  "recompute", "use_inbatch_neg", "use_flash_attention"},
    "Trove": {"use_peft", "encoder_class", "trove_logging_mode", "temperature_learnable",
              "passage_selection_strategy", "group_size", "torch_dtype", "lora_task_type"},
}  # fmt: skip

# Where a peer's default differs from densekit's, its command line gets the peer's.
PEER_DEFAULTS: dict[str, dict[str, Any]] = {
    "Tevatron v1": {"pooling": "cls", "normalize": False, "temperature": 1.0, "warmup_ratio": 0.1},
    "FlagEmbedding": {"pooling": "cls", "normalize": True, "temperature": 0.02, "lora_r": 64,
                      "lora_alpha": 16},
    "PaddleNLP": {"temperature": 0.02, "margin": 0.2},
    "Trove": {"temperature": 1.0, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05},
}  # fmt: skip


def flags_for(command: str) -> list[PeerFlag]:
    """The peer flags of one command."""
    return [f for f in FLAGS if command in f.commands]


def find(name: str, command: str) -> PeerFlag:
    return next(f for f in flags_for(command) if f.name == name)


def peer_of(used: set[str]) -> str | None:
    """The one peer whose distinctive flags appear in ``used`` (None if none or several)."""
    found = [peer for peer, names in SIGNATURES.items() if names & used]
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------------------- notices

_SHOWN: set[str] = set()


def notice(message: str) -> None:
    """Print ``message`` once per process, on the first rank only."""
    if message in _SHOWN or int(os.environ.get("RANK", "0")) != 0:
        return
    _SHOWN.add(message)
    print(f"densekit: note: {message}", file=sys.stderr)


def check(flag: PeerFlag, value: Any) -> None:
    """Report an ignored flag once, or stop on a refused one, unless the value is honoured."""
    if value in flag.honoured:
        return
    if flag.action == "refuse":
        raise ConfigError(f"--{flag.name} {value}: {flag.target}")
    notice(f"--{flag.name} {value} is ignored: {flag.target}")


def markdown_table() -> str:
    """The README table of peer flags (one row per flag and command set)."""
    rows = ["| peer flag | toolkit | command | in densekit |", "|---|---|---|---|"]
    for flag in sorted(FLAGS, key=lambda f: (f.name, f.commands)):
        peers, commands = ", ".join(flag.peers), ", ".join(flag.commands)
        rows.append(f"| `--{flag.name}` | {peers} | {commands} | {flag.describe()} |")
    return "\n".join(rows)
