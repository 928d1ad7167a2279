"""A model with atlases on two datasets: a link that names no dataset keeps showing the first one built,
every answer names its dataset, and a layer indexed only in the other atlas says where it is."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.atlas.datasets import scan_folder
from app.atlas.indexer import index_model
from app.settings import Settings
from app.store.store import load_store
from tests.atlas_helpers import two_datasets
from tests.conftest import DEMO_MODELS_ONLY
from tests.test_api import assert_error

BASE = "/api/models/shapes-cnn"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-datasets")
    settings = Settings(data_dir=root / "data", device="cpu", index_workers=0, auto_index_demo=False,
                        **DEMO_MODELS_ONLY)
    two_datasets(root)
    model = load_store(settings).ready("shapes-cnn")

    def build(name: str, layers: list[str]) -> None:
        index_model(model, scan_folder(root / name, name=name), settings, layers=layers, k=3)

    return settings, build


def test_links_keep_their_dataset_when_another_atlas_is_built(world):
    settings, build = world
    build("alpha", ["block3", "block4"])
    with TestClient(create_app(settings)) as client:
        before = client.get(f"{BASE}/layers/block4/units/5").json()
        assert before["dataset"] == "alpha"
        assert before["page"] == "/m/shapes-cnn/block4/5?dataset=alpha"
        assert all(s["page"].endswith("?dataset=alpha") for s in before["similar"])
        grid = client.get(f"{BASE}/layers/block4/units", params={"limit": 2}).json()
        assert grid["dataset"] == "alpha" and grid["units"][0]["page"] == "/m/shapes-cnn/block4/0?dataset=alpha"

    time.sleep(1.1)  # atlases are ordered by when they were first built, to the second
    build("beta", ["block2", "block4"])
    with TestClient(create_app(settings)) as client:
        # The newer atlas does not take over what a link without ?dataset= shows.
        after = client.get(f"{BASE}/layers/block4/units/5").json()
        assert after["dataset"] == "alpha" and after["top"] == before["top"]
        assert client.get(f"{BASE}/layers/block3/units/0").json()["dataset"] == "alpha"
        beta = client.get(f"{BASE}/layers/block4/units/5", params={"dataset": "beta"}).json()
        assert beta["dataset"] == "beta" and beta["page"] == "/m/shapes-cnn/block4/5?dataset=beta"
        assert all(t["url"].startswith("/api/datasets/beta/") for t in beta["top"])
        # A layer only the other atlas has: reachable with its dataset, and the 404 without it says where.
        assert client.get(f"{BASE}/layers/block2/units/0", params={"dataset": "beta"}).status_code == 200
        missing = client.get(f"{BASE}/layers/block2/units/0")
        assert_error(missing, 404, "layer_not_found", "indexed in the 'beta' atlas: ask with ?dataset=beta")
        assert missing.json()["error"]["detail"]["datasets"] == ["beta"]
        assert client.get(f"{BASE}/layers/block3/units/0", params={"dataset": "alpha"}).status_code == 200
        assert_error(client.get(f"{BASE}/layers/block3/units", params={"dataset": "beta"}), 404,
                     "layer_not_found", "?dataset=alpha")
        atlases = client.get(f"{BASE}/atlases").json()["atlases"]
        assert [(a["dataset"], a["default"]) for a in atlases] == [("alpha", True), ("beta", False)]

    time.sleep(1.1)
    build("alpha", ["block3", "block4"])  # a rebuild keeps alpha's place as the first atlas
    with TestClient(create_app(settings)) as client:
        assert client.get(f"{BASE}/layers/block4/units/5").json()["dataset"] == "alpha"
