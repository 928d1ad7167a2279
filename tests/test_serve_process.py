"""What `fovea serve` does to its own process once the app has started: the startup heap is frozen out of the
garbage collector's full collections (each scanned some 400,000 startup objects with the GIL held, 150-200 ms
under load), and the app runs the step only after everything it serves has loaded."""

from __future__ import annotations

import gc
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from app.api.app import create_app
from app.main import freeze_startup_heap


def test_after_start_runs_once_when_the_models_and_atlases_are_loaded(settings_for, card_dir):
    seen = []
    app = create_app(settings_for(card_dir), after_start=lambda: seen.append(
        [hasattr(app.state, name) for name in ("store", "atlases", "uploads", "indexer")]))
    assert seen == []  # nothing at construction
    with TestClient(app) as client:
        assert client.get("/api/health").status_code == 200
    assert seen == [[True] * 4]


def test_freezing_the_heap_takes_every_live_object_out_of_full_collections():
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # pytest, torch and the app alone are far more
        assert len(gc.get_objects(generation=2)) < frozen
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_fovea_serve_freezes_its_heap_after_start(demo_server, tmp_path_factory):
    port = urlsplit(demo_server).port
    logs = list(tmp_path_factory.getbasetemp().glob(f"demo-server[0-9]*/server-{port}.log"))
    assert len(logs) == 1, logs
    assert "startup heap frozen" in logs[0].read_text()
