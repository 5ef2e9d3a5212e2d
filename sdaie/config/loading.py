"""Defaults <- YAML file (with its ``_base_`` chain) <- ``key.sub=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .rules import check_values
from .sections import Config, ConfigError


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Coerce a YAML value to the annotated type, failing with the key path."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for arg in args[:-1]:  # the first member type that takes the value
            try:
                return _convert(arg, value, where)
            except ConfigError:
                continue
        return _convert(args[-1], value, where)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(unknown_key_message(unknown[0], where, sorted(names)))
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field (e.g. HeadConfig.tag) is missing
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def _all_keys(cls: type = None, prefix: str = "") -> list[str]:
    """Every dotted key of the config schema (``oneclass.train_dirs``, ...)."""
    cls = cls or Config
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        key = f"{prefix}{f.name}"
        out += _all_keys(tp, key + ".") if dataclasses.is_dataclass(tp) else [key]
    return out


def unknown_key_message(key: str, where: str, valid: Sequence[str]) -> str:
    """One line: the unknown key, the nearest valid one (in its section, else anywhere)."""
    full = f"{where}.{key}" if where else key
    elsewhere = [k for k in _all_keys() if k.rsplit(".", 1)[-1] == key] if where else []
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if elsewhere:  # a key of another section (pretext.steps given as oneclass.steps)
        hint = f"did you mean '{elsewhere[0]}'?"
    elif near:
        hint = f"did you mean '{where + '.' if where else ''}{near[0]}'?"
    else:
        hint = f"valid keys in '{where or 'config'}': {', '.join(valid)}"
    return f"unknown config key '{full}': {hint}"


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict:
    """Read a YAML config, resolving a chain of ``_base_`` files (relative to each file)."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}  # safe: tags such as !!python/object are refused
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML for a config: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("_base_", None)
    if base is not None:
        data = _deep_merge(read_yaml(path.parent / base), data)
    return data


def apply_override(data: dict, override: str) -> None:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML (safe loader)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    key, raw = override.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {override!r} has an empty key")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: '{part}' is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML: {exc}") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults <- YAML file (with its ``_base_`` chain) <- CLI overrides, validated."""
    data: dict = read_yaml(path) if path else {}
    for item in overrides:
        apply_override(data, item)
    cfg = from_dict(Config, data)
    check_values(cfg)
    return cfg
