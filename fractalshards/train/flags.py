"""Command-line flags generated from a config dataclass: one ``--field-name`` per field, typed from
its annotation, with the help text of the field's ``metadata["help"]``; no field is copied by hand.

Flags default to "not given", so that a recipe (a dict of field values) fills what the user
did not say: :func:`config_from_args` merges ``defaults < recipe < flags``.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

__all__ = ["flag_field", "add_flags", "config_from_args"]


def flag_field(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field with its flag's help text (``flag=False``: no flag; ``choices=...``)."""
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata={"help": help, **extra})
    return dataclasses.field(default=default, metadata={"help": help, **extra})


def _parse_tuple(item: type):
    def parse(text: str) -> tuple:
        try:
            return tuple(item(x) for x in text.split(",") if x.strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {item.__name__}") from exc

    return parse


def add_flags(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> None:
    """Add one flag per field of dataclass ``cls`` (``skip`` leaves some out)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("flag") is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        args = typing.get_args(kind)
        if typing.get_origin(kind) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            kind = next(a for a in args if a is not type(None))  # Optional[X] -> X
            args = typing.get_args(kind)
        default = None if f.default is dataclasses.MISSING else f.default
        help_text = f.metadata.get("help", "")
        if f.name not in required and default is not None and not isinstance(default, bool):
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_text += f" (default {shown})" if help_text else f"default {shown}"
        options: dict[str, Any] = {"help": help_text, "dest": f.name, "default": argparse.SUPPRESS}
        if f.name in required:
            options.update(required=True, default=None)
        if f.metadata.get("repeat"):  # --flag A --flag B: a tuple of every value given
            options.update(action="append", type=str)
            if f.name in required:
                options["default"] = None
        elif kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            options.update(type=_parse_tuple(args[0]), metavar="A,B,...")
        else:
            options["type"] = kind
            if "choices" in f.metadata:
                options["choices"] = f.metadata["choices"]
        parser.add_argument(flag, **options)


def config_from_args(cls: type, args: argparse.Namespace, recipe: dict | None = None) -> Any:
    """``cls(**{**recipe, **flags given})``: the dataclass defaults under the recipe under the flags."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items() if k in names}
    return cls(**{**(recipe or {}), **given})
