"""Puts the peer flags of :mod:`densekit.compat.flags` on densekit's parsers and applies them.

``add_to_parser`` gives a parser every peer flag of its command that it lacks (value ``None``
means "not given"); ``translate_train`` (train) and ``apply_encode``/``apply_search``/
``apply_mine`` map the given ones to densekit's settings, report ignored ones once and stop on
refused ones. A peer recognised from its distinctive flags gets its own defaults where they
differ from densekit's. Tevatron's pickled embeddings given to search are read here, by the
restricted reader of :mod:`densekit.compat.tevatron_pickle`.

This module imports nothing of densekit's argument layer: the encode commands hand it the
training parser whose flags Tevatron's encode driver also accepts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from densekit.compat.flags import (
    ENCODE,
    MINE,
    PEER_DEFAULTS,
    SEARCH,
    TRAIN,
    PeerFlag,
    check,
    flags_for,
    notice,
    peer_of,
)
from densekit.errors import ConfigError
from densekit.resources import looks_local

DEST = "peer__"
LOADERS = ("json", "jsonl", "csv", "parquet", "text")  # datasets loader names, not data
TRAIN_ONLY = "a training flag (Tevatron's encode parses them all); no effect on encoding"
PEER_GROUP = "peer flags (other toolkits' names, accepted so their command lines run)"


def string_to_bool(value: str | bool) -> bool:
    """``True``/``False`` as transformers' HfArgumentParser reads them (yes/no, t/f, 1/0)."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"Truthy value expected: got {value} but expected one of "
                                     "yes/no, true/false, t/f, y/n, 1/0 (case insensitive).")  # fmt: skip


def peer_help(flag: PeerFlag) -> str:
    """One ``--help`` line for a peer flag: whose name it is and what densekit does with it."""
    text = f"{', '.join(flag.peers)}: {flag.describe()}".replace("`", "")
    return text.replace("%", "%%")


_KINDS: dict[str, dict[str, Any]] = {
    "bool": {"nargs": "?", "const": True, "type": string_to_bool},
    "list": {"nargs": "+"},
    "int": {"type": int},
    "float": {"type": float},
    "str": {},
}


def add_to_parser(
    parser: argparse.ArgumentParser,
    command: str,
    train_parser: argparse.ArgumentParser | None = None,
) -> None:
    """Add the peer flags of ``command`` that ``parser`` lacks, in a group of ``--help`` whose
    lines say whose name each is and what densekit does with it.

    ``train_parser`` (encode only): ``densekit train``'s parser, whose flags Tevatron's encode
    driver also parses; they are accepted, reported unused and hidden from ``--help`` (the
    parser's epilog says so)."""
    known = set(parser._option_string_actions)
    group = None
    for flag in flags_for(command):
        option = f"--{flag.name}"
        if option in known:  # densekit's own flag or alias (or a row for another parser)
            continue
        known.add(option)
        group = group or parser.add_argument_group(PEER_GROUP)
        group.add_argument(
            option,
            dest=DEST + flag.name,
            default=None,
            help=peer_help(flag),
            metavar="VALUE" if flag.kind == "list" else flag.kind.upper(),
            **_KINDS[flag.kind],
        )
    if command == ENCODE and train_parser is not None:
        _add_train_flags(parser, known, train_parser)


def _add_train_flags(
    parser: argparse.ArgumentParser, known: set[str], train_parser: argparse.ArgumentParser
) -> None:
    """Tevatron's encode driver parses every training flag: accept them, report them unused."""
    for action in train_parser._actions:
        options = [o for o in action.option_strings if o not in known and o.startswith("--")]
        if not options or action.dest == "help":
            continue
        known.update(options)
        kwargs: dict[str, Any] = {"nargs": action.nargs, "const": action.const}
        if action.nargs == 0:
            kwargs = {"action": "store_const", "const": True}
        parser.add_argument(
            *options, dest=f"{DEST}train__{action.dest}", default=None, help=argparse.SUPPRESS,
            **kwargs,
        )  # fmt: skip


