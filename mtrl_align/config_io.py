"""Load YAML configs into typed dataclasses, with ``key=value`` dotted overrides.

Every experiment config is a (nested) dataclass. A YAML file and command-line overrides are
merged onto its defaults; an unknown key or a value of the wrong type is a one-line
``ConfigError`` that names the key and suggests the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config file, key or value."""


def known_keys(schema: type) -> list[str]:
    """All dotted leaf keys of a dataclass schema, e.g. ``["seed", "env.benchmark", ...]``."""
    keys: list[str] = []
    for field in dataclasses.fields(schema):
        field_type = field.type if not isinstance(field.type, str) else None
        default = _default_of(field)
        if dataclasses.is_dataclass(default) or (
            field_type is not None and dataclasses.is_dataclass(field_type)
        ):
            sub = type(default) if dataclasses.is_dataclass(default) else field_type
            keys.extend(f"{field.name}.{k}" for k in known_keys(sub))
        else:
            keys.append(field.name)
    return keys


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return None


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _check_key(key: str, valid: list[str], free_prefixes: tuple[str, ...], where: str) -> None:
    if key in valid or any(key == p or key.startswith(p + ".") for p in free_prefixes):
        return
    # a whole sub-config given as a mapping is fine if it is a prefix of valid keys
    if any(v.startswith(key + ".") for v in valid):
        return
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown config key '{key}' in {where}{hint}")


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Parse ``["a.b=1", "c=[1,2]"]`` into a flat dict with YAML-typed values."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            parsed[key] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"cannot parse value of '{key}': {raw!r} ({error})") from None
    return parsed


def load_config(
    schema: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    free_prefixes: tuple[str, ...] = (),
) -> T:
    """Build ``schema`` from its defaults, a YAML file and dotted overrides (in that order).

    Args:
        schema: dataclass type of the config.
        path: YAML file; ``None`` uses the defaults only.
        overrides: ``key=value`` strings, e.g. ``["train.total_steps=1000"]``.
        free_prefixes: dotted prefixes whose sub-keys are free-form (e.g. method options).
    """
    valid = known_keys(schema)
    merged = OmegaConf.structured(schema)
    layers: list[tuple[str, dict]] = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file '{path}' is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"config file '{path}' must hold a mapping, got {type(data).__name__}"
            )
        layers.append((f"config file '{path}'", data))
    if overrides:
        flat = parse_overrides(overrides)
        nested: dict = {}
        for key, value in flat.items():
            node = nested
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        layers.append(("command-line overrides", nested))
    for where, data in layers:
        for key in _flatten(data):
            _check_key(key, valid, free_prefixes, where)
        try:
            merged = OmegaConf.merge(merged, data)
        except OmegaConfBaseException as error:
            key = getattr(error, "full_key", None) or "?"
            detail = str(error).splitlines()[0]
            raise ConfigError(f"bad value for config key '{key}' in {where}: {detail}") from None
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(f"invalid config: {str(error).splitlines()[0]}") from None


def to_dict(config: Any) -> dict:
    """A plain nested dict of a config dataclass (for saving and logging)."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
