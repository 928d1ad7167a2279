"""Shared fixtures: tiny model cards written into temporary folders, and settings that point at them."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.settings import Settings
from app.store.checkpoints import sha256_file

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

sys.path.insert(0, str(FIXTURES))
from tinynet import tiny_net  # noqa: E402

# TestClient's requests say `Host: testserver`: every app a test builds answers to it besides the default hosts.
os.environ["FOVEA_ALLOWED_HOSTS"] = ",".join(["testserver", *Settings.model_fields["allowed_hosts"].default_factory()])


def toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def card_toml(card: dict) -> str:
    """A TOML card from a dict of top-level keys and tables (tables written last, as TOML requires)."""
    lines = [f"{key} = {toml_value(value)}" for key, value in card.items() if not isinstance(value, dict)]
    for table, fields in card.items():
        if isinstance(fields, dict):
            lines += ["", f"[{table}]"] + [f"{key} = {toml_value(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def card_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cards"
    folder.mkdir()
    shutil.copy(FIXTURES / "tinynet.py", folder / "tinynet.py")
    return folder


@pytest.fixture
def write_tiny_card(card_dir: Path):
    """Write a working TinyNet card (and its weights) into `card_dir`; keyword arguments override tables."""

    def write(model_id: str = "tiny", seed: int = 0, **overrides) -> Path:
        torch.manual_seed(seed)
        weights = card_dir / f"{model_id}.safetensors"
        save_file(tiny_net().state_dict(), str(weights))
        card = {
            "id": model_id,
            "name": f"Tiny {model_id}",
            "architecture": {"callable": "tinynet:tiny_net", "kwargs": {"num_classes": 3}},
            "weights": {"file": weights.name, "sha256": sha256_file(weights)},
            "input": {"size": [16, 16], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
            "labels": {"names": ["red", "green", "blue"]},
        }
        for key, value in overrides.items():
            if value is None:
                card.pop(key, None)
            elif isinstance(value, dict) and isinstance(card.get(key), dict):
                merged = {**card[key], **value}
                card[key] = {k: v for k, v in merged.items() if v is not None}
            else:
                card[key] = value
        path = card_dir / f"{model_id}.toml"
        path.write_text(card_toml(card))
        return path

    return write


@pytest.fixture
def settings_for(tmp_path: Path):
    """Settings with only the given card folders (no demo models) and a temporary data directory."""

    def make(*folders: Path, builtin: bool = False) -> Settings:
        return Settings(data_dir=tmp_path / "data", model_dirs=list(folders), builtin_models=builtin,
                        device="cpu")

    return make


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory):
    """`fovea serve` over real HTTP with the bundled models, which build their demo atlases at first start,
    plus a folder with one broken card. One for the session: the browser tests share its costly first start."""
    from tests.live_server import live_server

    root = tmp_path_factory.mktemp("demo-server")
    broken = root / "cards"
    broken.mkdir()
    (broken / "broken.toml").write_text('id = "broken"\nname = "Broken card"\n[architecture]\n')
    # 400 demo images, not 2,000: the first start's atlases are built in a fifth of the time.
    with live_server(root / "data", "--model-dir", str(broken), env={"FOVEA_DEMO_IMAGES": "400"}) as base:
        yield base
