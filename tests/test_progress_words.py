"""A followed request's progress in words, as the server says it (`note` of /api/progress/{token}; the front
end shows it as it is): waiting, a perturbation method's batches by the method's own count, scoring; quick
steps say nothing. And /api/methods says what each method costs, in words, and which ones pages open with."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.api.app import create_app
from app.engine.cam import METHODS
from app.engine.cam.registry import DEFAULT_METHODS
from app.settings import Settings
from app.studio.progress import RequestProgress, describe_task


def test_each_task_in_words():
    assert describe_task("waiting", 0, 0) == "waiting for the model (another request is using it)"
    assert describe_task("scorecam", 128, 500) == "Score-CAM: 128 of 500 masked images"
    assert describe_task("ablationcam", 64, 1920) == "Ablation-CAM: 64 of 1,920 channels ablated"
    assert describe_task("scoring", 1024, 25092) == "1,024 of 25,092 images"
    for quick in (("maps", 0, 0), ("scoring", 0, 0), ("starting", 0, 0), ("an-unknown-task", 1, 2),
                  ("gradcam", 0, 0)):
        assert describe_task(*quick) == "", quick


def test_a_snapshot_carries_its_words():
    progress = RequestProgress()
    progress("scorecam", 3, 40)
    snapshot = progress.snapshot()
    assert (snapshot["task"], snapshot["note"]) == ("scorecam", "Score-CAM: 3 of 40 masked images")


def test_methods_say_what_they_cost_and_which_ones_pages_open_with(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", device="cpu", auto_index_demo=False, builtin_models=False)
    with TestClient(create_app(settings)) as client:
        methods = {m["id"]: m for m in client.get("/api/methods").json()["methods"]}
    assert list(methods) == list(METHODS)
    assert [m for m in methods if methods[m]["default"]] == list(DEFAULT_METHODS)
    assert (methods["scorecam"]["reruns"], methods["scorecam"]["counts"]) == ("the whole model", "masked images")
    assert methods["ablationcam"]["reruns"] == "the layers after the explained layer"
    assert methods["ablationcam"]["counts"] == "channels ablated"
    assert all(methods[m]["reruns"] is None and methods[m]["counts"] is None for m in methods
               if METHODS[m].extra_forwards == "none")
