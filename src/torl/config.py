"""Typed YAML configs: dataclasses filled from YAML mappings and dotted `key=value` overrides, strictly.

One core for every torl config (train, eval, rollout, demo, the veRL recipe). Every key is checked against the
dataclass: an unknown key (with a "did you mean"), a value of the wrong type, or a bad override is a
`UserInputError` naming the file, the line and the dotted key ("configs/x.yaml:12: grpo.clip_ratio: expected a
number, got 'high'"), or "command-line override KEY" when the value came from the command line.

    raw, lines = read_yaml("configs/x.yaml")
    apply_overrides(raw, ["optim.lr=2e-6"])
    cfg = from_dict(MyConfig, raw, where="configs/x.yaml", lines=lines, overridden=override_keys(["optim.lr=2e-6"]))
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml

from torl.errors import UserInputError

_DOTTED_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_FLOAT = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def read_yaml(path: str | Path) -> tuple[dict, dict[str, int]]:
    """The mapping in a YAML file and each dotted key's 1-based line.

    Raises UserInputError naming the file (and line) when it is missing, not YAML, or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text) or {}
        lines = key_lines(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise UserInputError(f"{path}{at}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(raw, dict):
        raise UserInputError(f"{path}: expected a mapping of config sections, got {type(raw).__name__}")
    return raw, lines


def parse_value(text: str) -> Any:
    """A command-line value read as YAML (so lists, null and booleans work); "1e-6" is a float (YAML 1.1 reads
    it as a string), and text that is not valid YAML is kept as it is."""
    try:
        parsed = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        parsed = text
    if isinstance(parsed, str) and looks_like_float(parsed):
        parsed = float(parsed)
    return parsed


def parse_override(item: str) -> tuple[str, Any]:
    """ "grpo.clip_ratio=0.3" -> ("grpo.clip_ratio", 0.3)."""
    if "=" not in item:
        raise UserInputError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=2e-6")
    key, value = item.split("=", 1)
    key = key.strip()
    if not _DOTTED_KEY.fullmatch(key):
        raise UserInputError(f"override {item!r}: {key!r} is not a dotted key like optim.lr")
    return key, parse_value(value)


def apply_override(raw: dict, item: str) -> None:
    """Set the dotted key of `item` ("a.b=1") in the nested mapping `raw`, creating sections on the way."""
    key, value = parse_override(item)
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserInputError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: dict, overrides: Iterable[str]) -> None:
    for item in overrides:
        apply_override(raw, item)


def override_keys(overrides: Iterable[str]) -> set[str]:
    """The dotted keys that overrides set (errors about them name the command line, not a file line)."""
    return {item.split("=", 1)[0].strip() for item in overrides if "=" in item}


def from_dict(cls, data: Any, *, where: str = "", lines: dict[str, int] | None = None, prefix: str = "",
              overridden: set[str] | None = None):
    """Build dataclass `cls` from a mapping, checking every key and type. Errors name where/line/key."""
    lines = lines or {}
    overridden = overridden or set()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise config_error(where, lines, prefix.rstrip("."), f"expected a section (mapping), got {_show(data)}",
                           overridden)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(names)})"
            raise config_error(where, lines, f"{prefix}{key}", f"unknown key{hint}", overridden)
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        dotted = f"{prefix}{name}"
        kwargs[name] = _coerce(hints[name], data[name], dotted, where, lines, overridden)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        # "top_p must be in (0, 1]" is about top_p; a rule across fields ("a + b must be <= c") is about the one
        # of them the user set last: an override, else a key of this section, else the first one named
        named = [n for n in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", str(e)) if n in names]
        chosen = next((n for n in named if f"{prefix}{n}" in overridden), None)
        chosen = chosen or next((n for n in named if n in data), None) or (named[0] if named else None)
        key = f"{prefix}{chosen}" if chosen else prefix.rstrip(".")
        raise config_error(where, lines, key, str(e), overridden) from None


def _coerce(tp, value, dotted: str, where: str, lines: dict[str, int], overridden: set[str]):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(msg: str) -> UserInputError:
        return config_error(where, lines, dotted, msg, overridden)

    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where, lines=lines, prefix=f"{dotted}.", overridden=overridden)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(a, value, dotted, where, lines, overridden)
            except UserInputError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise bad(f"must be one of {', '.join(repr(a) for a in args)}, got {_show(value)}")
        return value
    if origin is list or origin is tuple:
        item_tp = args[0] if args else Any
        if isinstance(value, str | int | float) and not isinstance(value, bool) and item_tp is str:
            value = [value]  # a single path for a list of paths
        if not isinstance(value, list | tuple):
            raise bad(f"expected a list, got {_show(value)}")
        items = [_coerce(item_tp, v, f"{dotted}[{i}]", where, lines, overridden) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise bad(f"expected a mapping, got {_show(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad(f"expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, str) and looks_like_float(value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(f"expected a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad(f"expected a string, got {_show(value)}")
        return str(value)
    if tp is Any:
        return value
    raise TypeError(f"config field {dotted}: unsupported type {tp!r}")  # a bug in the dataclasses, not user input


def to_dict(cfg) -> dict:
    """A config dataclass as plain nested dicts/lists (what `from_dict` reads back)."""
    return dataclasses.asdict(cfg)


def config_error(where: str, lines: dict[str, int], key: str, msg: str,
                 overridden: set[str] = frozenset()) -> UserInputError:
    """A one-line UserInputError: "file:line: key: msg", or "command-line override key: msg"."""
    if key in overridden or any(key.startswith(o + ".") or key.startswith(o + "[") for o in overridden):
        return UserInputError(f"command-line override {key}: {msg}")
    line = _line_of(lines, key)
    at = f"{where}:{line}" if line else where
    return UserInputError(f"{at}: {key}: {msg}" if key else f"{at}: {msg}")


def looks_like_float(s: str) -> bool:
    return bool(_FLOAT.fullmatch(s))


def key_lines(text: str) -> dict[str, int]:
    """Dotted key (and key[i] for list items) -> 1-based line number, from the YAML node tree."""
    out: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                out[key] = k.start_mark.line + 1
                walk(v, key + ".")
        elif isinstance(node, yaml.SequenceNode):
            base = prefix.rstrip(".")
            for i, item in enumerate(node.value):
                out[f"{base}[{i}]"] = item.start_mark.line + 1
                walk(item, f"{base}[{i}].")

    root = yaml.compose(text)
    if root is not None:
        walk(root, "")
    return out


def _show(value) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return repr(value)


def _line_of(lines: dict[str, int], key: str) -> int | None:
    while key:
        if key in lines:
            return lines[key]
        key = key.rsplit(".", 1)[0] if "." in key else (key.split("[")[0] if "[" in key else "")
    return None
