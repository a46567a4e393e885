"""Settings dataclasses that are their own command-line flags and docs table: one source of defaults.

A command's settings are a dataclass whose fields carry their help text (`setting(default, "help")`).
`add_flags` turns the fields into argparse flags (`max_batch_size` -> `--max-batch-size`, typed, with the
default in the help), `from_namespace` builds the dataclass back from parsed flags, and `docs_table`
writes the Markdown table the docs show. A default therefore lives in exactly one place.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def setting(default: Any, help: str, *, flag: bool = True, choices: tuple | None = None,
            metavar: str | None = None) -> Any:
    """A dataclass field with its help text; `flag=False` keeps it off the command line."""
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def _flag_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("flag", False)]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def add_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
              required: tuple[str, ...] = ()) -> None:
    """One flag per field of `cls` (except `skip`). Flags default to None, so `from_namespace` can tell a
    flag left out (the dataclass default applies) from one given."""
    for f, tp in _flag_fields(cls):
        if f.name in skip:
            continue
        base = _base_type(tp)
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "metavar": f.metadata.get("metavar")}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs.pop("metavar")
        elif base in (int, float):
            kwargs["type"] = base
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        default = _default(f)
        kwargs["help"] = f.metadata["help"] + ("" if f.name in required else f" (default {_shown(default)})")
        kwargs["required"] = f.name in required
        parser.add_argument(flag_name(f.name), **{k: v for k, v in kwargs.items() if v is not None or k == "default"})


def from_namespace(cls: type[T], args: Any, **extra: Any) -> T:
    """`cls` from parsed flags: given flags override the defaults; `extra` fills non-flag fields."""
    given = {f.name: getattr(args, f.name) for f, _ in _flag_fields(cls)
             if getattr(args, f.name, None) is not None}
    return cls(**{**given, **extra})


def docs_table(cls: type, skip: tuple[str, ...] = ()) -> str:
    """The Markdown table of a settings class: flag, default, meaning."""
    lines = ["| flag | default | meaning |", "|---|---|---|"]
    for f, _ in _flag_fields(cls):
        if f.name not in skip:
            lines.append(f"| `{flag_name(f.name)}` | `{_shown(_default(f))}` | {f.metadata['help']} |")
    return "\n".join(lines)


def defaults(cls: type) -> dict[str, Any]:
    """{field: default} of every field that has one."""
    return {f.name: _default(f) for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}  # type: ignore[misc]
