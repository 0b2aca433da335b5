"""`--help` for every command, generated from the argument dataclasses and the run schema, so it cannot drift from
the code: each key with its type, its default and the comment written beside it."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import tokenize
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from genlab.commands import args as command_args
from genlab.config import CONFIG_GROUPS, available, project_root
from genlab.config.schema import Config
from genlab.diffusion import SAMPLERS


# Fields whose choices are a registry's, not a type's: a sampler registered at run time is listed too.
REGISTRY_CHOICES: dict[str, Any] = {"sampler": SAMPLERS, "sampler.name": SAMPLERS, "eval.sampler": SAMPLERS}


def field_comments(cls: type) -> dict[str, str]:
    """The comment of each field in a dataclass's source (and its dataclass bases'): at the end of its line, else the
    comment lines above it."""
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            out.update({k: v for k, v in _own_comments(base).items() if v or k not in out})
    return out


def _own_comments(cls: type) -> dict[str, str]:
    source = inspect.getsource(cls)
    trailing: dict[int, str] = {}
    standalone: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            (standalone if tok.line.strip().startswith("#") else trailing)[tok.start[0]] = text
    out: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above, line = [], node.lineno - 1
            while line in standalone:
                above.insert(0, standalone[line])
                line -= 1
            out[node.target.id] = trailing.get(node.lineno) or " ".join(above)
    return out


def type_name(tp: Any) -> str:
    """A short type for help text: int, float, str, bool, list, a choice a|b|c, optional marked with `?`."""
    if isinstance(tp, str):
        return tp.replace("Optional[", "").rstrip("]")
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin is typing.Union and len(args) == 1:
        return type_name(args[0]) + "?"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "|".join(str(m.value) for m in tp)
    if origin in (list, typing.List):
        return "list"
    if origin in (dict, typing.Dict):
        return "mapping"
    return getattr(tp, "__name__", str(tp)).replace("Any", "value")


def default_text(field: dataclasses.Field) -> str:
    if field.default is MISSING or field.default == MISSING:
        return "(required)"
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = field.default_factory()  # type: ignore[misc]
    else:
        return "(required)"
    if isinstance(value, Enum):
        return str(value.value)
    if dataclasses.is_dataclass(value):
        return ""
    return "null" if value is None else str(value).replace("True", "true").replace("False", "false")


def describe_fields(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, comment) of every field, nested dataclasses flattened into dotted keys."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    rows = []
    for field in dataclasses.fields(cls):
        tp = hints.get(field.name, field.type)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            rows += describe_fields(tp, f"{prefix}{field.name}.")
            continue
        key, kind = f"{prefix}{field.name}", type_name(tp)
        if key in REGISTRY_CHOICES:
            kind = "|".join(REGISTRY_CHOICES[key]) + ("?" if kind.endswith("?") else "")
        rows.append((key, kind, default_text(field), comments.get(field.name, "")))
    return rows


def format_rows(rows: list[tuple[str, str, str, str]]) -> str:
    width = min(34, max(len(r[0]) for r in rows))
    lines = []
    for key, tp, default, comment in rows:
        head = f"  {key:<{width}} {tp}" + (f" = {default}" if default else "")
        lines.append(head + (f"\n  {'':<{width}}   {comment}" if comment and len(head) + len(comment) > 110
                             else (f"  # {comment}" if comment else "")))
    return "\n".join(lines)


def command_help(command: str, summary: str, args_cls: type | None, extra: str = "") -> str:
    """The help of one command: its usage line, then every argument."""
    text = f"usage: genlab {command} {summary}\n"
    if args_cls is not None:
        text += "\narguments (key=value):\n" + format_rows(describe_fields(args_cls)) + "\n"
    return text + extra


def config_help() -> str:
    """`genlab config --help` and `genlab train --help`: the groups, their blocks, the experiments, then every key."""
    root = project_root()
    groups = "\n".join(f"  {g:<10} {', '.join(available(root / 'configs' / g)) or '(no blocks)'}"
                       for g in CONFIG_GROUPS if (root / "configs" / g).is_dir())
    experiments = ", ".join(available(Path(root) / "experiments"))
    return (f"\nexperiments (experiment=NAME): {experiments}\n\nblocks (group=BLOCK, from configs/<group>/):\n{groups}\n"
            "\nrun config keys (key=value overrides one key):\n" + format_rows(describe_fields(Config)) + "\n")


# Each command's one-line usage and its argument dataclass (commands/args.py); train and config take the run config.
COMMAND_HELP: dict[str, tuple[str, str | None, str]] = {
    "train": ("[experiment=NAME] [group=BLOCK] [key=value ...]", None,
              "train a model; writes runs/<experiment>/<time>/ (or run_dir=PATH)"),
    "config": ("[experiment=NAME] [group=BLOCK] [key=value ...]", None, "print the resolved run config"),
    "sample": ("ckpt=PATH [key=value ...]", "SampleArgs", "images from a checkpoint: a grid PNG or a folder of PNGs"),
    "eval": ("ckpt=PATH [key=value ...]", "EvalArgs",
             "FID, KID, IS, precision/recall (and NLL) of a checkpoint's samples against a dataset split"),
    "table": ("SPEC [key=value ...]", "TableArgs", "a paper-style table from a sweep spec (experiments/tables/)"),
    "invert": ("ckpt=PATH image=IMAGE steps=S [key=value ...]", "InvertArgs",
               "encode an image into the model's latent and decode it again"),
    "interpolate": ("ckpt=PATH a=SOURCE b=SOURCE [key=value ...]", "InterpolateArgs",
                    "decode latents on the great circle between two endpoints"),
    "compare": ("RUN_DIR ... [key=value ...]", "CompareArgs", "one table of runs"),
    "ema": ("ckpt=PATH sigma_rel=S [out=PATH]", "EMAArgs",
            "rebuild the EMA of any length after training from the run's power-EMA snapshots (post-hoc EMA)"),
}


def help_text(command: str) -> str:
    """`genlab COMMAND --help`: usage, what it does, every argument (train and config: the run config)."""
    summary, args_name, what = COMMAND_HELP[command]
    args_cls = getattr(command_args, args_name) if args_name else None
    usage, _, rest = command_help(command, summary, args_cls).partition("\n")
    text = f"{usage}\n\n{what}.\n{rest}"
    return text + (config_help() if args_cls is None else "")
