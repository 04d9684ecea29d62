"""Hostile API bodies: fields of the documented responses, read from DigitalOcean's OpenAPI
file, and values that break them (wrong types, nulls, unknown enumerations, enormous strings).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from hypothesis import strategies as st

OPENAPI_FILE = "do-security-openapi.yaml"
HUGE_TEXT = "A" * 2_000_000

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class DocumentedField:
    """A field of a documented response body: where it is, its JSON type and its enumeration."""

    path: FieldPath
    type: str
    enum: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return ".".join(str(part) for part in self.path)


@cache
def _openapi() -> dict[str, Any]:
    text = resources.files("service.simulator").joinpath(OPENAPI_FILE).read_text("utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def documented_fields(api_path: str, method: str, status: str) -> list[DocumentedField]:
    """Every field of the JSON response of `method api_path` with `status`, arrays entered
    at index 0."""
    operation = _openapi()["paths"][api_path][method]
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    return list(_walk(schema, ()))


def _walk(schema: dict[str, Any], path: FieldPath) -> Iterator[DocumentedField]:
    kind = schema.get("type")
    if kind == "object":
        for name, child in schema.get("properties", {}).items():
            yield from _walk(child, (*path, name))
    elif kind == "array":
        yield from _walk(schema.get("items", {}), (*path, 0))
    if path and kind is not None:
        yield DocumentedField(path, str(kind), tuple(schema.get("enum", ())))


def wrong_values(field: DocumentedField) -> list[tuple[str, Any]]:
    """Values of another JSON type than the field's, and an unknown member of its enumeration."""
    by_type: dict[str, Any] = {
        "string": 12345,
        "integer": "12",
        "number": "1.5",
        "boolean": "true",
        "array": {"unexpected": True},
        "object": ["unexpected"],
    }
    values: list[tuple[str, Any]] = [("wrong_type", by_type[field.type])]
    if field.type == "integer":
        values.append(("fraction", 1.5))
    if field.enum:
        values.append(("unknown_enum", "NOT_" + field.enum[0] + "_AT_ALL"))
    return values


def set_at(body: Any, path: FieldPath, value: Any) -> int:
    """Replace the value at `path` in `body` and return how many places were replaced.

    An index in `path` stands for every element of its array. A body without such a place
    gives 0.
    """
    if not path:
        return 0
    part, rest = path[0], path[1:]
    if isinstance(part, int):
        if not isinstance(body, list):
            return 0
        if not rest:
            body[:] = [value] * len(body)
            return len(body)
        return sum(set_at(item, rest, value) for item in body)
    if not isinstance(body, dict) or part not in body:
        return 0
    if not rest:
        body[part] = value
        return 1
    return set_at(body[part], rest, value)


def json_places(body: Any, path: FieldPath = ()) -> list[FieldPath]:
    """Every place in a decoded JSON body, the root included, in a stable order."""
    places = [path]
    if isinstance(body, dict):
        for key in sorted(body):
            places.extend(json_places(body[key], (*path, key)))
    elif isinstance(body, list):
        for index, item in enumerate(body):
            places.extend(json_places(item, (*path, index)))
    return places


def hostile_values() -> st.SearchStrategy[Any]:
    """JSON values that a field should never hold: other types, nulls, unknown enumeration
    members, enormous or odd strings, huge and non-finite numbers, nested junk."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([2**63, -(2**63) - 1, 10**30]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.sampled_from(["", " ", "SUPER_CRITICAL", "completed ", "\x00", "ü" * 50, HUGE_TEXT]),
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=6,
    )