def used_flags(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[set[str], set[str]]:
    """(flag names written in ``argv``, destinations they set), to tell given from default."""
    used, dests = set(), set()
    for word in argv:
        if not word.startswith("--"):
            continue
        option = word.split("=", 1)[0]
        action = parser._option_string_actions.get(option)
        if action is not None:
            used.add(option[2:].replace("-", "_"))
            dests.add(action.dest)
    return used, dests


def _v1_hub_name(name: str) -> bool:
    """Tevatron v1's ``org/name/split`` (e.g. ``Tevatron/wikipedia-nq/test``), not a path."""
    return name.count("/") == 2 and not looks_local(name.replace("/", "", 1))


def hub_spec(name: str, split: str | None = None, config: str | None = None) -> str:
    """``name[:config]:split`` for the readers; Tevatron v1 wrote the split as ``org/name/split``."""
    if _v1_hub_name(name) and split is None:
        name, split = name.rsplit("/", 1)
    if config:
        return f"{name}:{config}:{split or 'train'}"
    return f"{name}:{split}" if split else name


def _hub_data(path: str | None, split: str | None, config: str | None, what: str) -> str | None:
    """Apply a split/config to a hub name; a local path has neither (reported once)."""
    if path is None or path in LOADERS:
        return path
    if Path(str(path)).exists() or (looks_local(str(path)) and not _v1_hub_name(str(path))):
        for flag, value in ((f"{what}_split", split), (f"{what}_config", config)):
            if value is not None:
                notice(f"--{flag} {value} is ignored: {path} is a local path")
        return path
    return hub_spec(str(path), split, config)


# ---------------------------------------------------------------------------- train


def _set(values: dict, given: set[str], flag: PeerFlag, target: str, new: Any) -> None:
    if target in given and values.get(target) != new:
        raise ConfigError(f"--{flag.name} disagrees with --{target} {values.get(target)}")
    values[target] = new
    given.add(target)


def instruction_prefix(flag: str, fmt: str, instruction: str | None) -> str | None:
    """FlagEmbedding formats ``fmt.format(instruction, text)``: as a prefix when text is last."""
    if instruction is None:  # FlagEmbedding applies the format only with an instruction
        return None
    fmt = fmt.replace("\\n", "\n")
    if fmt.count("{}") != 2 or not fmt.endswith("{}"):
        raise ConfigError(f"--{flag} {fmt!r}: expected two {{}} with the text last")
    return fmt.format(instruction, "")


def _map_train(flag: PeerFlag, value: Any, values: dict, given: set[str]) -> None:
    name, target = flag.name, flag.target
    if name == "knowledge_distillation":
        if value:
            _set(values, given, flag, "loss", "distill")
    elif name == "kd_loss_type":
        if value not in ("kl_div", "m3_kd_loss"):
            raise ConfigError(f"--kd_loss_type {value}: expected kl_div or m3_kd_loss")
        if not values.get(DEST + "knowledge_distillation") and values.get("loss") != "distill":
            notice(f"--kd_loss_type {value} is ignored: it needs --knowledge_distillation True")
    elif name in ("query_instruction_format", "passage_instruction_format"):
        values[target] = instruction_prefix(name, value, values.get(target))
    elif name in ("use_lora", "adafactor"):
        if value:
            _set(values, given, flag, target, "lora" if name == "use_lora" else "adafactor")
    elif name in ("mrl_dims", "target_modules"):
        _set(values, given, flag, target, ",".join(map(str, value)))
    elif name == "train_data":
        _set(values, given, flag, target, value[0] if len(value) == 1 else value)
    elif name in ("peft_model_path", "from_peft"):
        if value:
            _set(values, given, flag, target, value)
    elif target not in ("dataset_split", "dataset_config", "corpus_split", "corpus_config"):
        _set(values, given, flag, target, value)


def translate_train(values: dict, used: set[str], given: set[str]) -> dict:
    """Map the peer flags in ``values`` (parsed by a parser given :func:`add_to_parser`)."""
    values = dict(values)
    hub = {k: values.pop(DEST + k, None) for k in ("dataset_split", "dataset_config")}
    hub.update({k: values.pop(DEST + k, None) for k in ("corpus_split", "corpus_config")})
    for flag in flags_for(TRAIN):
        if flag.on_parser:
            if flag.action != "map" and flag.name in given:
                check(flag, values.get(flag.name))
            continue
        value = values.get(DEST + flag.name)
        if value is None:
            continue
        if flag.action == "map":
            _map_train(flag, value, values, given)
        else:
            check(flag, value)
    for key in [k for k in values if k.startswith(DEST)]:
        del values[key]
    if values.get("dataset_name") in LOADERS:
        values["dataset_name"] = None  # Tevatron v2's loader name: the data is --dataset_path
    key = "dataset_path" if values.get("dataset_path") else "dataset_name"
    if isinstance(values.get(key), str):
        values[key] = _hub_data(values[key], hub["dataset_split"], hub["dataset_config"], "dataset")
    values["corpus_path"] = _hub_data(
        values.get("corpus_path"), hub["corpus_split"], hub["corpus_config"], "corpus"
    )
    _peer_defaults(values, used, given)
    return values


def _peer_defaults(values: dict, used: set[str], given: set[str]) -> None:
    peer = peer_of(used)
    if peer is None:
        return
    skip = set(given) | ({"warmup_ratio"} if "warmup_steps" in given else set())
    applied = {k: v for k, v in PEER_DEFAULTS[peer].items() if k not in skip}
    if not applied:
        return
    values.update(applied)
    shown = ", ".join(f"{k}={v}" for k, v in applied.items())
    notice(f"{peer} command line recognised: its defaults apply where not given ({shown})")


# ---------------------------------------------------------------------------- encode, search


def _apply_given(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Report ignored/refused flags; return the mapped ones by name."""
    mapped: dict[str, Any] = {}
    for flag in flags_for(command):
        value = getattr(args, DEST + flag.name, None)
        if value is None:
            continue
        if flag.action == "map":
            mapped[flag.name] = value
        else:
            check(flag, value)
    for key, value in vars(args).items():
        if key.startswith(DEST + "train__") and value is not None:
            notice(f"--{key[len(DEST) + 7 :]} {value} is ignored: {TRAIN_ONLY}")
    return mapped


def apply_encode(args: argparse.Namespace) -> None:
    """Map Tevatron's encode flags onto ``densekit encode``'s and check what is required."""
    mapped = _apply_given(args, ENCODE)
    if "encode_in_path" in mapped:
        paths = mapped["encode_in_path"]
        if len(paths) > 1:
            raise ConfigError(
                f"--encode_in_path: {len(paths)} files given; give one file or their folder"
            )
        args.dataset_path = args.dataset_path or paths[0]
    name = mapped.get("dataset_name")
    if name is not None and args.dataset_path is None and name not in LOADERS:
        args.dataset_path = name
    if isinstance(args.dataset_path, str):
        args.dataset_path = _hub_data(
            args.dataset_path, mapped.get("dataset_split"), mapped.get("dataset_config"), "dataset"
        )
    args.encode_output_path = args.encode_output_path or mapped.get("encoded_save_path")
    args.encode_is_query = args.encode_is_query or bool(mapped.get("encode_is_qry"))
    args.tokenizer_name = mapped.get("tokenizer_name")
    args.lora_name_or_path = mapped.get("lora_name_or_path")
    for flag, attr in (
        ("--dataset_path", "dataset_path"),
        ("--encode_output_path", "encode_output_path"),
    ):
        if not getattr(args, attr):
            raise ConfigError(f"{flag} is required")


def apply_search(args: argparse.Namespace) -> None:
    """Map Tevatron's search flags onto ``densekit search``'s (its pickles are read as they are,
    see :func:`load_reps`)."""
    mapped = _apply_given(args, SEARCH)
    if mapped.get("save_text"):
        args.ranking_format = "tevatron"
    if mapped.get("shard_search"):
        args.shard_by_shard = True
    if mapped.get("quiet"):
        os.environ["TQDM_DISABLE"] = "1"
    if args.batch_size is not None and args.batch_size <= 0:  # Tevatron: -1 = all at once
        args.batch_size = 2**31 - 1


def apply_mine(args: argparse.Namespace) -> None:
    """Map FlagEmbedding ``hn_mine.py``'s flags (v1 and current) onto ``densekit mine``'s."""
    mapped = _apply_given(args, MINE)
    for flag in flags_for(MINE):
        if flag.on_parser and flag.action != "map" and getattr(args, flag.name) is not None:
            check(flag, getattr(args, flag.name))
    name = mapped.get("model_name_or_path")
    if name is not None:
        if args.embedder_name_or_path not in (None, name):
            raise ConfigError(
                f"--model_name_or_path disagrees with --embedder_name_or_path "
                f"{args.embedder_name_or_path}"
            )
        args.embedder_name_or_path = name
