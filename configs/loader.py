"""Resolve a run's configuration: schema defaults <- YAML preset chain <- `key=value` overrides.

A YAML preset holds only overrides, as nested mappings mirroring `configs/schema.py`, and may name one parent with
`extends: <file or preset name>`. Presets are found by path or by name under `configs/` (`eval/d17` →
`configs/eval/d17.yaml`). Every key is checked against the schema: an unknown key is an error naming the closest
valid keys, and a value of the wrong type is an error naming the expected and received types.

Example:
    >>> config = load_config("configs/eval/d17.yaml", ["inference.top_k=20"])
    >>> config.inference.top_k
    20
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from configs.common import atomic_write_text
from configs.schema import Config

PRESET_DIR = Path(__file__).resolve().parent
EXTENDS_KEY = "extends"
MAX_EXTENDS_DEPTH = 16
YAML_NULLS = ("null", "Null", "NULL", "~")


class UnknownConfigKeyError(KeyError):
    """A configuration key that the schema does not have."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def resolve_preset_path(name: str | os.PathLike, relative_to: Path | None = None) -> Path:
    """Find a preset by path (absolute, relative to `relative_to` or the working dir) or by name under configs/.

    Raises:
        FileNotFoundError: no such file; the message lists where it looked.
    """
    name = str(name)
    with_suffix = name if name.endswith((".yaml", ".yml")) else name + ".yaml"
    candidates = []
    if relative_to is not None:
        candidates += [relative_to / name, relative_to / with_suffix]
    candidates += [Path(name), Path(with_suffix), PRESET_DIR / with_suffix]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise FileNotFoundError(f"config preset {name!r} not found (looked at {looked})")


