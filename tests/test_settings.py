"""Settings read FOVEA_* variables, validate them, and are all documented in the README."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import BUILTIN_MODEL_DIR, Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("FOVEA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FOVEA_PORT", "9001")
    monkeypatch.setenv("FOVEA_MODEL_DIRS", f"/a{os.pathsep}/b")
    monkeypatch.setenv("FOVEA_BUILTIN_MODELS", "false")
    settings = Settings()
    assert settings.data_dir == tmp_path and settings.port == 9001
    assert settings.model_dirs == [Path("/a"), Path("/b")]
    assert settings.card_dirs() == [Path("/a"), Path("/b")]


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("FOVEA_PORT", "9001")
    assert Settings(port=9002).port == 9002


def test_builtin_models_folder_is_the_repository_model_store():
    assert Settings().card_dirs()[0] == BUILTIN_MODEL_DIR
    assert Settings(model_dirs=[Path("/mine")]).card_dirs()[:2] == [Path("/mine"), BUILTIN_MODEL_DIR]  # theirs first
    assert BUILTIN_MODEL_DIR.name == "model_store" and BUILTIN_MODEL_DIR.is_dir()


@pytest.mark.parametrize(("field", "value"), [("device", "gpu"), ("port", 0), ("log_level", "loud"),
                                              ("torch_threads", -1)])
def test_invalid_values_are_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_every_setting_is_in_the_readme_table():
    text = README.read_text()
    documented = set(re.findall(r"^\| `FOVEA_([A-Z_]+)` \|", text, flags=re.M))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_the_readme_test_command_is_what_ci_runs():
    commands = re.findall(r"^\s*(python3 -m venv .venv && .venv/bin/pip install -e '\.\[test\]'.*)$",
                          README.read_text(), flags=re.M)
    ci = (README.parent / ".ci" / "run").read_text()
    assert len(commands) == 1 and commands[0].strip() in ci.splitlines()
