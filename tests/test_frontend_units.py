"""The front end's pure modules, unit-tested under node's built-in test runner (no npm packages)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FRONTEND_TESTS = Path(__file__).resolve().parents[1] / "frontend" / "tests"


def test_frontend_unit_tests_pass():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the front end's unit tests need `node --test`")
    result = subprocess.run([node, "--test", str(FRONTEND_TESTS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
