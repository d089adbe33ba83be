"""Typed configuration: dataclasses <-> YAML dicts, `--set key=value` overrides, strict key checks.

Every dataclass field is a config key; unknown keys raise a LegkitError that names the key and
lists the valid ones. Configs are built fresh for every run and never mutated at run time.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

import yaml

from legkit import LegkitError

_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
"""A number in exponent notation, e.g. 3e-4."""


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dict/list/scalar tree, ready for YAML."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass `cls` from a dict, checking every key and coercing scalar types."""
    if not isinstance(data, dict):
        raise LegkitError(f"config '{path or '<root>'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        where = f"{path}." if path else ""
        raise LegkitError(
            f"unknown config key '{where}{unknown[0]}'; valid keys{' under ' + path if path else ''}: "
            f"{', '.join(fields)}"
        )
    missing = [n for n, f in fields.items() if n not in data and f.init
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise LegkitError(f"config '{path or '<root>'}' is missing required keys: {', '.join(missing)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = coerce(hints[name], value, f"{path}.{name}" if path else name)
    return cls(**kwargs)


def coerce(hint: Any, value: Any, path: str) -> Any:
    """Check `value` against type `hint` and convert it (ints and 1e-3 strings to float, lists to tuples).

    Raises a LegkitError naming `path` (the dotted config key) and the expected type.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        kinds = [a for a in args if a is not type(None)]
        for kind in kinds[:-1]:  # e.g. int | str: the first kind the value is, the last one's error otherwise
            try:
                return coerce(kind, value, path)
            except LegkitError:
                pass
        return coerce(kinds[-1], value, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise LegkitError(f"config '{path}' must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise LegkitError(f"config '{path}' must have {len(args)} entries, got {len(value)}")
            return tuple(coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        seq = [coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, dict):
            raise LegkitError(f"config '{path}' must be a mapping, got {value!r}")
        return {k: coerce(args[1], v, f"{path}.{k}") for k, v in value.items()} if args else dict(value)
    if hint is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LegkitError(f"config '{path}' must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise LegkitError(f"config '{path}' must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise LegkitError(f"config '{path}' must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise LegkitError(f"config '{path}' must be a string, got {value!r}")
        return value
    return value


def parse_set(item: str) -> tuple[list[str], Any]:
    """Parse one `--set a.b.c=value` into (["a", "b", "c"], value); the value is read as YAML (`null` or `~`:
    None, for a setting that may be off; an empty value is an error)."""
    if "=" not in item:
        raise LegkitError(f"malformed --set '{item}': expected key=value, e.g. ppo.learning_rate=0.001")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise LegkitError(f"malformed --set '{item}': the key must be dotted names, e.g. task.episode_seconds=10")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise LegkitError(f"malformed --set '{item}': the value is not valid YAML ({exc.problem})") from None
    if value is None and raw.strip() not in ("null", "Null", "NULL", "~"):
        raise LegkitError(f"malformed --set '{item}': missing value after '=' (null or ~ for none)")
    return parts, value


def apply_sets(tree: dict, sets: list[str]) -> dict:
    """Apply `--set` overrides to a nested dict (in place); keys are checked later by from_dict."""
    for item in sets:
        parts, value = parse_set(item)
        node = tree
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise LegkitError(f"malformed --set '{item}': '{p}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return tree


def deep_merge(base: dict, override: dict) -> dict:
    """Return `base` with `override` merged in recursively (new dict; inputs untouched)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str) -> dict:
    """Read a YAML mapping from `path` with a clear error if it is missing or malformed."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise LegkitError(f"config file '{path}' does not exist") from None
    except yaml.YAMLError as exc:
        raise LegkitError(f"config file '{path}' is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LegkitError(f"config file '{path}' must hold a mapping of sections (task, ppo, run)")
    return data
