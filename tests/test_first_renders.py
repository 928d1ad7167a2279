"""First start renders the demo models' default layers in the background once their demo atlas exists, with
the settings a page asks for by default: a page then finds the image stored and renders nothing."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.atlas.first_renders import BackgroundRenderer, start_first_run_rendering
from app.atlas.registry import AtlasRegistry
from app.settings import Settings
from app.store.store import load_store
from tests.conftest import DEMO_MODELS_ONLY, copy_demo_atlas


def test_the_default_layers_are_rendered_in_the_background_and_pages_find_them(shared_demo_atlas, tmp_path,
                                                                               monkeypatch):
    root = copy_demo_atlas(shared_demo_atlas, tmp_path)
    settings = Settings(data_dir=root / "data", device="cpu", auto_index_demo=False, auto_visualize_demo=True,
                        visualization_steps=2, **DEMO_MODELS_ONLY)
    store, atlases = load_store(settings), AtlasRegistry(settings.data_dir)
    renderer = start_first_run_rendering(store, atlases, settings)
    assert isinstance(renderer, BackgroundRenderer)
    assert list(renderer.status) == ["shapes-cnn"]  # shapes-mobilenet has no demo atlas here, nor one coming
    status = renderer.status["shapes-cnn"]
    try:
        deadline = time.monotonic() + 120
        while not (status.layer == "block1" or status.state == "done") and time.monotonic() < deadline:
            assert status.state != "failed"
            time.sleep(0.1)
    finally:
        renderer.stop()
    assert status.layer in ("block1", "block2.2") or status.state == "done", status

    import app.atlas.visualize as job  # stem's 24 units are stored as a page asks for them: nothing renders
    monkeypatch.setattr(job, "render", lambda *a, **k: pytest.fail("rendered on request"))
    with TestClient(create_app(settings.model_copy(update={"auto_visualize_demo": False}))) as client:
        for unit in (0, 23):
            body = client.get(f"/api/models/shapes-cnn/layers/stem/units/{unit}/visualization")
            assert body.status_code == 200 and body.json()["steps"] == 2


def test_no_renderer_without_the_setting_or_a_demo_atlas(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", device="cpu", auto_index_demo=False, auto_visualize_demo=True,
                        **DEMO_MODELS_ONLY)
    store, atlases = load_store(settings), AtlasRegistry(settings.data_dir)
    assert start_first_run_rendering(store, atlases, settings) is None  # no atlas, none being built
    off = settings.model_copy(update={"auto_visualize_demo": False, "auto_index_demo": True})
    assert start_first_run_rendering(store, atlases, off) is None


def test_the_atlases_answer_says_where_the_background_rendering_is(shared_demo_atlas, tmp_path):
    root = copy_demo_atlas(shared_demo_atlas, tmp_path)
    settings = Settings(data_dir=root / "data", device="cpu", auto_index_demo=False, auto_visualize_demo=True,
                        visualization_steps=2, **DEMO_MODELS_ONLY)
    with TestClient(create_app(settings)) as client:
        rendering = client.get("/api/models/shapes-cnn/atlases").json()["rendering"]
        assert rendering["model"] == "shapes-cnn" and rendering["state"] in ("waiting", "rendering", "done")
        assert set(rendering) == {"model", "layer", "state", "done", "total"}
        assert client.get("/api/models/shapes-mobilenet/atlases").json()["rendering"] is None  # no demo atlas
