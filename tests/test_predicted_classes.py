"""Class selectivity on a folder of images without classes: each unit is scored against the classes the model
predicts for them (the same ROC AUC of its spatial maximum, one predicted class against the rest), so that a
user's own unlabelled images still say in words what a unit goes with. The demo's held-out scenes, linked into a
flat folder (no class folders, no concept masks), indexed with shapes-cnn: the stored AUCs equal
scikit-learn's on the brute-force maxima and the model's own predictions; the classes scored are those it
predicted, and those predicted too rarely are named; where the model is right, a unit's best predicted class is
its best class by what the images are; the API, search and summary call them predicted classes; a dataset with
classes keeps its own; the setting turns it off."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.atlas.datasets import scan_folder
from app.atlas.indexer import index_model, make_plan
from app.atlas.reader import Atlas
from app.demo.dataset import write_split
from app.settings import Settings
from app.store.store import load_store
from tests.atlas_helpers import all_activations
from tests.browser import browser, screenshot, watched_page
from tests.conftest import DEMO_MODELS_ONLY, DEMO_MODELS_ONLY_ARGS, WITHOUT_MODEL_WORKER
from tests.live_server import live_server

IMAGES, LAYER = 240, "block4"


def flat_folder(root, count: int):
    """The demo's held-out scenes as one folder of images: no classes (no class folders), no concept masks."""
    write_split(root / "demo", "heldout", count)
    flat = root / "flat"
    flat.mkdir()
    for path in sorted((root / "demo" / "heldout" / "images").glob("*/*.png")):
        (flat / path.name).symlink_to(path)
    return flat


def settings_for(data_dir, **overrides) -> Settings:
    return Settings(data_dir=data_dir, device="cpu", auto_index_demo=False, index_workers=0, **DEMO_MODELS_ONLY,
                    **overrides)


@pytest.fixture(scope="module")
def flat_atlas(tmp_path_factory):
    root = tmp_path_factory.mktemp("predicted-classes")
    dataset = scan_folder(flat_folder(root, IMAGES))
    settings = settings_for(root / "data")
    model = load_store(settings).ready("shapes-cnn")
    atlas = Atlas(index_model(model, dataset, settings, layers=[LAYER], k=5))
    activations, logits = all_activations(model, dataset, [LAYER], settings.index_batch_size)
    # Brute force: each image's maximum of each unit, and the model's top class.
    return settings, model, dataset, atlas, activations[LAYER].max(axis=(2, 3)), logits.argmax(axis=1)


def test_units_are_scored_against_the_predicted_classes_as_scikit_learn_scores_them(flat_atlas):
    from sklearn.metrics import roc_auc_score
    settings, model, dataset, atlas, peaks, predicted = flat_atlas
    assert dataset.classes == [] and make_plan(model, dataset, settings).class_source == "predictions"
    counts = np.bincount(predicted, minlength=len(model.labels))
    enough = np.minimum(counts, IMAGES - counts) >= settings.selectivity_min_class_images
    assert enough.sum() >= 3, counts  # the test means something only with several classes scored

    meta = atlas.meta["dissection"]
    assert meta["class_source"] == "predictions" and meta["layout"] is None
    assert meta["classes"] == [model.labels[c] for c in np.flatnonzero(counts)]  # those predicted, in label order
    assert meta["unscored_classes"] == {model.labels[c]: int(counts[c]) for c in np.flatnonzero(counts & ~enough)}

    rows = atlas.query("SELECT unit, rank, class, auc FROM unit_classes WHERE layer = 0 ORDER BY unit, rank")
    assert {row["unit"] for row in rows} == set(range(peaks.shape[1]))
    for unit in range(peaks.shape[1]):
        expected = {model.labels[c]: roc_auc_score(predicted == c, peaks[:, unit]) for c in np.flatnonzero(enough)}
        stored = [(row["class"], row["auc"]) for row in rows if row["unit"] == unit]
        assert len(stored) == min(3, len(expected))
        for name, auc in stored:
            assert auc == pytest.approx(expected[name], abs=1e-12)
        best = sorted(expected.values(), reverse=True)[:len(stored)]
        assert [auc for _, auc in stored] == pytest.approx(best, abs=1e-12)  # the most selective, best first


def test_where_the_model_is_right_a_units_predicted_classes_are_what_the_images_are(flat_atlas):
    from sklearn.metrics import roc_auc_score
    """shapes-cnn names 99% of these scenes' classes right: a unit's best predicted class is then almost always its
    best class by the images' own classes (the folders the flat folder's links point into), at nearly the same AUC."""
    settings, model, dataset, atlas, peaks, _ = flat_atlas
    truth = np.array([(dataset.root / name).resolve().parent.name for name in dataset.files])
    best = {row["unit"]: (row["class"], row["auc"]) for row in atlas.query(
        "SELECT unit, class, auc FROM unit_classes WHERE layer = 0 AND rank = 0")}
    agree = 0
    for unit, (predicted_class, predicted_auc) in best.items():
        by_truth = {name: roc_auc_score(truth == name, peaks[:, unit]) for name in np.unique(truth)}
        true_class = max(by_truth, key=by_truth.get)
        agree += true_class == predicted_class
        # One image predicted wrong (1 of 240 here) moves a 24-image class's AUC by up to about 1/24.
        assert abs(by_truth[predicted_class] - predicted_auc) < 0.05
    assert agree >= 0.95 * len(best), f"{agree} of {len(best)} units"


