"""`fovea visualize`: whole layers rendered into the `feature-visualisation` annotations (scoped to the
weights, the render settings as the variant), served by the annotation route; a run killed part-way resumes
from the units it finished and ends with the same images, byte for byte, as an uninterrupted run."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.api.app import create_app
from app.atlas.annotations import FEATURE_VISUALISATION, Annotations, scope_of
from app.atlas.visualize import render_precision, variant, visualize_layer
from app.engine.featurevis.render import RenderSettings
from app.engine.probe import layer_output
from app.settings import Settings
from app.store.store import load_store
from tests.atlas_helpers import small_atlas
from tests.conftest import DEMO_MODELS_ONLY, DEMO_MODELS_ONLY_ARGS

QUICK = RenderSettings(steps=3, size=(32, 32))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("fv-model"), device="cpu", **DEMO_MODELS_ONLY)
    return load_store(settings).ready("shapes-cnn")


def stored(data_dir, model, layer: str, settings: RenderSettings) -> dict[int, bytes]:
    store = Annotations(data_dir, model.id, FEATURE_VISUALISATION)
    scope = scope_of(FEATURE_VISUALISATION, model.weights_sha256, None)
    name = variant(settings)
    return {unit: store.read(scope, layer, unit, name) for unit in store.done(scope, layer, name)}


def test_a_layer_is_rendered_into_the_annotations_and_served(model, tmp_path):
    steps = []
    rendered = visualize_layer(model, "block2", tmp_path, QUICK, units=[0, 5, 9], batch_size=2,
                               progress=lambda done, total: steps.append((done, total)))
    assert rendered == [0, 5, 9] and steps == [(0, 3), (2, 3), (3, 3)]
    images = stored(tmp_path, model, "block2", QUICK)
    picture = Image.open(io.BytesIO(images[5]))
    assert picture.size == (32, 32) and picture.mode == "RGB"
    assert picture.text["settings"] == variant(QUICK)
    # The activation it reached, recorded with it: what the stored image (8 bits a channel) still gives.
    pixels = torch.from_numpy(numpy.array(picture)).permute(2, 0, 1).float().unsqueeze(0) / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (model.preprocessing.mean, model.preprocessing.std))
    again = layer_output(model.module, "block2", model.as_input((pixels - mean) / std))[0, 5].mean()
    assert float(picture.text["activation"]) == pytest.approx(float(again), rel=0.05, abs=1e-3)
    assert visualize_layer(model, "block2", tmp_path, QUICK, units=[0, 5, 9]) == []  # all there: nothing to do
    settings = Settings(data_dir=tmp_path, device="cpu", auto_index_demo=False, **DEMO_MODELS_ONLY)
    with TestClient(create_app(settings)) as client:
        listed = client.get("/api/annotations").json()["kinds"]
        assert [k["name"] for k in listed] == ["feature-visualisation"]
        # Scoped to the weights: served with no atlas built.
        base = "/api/models/shapes-cnn/layers/block2/units"
        answer = client.get(f"{base}/5/annotations/feature-visualisation", params={"variant": variant(QUICK)})
        assert answer.status_code == 200 and answer.content == images[5]
        assert answer.headers["content-type"] == "image/png"
        missing = client.get(f"{base}/6/annotations/feature-visualisation", params={"variant": variant(QUICK)})
        assert missing.status_code == 404 and "block2:6" in missing.json()["error"]["message"]
        assert client.get(f"{base}/48/annotations/feature-visualisation").status_code == 404  # 48 channels


def test_units_outside_the_layer_are_refused(model, tmp_path):
    from app.errors import InvalidInput

    with pytest.raises(InvalidInput, match="units 0 to 47"):
        visualize_layer(model, "block2", tmp_path, QUICK, units=[3, 48])


def test_a_killed_run_resumes_to_the_images_of_an_uninterrupted_one(model, tmp_path):
    """The CLI, killed (SIGKILL) once its first batch of two is stored, then run again to the end."""
    units = ["0", "1", "2", "3", "4", "5"]
    command = [sys.executable, "-m", "app", "visualize", "shapes-cnn", "--layers", "block3", "--units", *units,
               "--steps", "3", "--size", "32", "--batch", "2", *DEMO_MODELS_ONLY_ARGS, "--device", "cpu"]
    killed = tmp_path / "killed"
    # The first batch's write ends the process from inside (as a kill -9 would, with no clean-up).
    hook = ("import os, signal, app.atlas.annotations as a; w = a.Annotations.write\n"
            "def write(self, scope, rows):\n n = w(self, scope, rows); os.kill(os.getpid(), signal.SIGKILL)\n"
            "a.Annotations.write = write\n")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(hook)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hook"), "FOVEA_DATA_DIR": str(killed)}
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr
    # The command's precision by default: bfloat16 where the CPU computes it natively.
    settings = RenderSettings(steps=3, size=(32, 32), precision=render_precision("auto", model))
    assert sorted(stored(killed, model, "block3", settings)) == [0, 1]  # one batch stored, the rest not
    env = {**os.environ, "FOVEA_DATA_DIR": str(killed)}
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "2/6 units" in resumed.stderr.replace("\r", "\n")  # it started from the stored batch
    whole = tmp_path / "whole"  # uninterrupted, in this process: the same function the command runs
    visualize_layer(model, "block3", whole, settings, units=[int(u) for u in units], batch_size=2)
    assert stored(killed, model, "block3", settings) == stored(whole, model, "block3", settings)
    assert len(stored(whole, model, "block3", settings)) == 6


def test_a_rendering_stopped_by_its_checkpoint_stores_nothing(model, tmp_path):
    """What a request whose client went away does (app/api/disconnect.py): the next step raises."""
    from app.errors import RequestCancelled

    steps = []

    def checkpoint():
        steps.append(1)
        if len(steps) == 2:
            raise RequestCancelled("the client closed the connection")

    with pytest.raises(RequestCancelled):
        visualize_layer(model, "block2", tmp_path, QUICK, units=[1], batch_size=1, checkpoint=checkpoint)
    assert stored(tmp_path, model, "block2", QUICK) == {} and lock_is_free(model)


def lock_is_free(model) -> bool:
    """Whether another thread can take the model's lock (it is reentrant: this thread always could)."""
    def take() -> bool:
        taken = model.lock.acquire(blocking=False)
        if taken:
            model.lock.release()
        return taken

    with ThreadPoolExecutor(1) as other:
        return other.submit(take).result()


