"""The front end's pure modules, unit-tested under node's built-in test runner (no npm packages)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

FRONTEND_TESTS = Path(__file__).resolve().parents[1] / "frontend" / "tests"


def test_frontend_unit_tests_pass():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed; .ci/run installs Debian's nodejs with apt-get")
        pytest.skip("node is not installed; the front end's unit tests need `node --test` (apt-get install nodejs)")
    # The files by name (node 21 and later read a directory argument as a file pattern), in TAP whatever
    # node's default reporter is.
    files = sorted(str(path) for path in FRONTEND_TESTS.glob("*.test.mjs"))
    assert files
    result = subprocess.run([node, "--test", "--test-reporter=tap", *files], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = {name: int(value) for name, value in re.findall(r"^# (tests|pass|fail) (\d+)$", result.stdout, re.M)}
    assert counts["fail"] == 0 and counts["pass"] == counts["tests"] >= len(files), result.stdout[-2000:]