def test_the_api_search_and_summary_call_them_predicted_classes(flat_atlas):
    settings, _, dataset, atlas, _, _ = flat_atlas
    square = atlas.query("SELECT unit, auc FROM unit_classes WHERE layer = 0 AND rank = 0 AND class = 'square' "
                         "ORDER BY auc DESC LIMIT 1")[0]  # the unit most selective for the predicted class square
    assert square["auc"] >= settings.selectivity_auc_threshold
    with TestClient(create_app(settings)) as client:
        labels = client.get(f"/api/models/shapes-cnn/layers/{LAYER}/units/{square['unit']}").json()["labels"]
        assert labels["class_source"] == "predictions" and labels["dataset"] == dataset.name
        assert labels["classes"][0] == {"class": "square", "auc": square["auc"]}
        assert labels["description"] == f"top predicted class square, AUC {square['auc']:.2f}"

        chips = client.get(f"/api/models/shapes-cnn/layers/{LAYER}/units").json()
        chip = next(u["label"] for u in chips["units"] if u["unit"] == square["unit"])
        assert (chip["id"], chip["category"]) == ("class:square", "predicted class")

        summary = client.get("/api/models/shapes-cnn/concepts").json()
        assert summary["class_source"] == "predictions" and summary["categories"] == []
        assert "square" in {c["class"] for c in summary["layers"][0]["selective_classes"]}

        found = client.get("/api/search", params={"q": "predicted square", "model": "shapes-cnn"}).json()
        hit = next(h for h in found["results"] if h["unit"] == square["unit"])
        assert hit["field"] == "class" and hit["text"] == "predicted class square"
        listed = client.get("/api/search", params={"class": "square", "model": "shapes-cnn"}).json()
        assert square["unit"] in {h["unit"] for h in listed["results"]}
        assert {h["field"] for h in listed["results"]} == {"class"}


def test_a_dataset_with_classes_keeps_its_own_and_the_setting_turns_predictions_off(tmp_path):
    settings = settings_for(tmp_path / "data")
    model = load_store(settings).ready("shapes-cnn")
    write_split(tmp_path / "labelled", "heldout", 12)
    labelled = scan_folder(tmp_path / "labelled" / "heldout" / "images")
    assert make_plan(model, labelled, settings).class_source == "labels"

    flat = scan_folder(flat_folder(tmp_path, 12))
    off = settings_for(tmp_path / "data", predicted_class_selectivity=False)
    plan = make_plan(model, flat, off)
    assert plan.class_source is None and plan.identity()["class_source"] is None
    atlas = Atlas(index_model(model, flat, off, layers=[LAYER], k=2))
    assert atlas.meta["dissection"] is None  # no labels at all, as before predictions were scored


@pytest.mark.browser
def test_the_unit_page_and_the_concepts_page_say_the_classes_are_the_models_predictions(flat_atlas):
    settings, _, dataset, atlas, _, _ = flat_atlas
    best = atlas.query("SELECT unit FROM unit_classes WHERE layer = 0 AND rank = 0 ORDER BY auc DESC LIMIT 1")
    unit = best[0]["unit"]
    environment = {"FOVEA_AUTO_INDEX_DEMO": "false", "FOVEA_AUTO_VISUALIZE_DEMO": "false", **WITHOUT_MODEL_WORKER}
    with live_server(settings.data_dir, *DEMO_MODELS_ONLY_ARGS, env=environment) as base, browser() as chromium:
        page = watched_page(chromium)
        page.goto(f"{base}/m/shapes-cnn/{LAYER}/{unit}?dataset={dataset.name}")
        panel = page.locator(".concept-labels")
        panel.get_by_role("heading", name="Predicted-class selectivity").wait_for()
        assert "not what the images are" in panel.inner_text()
        assert "Most selective predicted classes" in panel.inner_text()
        header = page.locator(".unit-labels").inner_text()
        assert "predicted class" in header and "top predicted class" in header
        screenshot(page, "unit-predicted-classes-1280")

        page.goto(f"{base}/m/shapes-cnn/concepts?dataset={dataset.name}")
        page.get_by_role("heading", name="Predicted-class selectivity, per layer").wait_for()
        assert "classes the model predicted" in page.locator(".page-head").inner_text()
        screenshot(page, "concepts-predicted-classes-1280")
        assert page.errors == []