def test_the_prior_comes_from_the_atlas_and_maco_needs_one(tmp_path):
    """Without an atlas, Fourier images use Lucid's ImageNet colours and MACO is refused with the command
    that makes an atlas; with one, both use its images' statistics, and the variant names them."""
    from app.atlas.image_prior import render_prior
    from app.atlas.registry import AtlasRegistry
    from app.engine.featurevis.prior import LUCID
    from app.errors import InvalidInput

    settings, model, _, atlas = small_atlas(tmp_path, 8, ["block2"], 2)
    empty = AtlasRegistry(tmp_path / "elsewhere")
    assert render_prior(empty, model, (32, 32), "fft") is LUCID
    with pytest.raises(InvalidInput, match="fovea index shapes-cnn"):
        render_prior(empty, model, (32, 32), "maco")
    prior = render_prior(AtlasRegistry(settings.data_dir), model, (32, 32), "maco")
    assert prior.magnitude.shape == (3, 32, 17) and prior.source == f"8 images of dataset {atlas.dataset!r}"
    assert f"-prior{prior.digest}-" in variant(RenderSettings(size=(32, 32), prior=prior))
    assert "-prior" not in variant(RenderSettings(size=(32, 32), param="pixels", prior=prior))


def test_facets_partition_the_top_images_and_start_from_their_mean(tmp_path):
    """Every top image is in exactly one facet (the top image's first); with no steps a facet's image is the
    mean of its images as the model sees them; stored, a second ask renders nothing."""
    import json

    from app.atlas.visualize import visualize_facets

    settings, model, _, atlas = small_atlas(tmp_path, 16, ["block2"], 6)
    still = RenderSettings(steps=0, size=(112, 112))
    facets = visualize_facets(model, atlas, "block2", 4, 3, settings.data_dir, still)
    assert 1 <= len(facets) <= 3 and 0 in facets[0].members
    assert sorted(rank for facet in facets for rank in facet.members) == list(range(6))
    rows = atlas.top_images(atlas.layer("block2"), 4)
    for facet in facets:
        picture = Image.open(io.BytesIO(facet.png))
        assert json.loads(picture.text["members"]) == facet.members
        views = [numpy.asarray(model.preprocessing.view(atlas.load_image(rows[rank]["image"])), dtype=float)
                 for rank in facet.members]
        mean = numpy.clip(numpy.mean(views, axis=0), 0.02 * 255, 0.98 * 255)
        assert numpy.abs(numpy.asarray(picture, dtype=float) - mean).max() <= 1.01  # PNG rounding
    again = visualize_facets(model, atlas, "block2", 4, 3, settings.data_dir, still)
    assert [facet.png for facet in again] == [facet.png for facet in facets]