def _read_yaml_chain(path: Path, depth: int = 0) -> dict[str, Any]:
    """The merged overrides of `path` and its `extends` ancestors (the child wins)."""
    if depth > MAX_EXTENDS_DEPTH:
        raise ValueError(f"config {path}: more than {MAX_EXTENDS_DEPTH} levels of 'extends' (a cycle?)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"config {path} is not valid YAML: {error}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ValueError(f"config {path} must hold a mapping of sections, got {type(data).__name__}")
    parent = data.pop(EXTENDS_KEY, None)
    if parent is None:
        return data
    base = _read_yaml_chain(resolve_preset_path(parent, relative_to=path.parent), depth + 1)
    return _deep_merge(base, data)


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(value: Any, annotation: Any, key: str, default: Any = None) -> Any:
    """Check `value` against the schema type `annotation`; return it in the schema's representation.

    A mapping for a dataclass field fills what it leaves out from `default`, the field's value before it.
    """
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        (inner,) = [argument for argument in arguments if argument is not type(None)]
        return _coerce(value, inner, key, default)
    if origin is typing.Literal:
        if value not in arguments:
            choices = ", ".join(repr(choice) for choice in arguments)
            raise ValueError(f"config key {key!r}: got {value!r}, expected one of {choices}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"config key {key!r}: expected a list, got {type(value).__name__} {value!r}")
        return tuple(_coerce(item, arguments[0], f"{key}[{index}]") for index, item in enumerate(value))
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise TypeError(f"config key {key!r}: expected a mapping of fields, got {type(value).__name__}")
        return _build(annotation, value, prefix=key + ".", default=default)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        # YAML 1.1 reads exponents without a dot (`1e-5`) as strings; a numeric string is unambiguous.
        try:
            return float(value)
        except ValueError:
            pass
    if annotation in (int, float, str, bool):
        if isinstance(value, annotation) and not (annotation is int and isinstance(value, bool)):
            return value
        raise TypeError(
            f"config key {key!r}: expected {annotation.__name__}, got {type(value).__name__} {value!r}"
        )
    raise TypeError(f"config key {key!r}: unsupported schema type {_type_name(annotation)}")


def _build(cls: type, values: Mapping[str, Any], prefix: str = "", default: Any = None) -> Any:
    """Build dataclass `cls` from a (partial) mapping; what it leaves out comes from `default` (else `cls()`).

    Nested fields fill in from their own defaults: `train.stage3.lr=2e-5` keeps stage 3's lr step and fine-tune
    phase (`TrainConfig`'s stage-3 factory), not a bare `StageConfig()`'s.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise UnknownConfigKeyError(f"unknown config key {prefix + str(key)!r}{hint}")
    if default is None:
        default = cls()
    kwargs = {}
    for name in names:
        if name in values:
            kwargs[name] = _coerce(values[name], hints[name], prefix + name, getattr(default, name))
        else:
            kwargs[name] = getattr(default, name)
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict of a config (tuples as lists), ready for YAML."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Build a `Config` from a nested mapping of overrides; the rest comes from the schema defaults.

    Raises:
        UnknownConfigKeyError: a key not in the schema (the message names the closest valid keys).
        TypeError, ValueError: a value of the wrong type or outside a field's choices.
    """
    return _build(Config, values)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `section.field=value` into a key path and a value (YAML-parsed unless the field is a string).

    Raises:
        ValueError: the text has no `=`, an empty key, or a value that is not valid YAML.
    """
    key, separator, raw = text.partition("=")
    if not separator or not key.strip():
        raise ValueError(f"override {text!r} must look like section.field=value (e.g. inference.top_k=20)")
    path = key.strip().split(".")
    if _is_string_field(path) and raw.strip() not in YAML_NULLS:
        return path, raw  # so that eval.model=123 or eval.output=yes stay strings
    try:
        return path, yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ValueError(f"override {text!r}: the value is not valid YAML") from None


def _is_string_field(path: list[str]) -> bool:
    """Whether a key path names a str, optional str or string-choice field (YAML would read `off` as false)."""
    cls: Any = Config
    for name in path:
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
        if name not in hints:
            return False
        cls = hints[name]
    origin, arguments = typing.get_origin(cls), typing.get_args(cls)
    if origin is typing.Literal:
        return all(isinstance(choice, str) for choice in arguments)
    return cls is str or (origin in (typing.Union, types.UnionType) and str in arguments)


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    nested: Any = value
    for name in reversed(path):
        nested = {name: nested}
    return nested


def load_config(preset: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    """Resolve schema defaults, then a preset (with its `extends` chain), then `key=value` overrides.

    Args:
        preset: a YAML path or a preset name under configs/ (e.g. `eval/d17`); None for defaults only.
        overrides: strings like `inference.top_k=20` or `train.stage3.lr_steps=[1000]`, applied in order.
    Returns:
        the frozen, type-checked `Config`.
    Raises:
        FileNotFoundError: the preset does not exist.
        UnknownConfigKeyError, TypeError, ValueError: as `config_from_dict`, or a malformed override.
    """
    values: dict[str, Any] = {}
    if preset is not None:
        values = _read_yaml_chain(resolve_preset_path(preset))
    for text in overrides:
        path, value = parse_override(text)
        values = _deep_merge(values, _nest(path, value))
    return config_from_dict(values)


def dump_config(config: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically (temp file + rename)."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


@dataclass(frozen=True)
class FlagAlias:
    """One flag of the original XMem eval.py and the schema field it sets.

    A flag with a (non-None) `constant` takes no value and sets the field to that constant (e.g. --disable_long_term).
    """

    flag: str
    field: str
    type: type = str
    constant: Any = None
    help: str = ""


ORIGINAL_EVAL_FLAGS: tuple[FlagAlias, ...] = (
    FlagAlias("model", "eval.model", str, help="checkpoint to evaluate"),
    FlagAlias("dataset", "eval.dataset", str, help="D16 D17 Y18 Y19 LV1 LV3 LVOS1 LVOS2 G"),
    FlagAlias("split", "eval.split", str, help="val or test"),
    FlagAlias("output", "eval.output", str, help="output folder"),
    FlagAlias("d16_path", "eval.d16_path"),
    FlagAlias("d17_path", "eval.d17_path"),
    FlagAlias("y18_path", "eval.y18_path"),
    FlagAlias("y19_path", "eval.y19_path"),
    FlagAlias("lv_path", "eval.lv_path"),
    FlagAlias("lvos_path", "eval.lvos_path"),
    FlagAlias("generic_path", "eval.generic_path"),
    FlagAlias("save_all", "eval.save_all", constant=True, help="YouTube-VOS: save every frame"),
    FlagAlias("use_all_masks", "eval.use_all_masks", constant=True, help="generic data: later masks add objects"),
    FlagAlias("benchmark", "inference.use_amp", constant="off", help="disable AMP for FPS measurement"),
    FlagAlias("disable_long_term", "inference.enable_long_term", constant=False),
    FlagAlias("max_mid_term_frames", "inference.max_working_frames", int, help="T_max"),
    FlagAlias("min_mid_term_frames", "inference.min_working_frames", int, help="T_min"),
    FlagAlias("max_long_term_elements", "inference.max_long_term_elements", int, help="LT_max"),
    FlagAlias("num_prototypes", "inference.num_prototypes", int, help="P"),
    FlagAlias("top_k", "inference.top_k", int, help="k"),
    FlagAlias("mem_every", "inference.mem_every", int, help="r; any r ≤ 1 = every frame is a memory frame"),
    FlagAlias("deep_update_every", "inference.deep_update_every", int,
              help="n < 0 (e.g. -1): with every memory frame; n >= 0: every n frames, on the next memory frame"),
    FlagAlias("save_scores", "eval.save_scores", constant=True),
    FlagAlias("flip", "eval.flip", constant=True),
    FlagAlias("size", "eval.size", int, help="shorter side; -1 = native"),
    FlagAlias("device", "eval.device", str, help="auto, cpu, cuda, cuda:N or mps"),
    FlagAlias("overwrite", "eval.overwrite", constant=True, help="redo finished videos"),
    FlagAlias("davis_compat_decay", "eval.davis_compat_decay", constant=True),
)
"""The original eval.py flag names (plus this project's additions), each mapped onto one schema field."""


def add_flag_aliases(parser: argparse.ArgumentParser, aliases: Sequence[FlagAlias] = ORIGINAL_EVAL_FLAGS) -> None:
    """Add `--flag` options for `aliases`; unset flags stay None so that they override nothing."""
    for alias in aliases:
        if alias.constant is not None:
            parser.add_argument(f"--{alias.flag}", action="store_const", const=alias.constant, default=None,
                                help=f"sets {alias.field}={alias.constant!r}. {alias.help}".strip())
        else:
            parser.add_argument(f"--{alias.flag}", type=alias.type, default=None,
                                help=f"sets {alias.field}. {alias.help}".strip())


def overrides_from_flags(arguments: argparse.Namespace,
                         aliases: Sequence[FlagAlias] = ORIGINAL_EVAL_FLAGS) -> list[str]:
    """The `field=value` overrides that the given (non-None) alias flags stand for, in table order."""
    overrides = []
    for alias in aliases:
        value = getattr(arguments, alias.flag, None)
        if value is not None:
            rendered = str(value).lower() if isinstance(value, bool) else str(value)
            overrides.append(f"{alias.field}={rendered}")
    return overrides
