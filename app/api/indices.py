"""Indices a request names (a dataset image's id, a unit's channel): written one way only, ASCII digits with
no sign, space, point or leading zero, at most 9 of them. Python's int() also reads `١٧`, ` 17` and `017` (and
pydantic `17.0`) as 17, and SQLite's integers stop at 2^63 (an OverflowError, so a 500): one thing must have
one name in a link, and every index must fit."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

CANONICAL_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")


def parse_index(text: str, what: str = "an index") -> int:
    """The index `text` names; ValueError naming the problem when it is not written canonically."""
    if not CANONICAL_INDEX.fullmatch(text):
        raise ValueError(f"{text!r} is not {what}: write it in ASCII digits with no sign, space, decimal point or "
                         "leading zero, at most 9 digits (e.g. 17)")
    return int(text)


def _index_type(what: str):
    """The declaration for one kind of index, in a path or a query: add Path() or Query() to it.
    (The schema is written out: FastAPI copies a nested Annotated's ge/le into it as unknown keywords.)"""
    def canonical(value: object) -> object:
        return parse_index(value, what) if isinstance(value, str) else value

    return Annotated[int, BeforeValidator(canonical),
                     WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 999_999_999})]


DatasetIndex = _index_type("a dataset image id")
UnitIndex = _index_type("a unit index")
