"""Dataclass fields that carry their documentation, the JSON round trip, and typed `--set` parsing.

Shared by `Network`, `Recipe` and `Design`: a field's type hint is the one place its JSON and command-line forms
are checked against (enums from their strings, tuples from lists, no silent int-for-float or str-for-int).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import field
from typing import Any

from roadmap.errors import RoadmapError, unknown


def doc_field(text: str, default: Any = dataclasses.MISSING, *, added: bool = False, **kw: Any) -> Any:
    """A dataclass field that carries its documentation (shown by `roadmap show` and the README).

    `added=True` marks a field added after results were recorded (a new step's knob): while it holds its default,
    `to_dict(..., as_recorded=True)` leaves it out, so the JSON of every existing design, and with it every run's
    identity, stays as it was and finished runs are found again instead of retrained.
    """
    return field(default=default, metadata={"doc": text, "added": added}, **kw)


def to_dict(obj: Any, *, as_recorded: bool = False) -> dict[str, Any]:
    """A JSON-ready dict (enums as their strings, tuples as lists) with every field; `as_recorded`: as records and
    run identities store it, without the `added` fields that hold their default."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)
                    if not (as_recorded and _left_out(v, f))}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, enum.Enum):
            return v.value
        return v

    return plain(obj)


def _left_out(obj: Any, f: dataclasses.Field) -> bool:
    """An `added` field at its default is not written (see `doc_field`)."""
    return bool(f.metadata.get("added")) and getattr(obj, f.name) == f.default


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a dataclass from `to_dict` output; unknown keys are an error, missing keys take defaults."""
    if not isinstance(data, dict):
        raise RoadmapError(f"expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise unknown(f"{cls.__name__} field", key, names)
    kwargs = {}
    for key, value in data.items():
        hint = typing.get_type_hints(cls)[key]
        kwargs[key] = from_dict(hint, value) if dataclasses.is_dataclass(hint) else value
    return cls(**kwargs)


def field_docs(cls: type) -> dict[str, str]:
    """Each field's one-line documentation."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def parse_value(cls: type, name: str, text: str) -> Any:
    """Parse the string `text` for field `name` of `cls`, checked against the field's type.

    Used by `--set key=value`: 'null' for optional fields, comma lists for tuples, true/false for bools.
    """
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise unknown(f"{cls.__name__} field", name, hints)
    return _parse(hints[name], text, f"{cls.__name__}.{name}")


def _parse(hint: Any, text: str, where: str) -> Any:
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("null", "none"):
            return None
        return _parse(next(a for a in args if a is not type(None)), text, where)
    if origin is tuple:
        return tuple(_parse(args[0], t, where) for t in text.split(",") if t.strip())
    try:
        if hint is bool:
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return hint(text.strip())
        return hint(text.strip())
    except ValueError:
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            raise unknown(f"value for {where}", text, [m.value for m in hint]) from None
        raise RoadmapError(f"{where} expects {getattr(hint, '__name__', hint)}, got {text!r}") from None


def coerce_fields(obj: Any) -> None:
    """Turn JSON-ish values (strings, lists) into the declared enums and tuples, rejecting wrong types."""
    for f in dataclasses.fields(obj):
        hint = typing.get_type_hints(type(obj))[f.name]
        value = getattr(obj, f.name)
        new = _coerce_value(hint, value, f"{type(obj).__name__}.{f.name}")
        if new is not value:
            object.__setattr__(obj, f.name, new)


def _coerce_value(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _coerce_value(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise RoadmapError(f"{where} expects a list, got {value!r}")
        return tuple(_coerce_value(args[0], v, where) for v in value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        try:
            return hint(value)
        except ValueError:
            raise unknown(f"value for {where}", value, [m.value for m in hint]) from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, bool, str) and (type(value) is not hint):
        raise RoadmapError(f"{where} expects {hint.__name__}, got {value!r}")
    return value