def test_the_negative_image_is_stored_beside_the_positive_one(model, tmp_path):
    visualize_layer(model, "block2", tmp_path, QUICK, units=[2], negative=True)
    store = Annotations(tmp_path, model.id, FEATURE_VISUALISATION)
    scope = scope_of(FEATURE_VISUALISATION, model.weights_sha256, None)
    assert variant(QUICK, negative=True) == variant(QUICK) + "-negative"
    assert store.done(scope, "block2", variant(QUICK, negative=True)) == {2}
    assert store.done(scope, "block2", variant(QUICK)) == set()


def test_the_command_renders_facets_with_the_pages_default_settings(tmp_path, monkeypatch):
    """`fovea visualize --facets F` stores each unit's image and its facets under the variants a page reads
    by default (the visualization_steps setting, the model's input size, the atlas's colours)."""
    from app.atlas.image_prior import render_prior
    from app.atlas.registry import AtlasRegistry
    from app.atlas.visualize import default_render_settings, facet_variant
    from app.cli import main

    settings, model, _, atlas = small_atlas(tmp_path, 8, ["block2"], 4)
    monkeypatch.setenv("FOVEA_VISUALIZATION_STEPS", "3")
    code = main(["visualize", "shapes-cnn", "--layers", "block2", "--units", "1", "--facets", "2",
                 "--data-dir", str(settings.data_dir), *DEMO_MODELS_ONLY_ARGS])
    assert code == 0
    paged = default_render_settings(Settings(), model, render_prior(  # what a page asks for, in this environment
        AtlasRegistry(settings.data_dir), model, model.preprocessing.size, "fft"))
    assert paged.steps == 3
    store = Annotations(settings.data_dir, model.id, FEATURE_VISUALISATION)
    scope = scope_of(FEATURE_VISUALISATION, model.weights_sha256, None)
    assert store.done(scope, "block2", variant(paged)) == {1}
    assert store.read(scope, "block2", 1, facet_variant(paged, atlas.dataset, 2, 0)) is not None


def test_auto_precision_is_bfloat16_only_where_it_runs_the_model_faster(model, monkeypatch):
    """Native bfloat16 on the CPU, and no grouped (depthwise) convolution in the model, whose bfloat16 kernels
    are slower than float32's."""
    depthwise = SimpleNamespace(device=torch.device("cpu"), module=torch.nn.Conv2d(8, 8, 3, groups=8))
    for native in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda native=native: native)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        assert render_precision("auto", model) == ("bfloat16" if native else "float32")  # shapes-cnn: dense
        assert render_precision("auto", depthwise) == "float32"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a torch without the probes
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert render_precision("auto", model) == "float32"
    assert render_precision("float32", model) == "float32" and render_precision("bfloat16", depthwise) == "bfloat16"
    # Stored under their own names; float32's are the names of before the setting.
    assert variant(RenderSettings(precision="bfloat16")).endswith("-seed0-bf16")
    assert variant(RenderSettings()).endswith("-seed0")
