"""The CAM registry and its documentation stay in step: every method is in docs/cam-methods.md's table with
its name and reference, and declares what the engine needs to know."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.engine.cam import METHODS
from app.engine.cam.base import NO_EXTRA_FORWARDS, PER_CHANNEL, PER_CHANNEL_AFTER_LAYER

DOC = (Path(__file__).resolve().parents[1] / "docs" / "cam-methods.md").read_text(encoding="utf-8")


def test_the_documented_methods_are_the_registry_in_its_order():
    documented = re.findall(r"^\| `([a-z-]+)` \|", DOC, flags=re.MULTILINE)
    assert documented == list(METHODS) and len(METHODS) >= 11


@pytest.mark.parametrize("method", list(METHODS.values()), ids=list(METHODS))
def test_each_method_is_documented_and_declares_its_needs(method):
    assert f"| `{method.id}` | {method.name} |" in DOC
    assert method.reference in DOC
    assert re.fullmatch(r"[a-z][a-z-]*", method.id)
    assert method.description and "\n" not in method.description and method.description.endswith(".")
    assert method.extra_forwards in (NO_EXTRA_FORWARDS, PER_CHANNEL, PER_CHANNEL_AFTER_LAYER)
    assert method.resolution in ("layer", "input")
    assert method.__doc__ and len(method.__doc__) > 40
    info = method.describe()
    assert info["id"] == method.id and set(info) >= {"name", "description", "reference", "extra_forwards"}
