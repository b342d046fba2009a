"""Request bodies of the CRUD endpoints: the fields of each entity, their types and limits.

``parse_fields(body, spec, partial)`` returns the checked fields or raises
``ValidationError`` naming the first bad field (the app answers 400). Unknown
fields are refused; ``partial`` (PUT) makes every field optional.
"""

from __future__ import annotations

import re
from typing import Any

METRIC_ID_RE = re.compile(r"^METRIC-[A-Z0-9-]+$")


class ValidationError(ValueError):
    """A body field is missing, unknown or of the wrong type; the message names it."""


# Body fields: name -> (kind, required, default). Kinds are checked by _check().
METRIC_FIELDS = {
    "metric_id": ("metric_id", True, None),
    "name": ("text", True, None),
    "domain": ("text", True, None),
    "category": ("text", True, None),
    "tags": ("tags", False, []),
    "description": ("longtext", False, ""),
}
DOMAIN_FIELDS = {"name": ("text", True, None), "description": ("longtext", False, "")}
OBJECTIVE_FIELDS = {
    "title": ("text", True, None),
    "domain": ("opttext", False, None),
    "completed": ("bool", False, False),
}


def _check(name: str, kind: str, value: Any) -> Any:
    if kind in ("text", "longtext", "opttext"):
        if kind == "opttext" and value is None:
            return None
        limit = 5000 if kind == "longtext" else 200
        if not isinstance(value, str) or (kind != "longtext" and not value.strip()) or len(value) > limit:
            raise ValidationError(
                f"{name}: expected a {'' if kind == 'longtext' else 'non-empty '}string of at most {limit} characters",
            )
        return value
    if kind == "metric_id":
        if not isinstance(value, str) or not METRIC_ID_RE.match(value) or len(value) > 100:
            raise ValidationError(f"{name}: expected an id like METRIC-XXX-001 (METRIC- then A-Z, 0-9, -)")
        return value
    if kind == "tags":
        if (
            not isinstance(value, list)
            or len(value) > 20
            or not all(isinstance(t, str) and 0 < len(t) <= 50 for t in value)
        ):
            raise ValidationError(f"{name}: expected a list of at most 20 non-empty strings (50 characters each)")
        return list(dict.fromkeys(value))
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValidationError(f"{name}: expected true or false")
        return value
    raise AssertionError(kind)


def parse_fields(body: Any, spec: dict, partial: bool) -> dict:
    """The fields of ``body`` per ``spec`` (all required ones unless ``partial``); ValidationError naming the field."""
    if not isinstance(body, dict):
        raise ValidationError("body: expected a JSON object")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise ValidationError(f"{unknown[0]}: unknown field")
    out = {}
    for name, (kind, required, default) in spec.items():
        if name in body:
            out[name] = _check(name, kind, body[name])
        elif required and not partial:
            raise ValidationError(f"{name}: required")
        elif not partial:
            out[name] = list(default) if isinstance(default, list) else default
    if partial and not out:
        raise ValidationError("body: no field to update")
    return out
