"""A unit's feature visualisation over HTTP: rendered on request when none is stored for the settings, then
kept (the second answer is the same bytes, with no rendering); its JSON names the settings, the activation
reached and the dataset's best; limits are settings and a bad request is a 4xx naming the problem."""

from __future__ import annotations

import io
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.app import create_app
from app.atlas.visualize import render_precision
from app.errors import RequestCancelled
from tests.atlas_helpers import small_atlas
from tests.test_api import assert_error

BASE = "/api/models/shapes-cnn/layers/block3/units"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings, _, _, atlas = small_atlas(tmp_path_factory.mktemp("visualization"), 12, ["block3"], 2)
    settings = settings.model_copy(update={"visualization_steps": 4, "visualization_max_steps": 50,
                                           "visualization_max_size": 64})
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_visualisation_is_rendered_on_request_then_kept(client, monkeypatch):
    body = client.get(f"{BASE}/7/visualization", params={"size": 32}).json()
    assert (body["unit"], body["steps"], body["size"], body["seed"], body["param"]) == (7, 4, 32, 0, "fft")
    precision = render_precision("auto", client.app.state.store.ready("shapes-cnn"))  # the setting's default
    assert body["precision"] == precision and ("-bf16" in body["variant"]) == (precision == "bfloat16")
    assert body["dataset_best"] > 0 and isinstance(body["activation"], float)
    assert body["colors"].startswith("12 images of dataset 'images-") and "-prior" in body["variant"]  # the atlas's
    png = client.get(body["png"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (32, 32)

    import app.atlas.visualize as job  # kept: a second ask renders nothing
    monkeypatch.setattr(job, "render", lambda *a, **k: pytest.fail("rendered again"))
    assert client.get(body["png"]).content == png.content
    assert client.get(f"{BASE}/7/visualization", params={"size": 32}).json() == body


def test_maco_renders_with_the_magnitude_spectrum_of_the_atlas_images(client):
    body = client.get(f"{BASE}/3/visualization", params={"size": 32, "param": "maco"}).json()
    assert body["param"] == "maco" and body["variant"].startswith("maco-32x32-4steps-lr1-")
    assert "param=maco" in body["png"] and client.get(body["png"]).status_code == 200
    fft = client.get(f"{BASE}/3/visualization", params={"size": 32}).json()
    assert fft["png"] != body["png"] and fft["variant"] != body["variant"]


def test_render_false_answers_only_what_is_stored(client):
    """Thumbnails ask with render=false: a 404 naming the way to render, never an optimisation."""
    missing = client.get(f"{BASE}/11/visualization.png", params={"size": 32, "render": "false"})
    assert_error(missing, 404, "not_found", "render=false")
    client.get(f"{BASE}/11/visualization.png", params={"size": 32})
    stored = client.get(f"{BASE}/11/visualization.png", params={"size": 32, "render": "false"})
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/png"


def test_the_image_page_s_strip_knows_which_visualisations_are_stored(client):
    """The units that fire on an image say whether their visualisation at the page's settings is stored, so the
    strip asks only for those (a thumbnail asked for and missing is a 404 in the browser's console)."""
    settings = client.app.state.settings.model_copy(update={"visualization_max_size": 112})  # the model's input
    with TestClient(create_app(settings)) as served:
        _strip_visualisations(served)
    # Where the page's size is over the visualization_max_size setting, none can be asked for, stored or not.
    dataset = client.get("/api/models/shapes-cnn/atlases").json()["atlases"][0]["dataset"]
    units = client.get(f"/api/images/{dataset}:3/units", params={"model": "shapes-cnn", "layer": "block3",
                                                                 "maps": True, "limit": 12}).json()["units"]
    assert not any(row["visualized"] for row in units)


def _strip_visualisations(client):
    dataset = client.get("/api/models/shapes-cnn/atlases").json()["atlases"][0]["dataset"]
    params = {"model": "shapes-cnn", "layer": "block3", "maps": True, "limit": 12}
    path = f"/api/images/{dataset}:3/units"
    before = client.get(path, params=params).json()["units"]
    unit = next(row["unit"] for row in before if not row["visualized"])
    assert client.get(f"{BASE}/{unit}/visualization.png").status_code == 200  # rendered at the page's settings
    after = {row["unit"]: row["visualized"] for row in client.get(path, params=params).json()["units"]}
    assert after[unit] and all(after[row["unit"]] for row in before if row["visualized"])
    for shown in (u for u, visualized in after.items() if visualized):
        assert client.get(f"{BASE}/{shown}/visualization.png", params={"render": "false"}).status_code == 200
    for missing in (u for u, visualized in after.items() if not visualized):
        assert client.get(f"{BASE}/{missing}/visualization.png", params={"render": "false"}).status_code == 404
    assert "visualized" not in client.get(path, params={**params, "maps": False}).json()["units"][0]


def test_the_negative_image_is_its_own_image(client):
    positive = client.get(f"{BASE}/5/visualization", params={"size": 32}).json()
    negative = client.get(f"{BASE}/5/visualization", params={"size": 32, "negative": "true"}).json()
    assert negative["negative"] is True and positive["negative"] is False
    assert negative["variant"] == positive["variant"] + "-negative" and negative["png"].endswith("&negative=true")
    assert negative["activation"] <= positive["activation"]
    assert client.get(negative["png"]).content != client.get(positive["png"]).content


def test_facets_cluster_the_top_images_and_each_has_an_image(client):
    body = client.get(f"{BASE}/9/visualization/facets", params={"size": 32, "facets": 2}).json()
    assert body["asked"] == 2 and 1 <= len(body["facets"]) <= 2 and body["dataset"].startswith("images-")
    ranks = sorted(member["rank"] for facet in body["facets"] for member in facet["members"])
    assert ranks == [0, 1]  # the atlas keeps 2 top images per unit: each in one facet
    assert body["facets"][0]["members"][0]["image"].startswith(body["dataset"] + ":")
    for facet in body["facets"]:
        png = client.get(facet["png"])
        assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (32, 32)
    beyond = client.get(f"{BASE}/9/visualization/facets/{len(body['facets'])}.png", params={"size": 32, "facets": 2})
    assert_error(beyond, 404, "not_found", "facets")
    assert_error(client.get(f"{BASE}/9/visualization/facets", params={"size": 32, "facets": 9}), 422, "invalid_input",
                 "visualization_max_facets")


@pytest.mark.parametrize(("params", "status", "words"), [
    ({"param": "pixels"}, 422, "param"), ({"negative": "maybe"}, 422, "negative"), ({"facets": 0}, 422, "facets"),
    ({"steps": 51}, 422, "visualization_max_steps"), ({"size": 65}, 422, "visualization_max_size"),
    ({"size": 8}, 422, "size"), ({"steps": 0}, 422, "steps"), ({"seed": -1}, 422, "seed")])
def test_bad_requests_name_the_problem(client, params, status, words):
    route = "visualization/facets" if "facets" in params else "visualization"
    params = {"size": 32, **params}  # within the limits unless the case is about them
    assert_error(client.get(f"{BASE}/1/{route}", params=params), status, "invalid_input", words)


def test_a_unit_outside_the_layer_is_a_404(client):
    assert_error(client.get(f"{BASE}/96/visualization.png"), 404, "not_found", "0 to 95")


# -- several units asked for at once render as one batch (app/studio/model_calls.py) ----------------------

def test_units_asked_for_at_once_render_as_one_batch_which_is_what_fovea_visualize_renders(client, tmp_path):
    """A layer grid's cells, or several users: 5 requests at once for 4 units of the layer (one unit twice) are
    one batch of 4 units, the unit asked for twice rendered once; each image is the one `fovea visualize`
    renders in a batch of those 4 units, byte for byte. With visualization_batch_max_size 1 each renders alone,
    as `fovea visualize --batch 1` does. (A unit's image alone and in a batch agree to the rounding of kernels
    chosen by batch size, which a sensitive optimisation can carry further: tests/test_featurevis.py.)"""
    from app.atlas.annotations import FEATURE_VISUALISATION, Annotations
    from app.atlas.image_prior import render_prior
    from app.atlas.visualize import default_render_settings, render_scope, variant, visualize_layer

    units, model = [20, 21, 22, 23, 23], client.app.state.store.ready("shapes-cnn")
    for batch in (len(units), 1):
        served_dir, direct_dir = tmp_path / f"served-{batch}", tmp_path / f"direct-{batch}"
        shutil.copytree(client.app.state.settings.data_dir, served_dir)
        settings = client.app.state.settings.model_copy(update={
            "data_dir": served_dir, "visualization_batch_max_size": batch,
            "visualization_batch_window_ms": 5000})  # a full batch starts at once, without the window
        with TestClient(create_app(settings)) as served, ThreadPoolExecutor(len(units)) as pool:
            answers = list(pool.map(lambda unit: served.get(f"{BASE}/{unit}/visualization.png", params={"size": 48}),
                                    units))
            prior = render_prior(served.app.state.atlases, model, (48, 48), "fft")
        sizes = [answer.headers.get("fovea-batch-size") for answer in answers]
        # The unit asked for twice: its second request may find the image its twin stored (no rendering: no header).
        assert sizes[:4] == [str(batch)] * 4 and sizes[4] in (str(batch), None), sizes
        render_settings = replace(default_render_settings(settings, model, prior), size=(48, 48))
        visualize_layer(model, "block3", direct_dir, render_settings, units=sorted(set(units)), batch_size=batch)
        direct = Annotations(direct_dir, model.id, FEATURE_VISUALISATION)
        assert [answer.content for answer in answers] == [
            direct.read(render_scope(model), "block3", unit, variant(render_settings)) for unit in units]


def _render_calls(client, tmp_path, checkpoints: list) -> tuple[list, list[list], set[int]]:
    """ModelCalls.render of units 30, 31, ... at once, one call a checkpoint: each call's outcome (its batch
    size, or what it raised), the steps its progress heard, and the units stored."""
    from app.atlas.annotations import FEATURE_VISUALISATION, Annotations
    from app.atlas.visualize import Target, page_render_settings, render_scope, variant
    from app.studio.model_calls import ModelCalls

    settings = client.app.state.settings.model_copy(update={
        "data_dir": tmp_path, "visualization_batch_max_size": len(checkpoints), "visualization_batch_window_ms": 5000})
    calls, model = ModelCalls(settings), client.app.state.store.ready("shapes-cnn")
    render_settings = replace(page_render_settings(settings, client.app.state.atlases, model), steps=4,
                              size=(32, 32))
    heard = [[] for _ in checkpoints]

    def call(i: int):
        try:
            return calls.render(model, Target("block3"), tmp_path, render_settings, 30 + i, False,
                                lambda done, total: heard[i].append((done, total)), checkpoints[i]).size
        except RequestCancelled as error:
            return error

    with ThreadPoolExecutor(len(checkpoints)) as pool:
        outcomes = list(pool.map(call, range(len(checkpoints))))
    stored = Annotations(tmp_path, model.id, FEATURE_VISUALISATION).done(render_scope(model), "block3",
                                                                          variant(render_settings))
    return outcomes, heard, stored


def test_a_batch_goes_on_for_the_clients_still_there_and_stops_when_all_have_gone(client, tmp_path):
    def gone_after(steps: int):
        seen = []

        def checkpoint():
            seen.append(1)
            if len(seen) > steps:
                raise RequestCancelled("the client closed the connection")
        return checkpoint

    outcomes, heard, stored = _render_calls(client, tmp_path / "one-gone", [lambda: None, gone_after(2)])
    assert outcomes == [2, 2] and heard[0] == heard[1] == [(step, 4) for step in range(1, 5)]
    assert stored == {30, 31}  # the gone client's unit is kept too

    outcomes, heard, stored = _render_calls(client, tmp_path / "all-gone", [gone_after(2), gone_after(3)])
    assert all(isinstance(outcome, RequestCancelled) for outcome in outcomes), outcomes
    assert stored == set() and heard[0] == heard[1] == [(step, 4) for step in range(1, 3)]  # stopped at step 3



def test_a_layer_s_units_say_which_visualisations_a_grid_can_load_at_once(client):
    """`visualized=true`: the listed units whose image at a page's settings (no steps, size or seed named) is
    stored; the grid loads those at once and queues the others' renderings, so that those render together."""
    path = "/api/models/shapes-cnn/layers/block3/units"
    assert client.get(path, params={"limit": 12, "visualized": True}).json()["visualized"] == []  # 112 px > 64
    settings = client.app.state.settings.model_copy(update={"visualization_max_size": 112})  # the model's input
    with TestClient(create_app(settings)) as served:
        before = served.get(path, params={"limit": 12, "visualized": True}).json()["visualized"]
        assert 2 not in before and "visualized" not in served.get(path, params={"limit": 12}).json()
        assert served.get(f"{BASE}/2/visualization.png").status_code == 200  # rendered at the page's settings
        after = served.get(path, params={"limit": 12, "visualized": True}).json()["visualized"]
        assert sorted(after) == sorted({*before, 2}) and all(unit < 12 for unit in after)
        assert 2 not in served.get(path, params={"offset": 12, "limit": 12, "visualized": True}).json()["visualized"]
