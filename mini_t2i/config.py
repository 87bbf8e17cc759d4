"""Typed configs: dataclasses are the single source of truth, YAML only fills them in.

Every stage declares its config as nested dataclasses. `load_config` reads a YAML
file, applies dotted command-line overrides (``model.n_layer=4``) and builds the
dataclass, checking every key and every type on the way, so that a typo fails at
load time with the key's full dotted name instead of silently training the wrong
model. `save_config` writes the resolved config beside a checkpoint, and that file
loads back through the same checks.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar, Union

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, override or value does not fit its dataclass."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` and return it in that type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):  # Optional[X] and X | Y
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is none of {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        k_tp, v_tp = args if args else (Any, Any)
        return {_convert(k, k_tp, key): _convert(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported annotation {_type_name(tp)}")


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    # A key a dataclass has renamed (its `RENAMED_KEYS` class attribute, old -> new) still
    # loads, so folders written before the rename keep working.
    for old, new in getattr(cls, "RENAMED_KEYS", {}).items():
        if old in data and new not in data:
            data = {(new if k == old else k): v for k, v in data.items()}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(prefix + k for k in unknown)
        raise ConfigError(
            f"unknown config key(s): {names}. Known keys of {prefix or cls.__name__ + '.'}: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {name: _convert(value, hints[name], prefix + name) for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from None
    return obj


def config_from_dict(cls: type[T], data: dict | None) -> T:
    """Build `cls` from a plain mapping, checking keys and types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of keys to values, got {type(data).__name__}")
    return _build(cls, data)


def config_to_dict(cfg: Any) -> dict:
    """The config as plain YAML-ready data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (["a", "b", "c"], value); the value is read as YAML."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.subkey=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(cls: type, data: dict, overrides: Iterable[str]) -> dict:
    """Write dotted overrides into `data`, refusing keys that `cls` does not declare."""
    for text in overrides:
        path, value = parse_override(text)
        node, node_cls = data, cls
        for depth, part in enumerate(path):
            names = {f.name for f in dataclasses.fields(node_cls)} if dataclasses.is_dataclass(node_cls) else None
            if names is not None and part not in names:
                dotted = ".".join(path[: depth + 1])
                raise ConfigError(f"override {text!r}: unknown key {dotted!r}; known: {', '.join(sorted(names))}")
            if depth == len(path) - 1:
                node[part] = value
                break
            hint = typing.get_type_hints(node_cls)[part] if names is not None else None
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(path[:depth + 1])} is not a section")
            node_cls = hint
    return data


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> T:
    """Read `path` (YAML; None means all defaults), apply `overrides`, and build `cls`.

    Raises ConfigError naming the key for unknown keys, wrong types and bad values.
    """
    import yaml

    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist; pass a path to a YAML file (see configs/)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    data = apply_overrides(cls, data, overrides)
    return config_from_dict(cls, data)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically (temp file, then rename)."""
    import yaml

    from mini_t2i.atomic import atomic_write_bytes

    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    atomic_write_bytes(Path(path), text.encode("utf-8"))
