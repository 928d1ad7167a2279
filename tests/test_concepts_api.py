"""The concept routes (issue 17): labels in unit answers and grids, search ranking, paging and filters, bad
queries answered with a 4xx, the concepts summary (concept labels and class selectivity), concept masks, and
notes (refused when read-only)."""

from __future__ import annotations

import io
import re
import shutil
import sqlite3

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.app import create_app
from app.atlas.concepts import open_concepts
from app.atlas.concepts.demo import CONCEPTS
from app.atlas.datasets import scan_folder
from app.atlas.indexer import index_model
from app.atlas.notes import Notes
from app.atlas.search import Document, TokenIndex, rank, tokens
from app.demo.dataset import write_split
from tests.atlas_helpers import small_atlas, two_datasets


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    settings, model, dataset, atlas = small_atlas(root, images=60, layers=["block3", "block4"], k=4)
    return settings, atlas


def client(settings, **overrides):
    return TestClient(create_app(settings.model_copy(update=overrides)), base_url="http://127.0.0.1")


def test_a_unit_answer_carries_its_labels_and_the_grid_its_label_chips(labelled):
    settings, atlas = labelled
    with client(settings) as api:
        grid = api.get("/api/models/shapes-cnn/layers/block4/units").json()
        chips = {u["unit"]: u["label"] for u in grid["units"] if u["label"]}
        concepts = {unit: chip for unit, chip in chips.items() if chip["category"] != "class"}
        assert concepts and all(chip["iou"] >= settings.dissection_iou_threshold and chip["auc"] is None
                                for chip in concepts.values())
        for unit, chip in chips.items():  # a unit no concept labels is labelled by the class it selects, if any
            if chip["category"] == "class":
                classes = api.get(f"/api/models/shapes-cnn/layers/block4/units/{unit}").json()["labels"]["classes"]
                assert chip == {"id": f"class:{classes[0]['class']}", "name": classes[0]["class"], "category": "class",
                                "iou": None, "auc": classes[0]["auc"]}
                assert chip["auc"] >= settings.selectivity_auc_threshold
        unit = next(iter(concepts))
        labels = api.get(f"/api/models/shapes-cnn/layers/block4/units/{unit}").json()["labels"]
        assert {**labels["label"], "auc": None} == concepts[unit]
        assert labels["concepts"][0]["id"] == labels["label"]["id"]
        assert [c["iou"] for c in labels["concepts"]] == sorted((c["iou"] for c in labels["concepts"]), reverse=True)
        assert labels["description"].startswith(f"{labels['label']['name']} (IoU ")
        assert labels["classes"] and 0 <= labels["classes"][0]["auc"] <= 1
        assert labels["layout"] == "demo" and labels["dataset"] == grid["dataset"]
    with client(settings, dissection_iou_threshold=1.0) as api:  # read when asked: no rebuild
        unit_answer = api.get(f"/api/models/shapes-cnn/layers/block4/units/{unit}").json()
        assert unit_answer["labels"]["label"] is None
        assert unit_answer["label"] is None or unit_answer["label"]["category"] == "class"


def test_search_ranks_labels_by_iou_and_pages(labelled):
    settings, _ = labelled
    with client(settings) as api:
        whole = api.get("/api/search", params={"q": "shape", "limit": 100}).json()
        labels = [r for r in whole["results"] if r["field"] == "label"]
        assert labels and [r["score"] for r in labels] == sorted((r["score"] for r in labels), reverse=True)
        fields = [r["field"] for r in whole["results"]]
        assert fields == sorted(fields, key=["note", "label", "formula", "concept", "class", "description",
                                             "unit"].index)
        first, second = (api.get("/api/search", params={"q": "shape", "limit": 5, "offset": offset}).json()
                         for offset in (0, 5))
        assert [r["unit"] for r in first["results"] + second["results"]] == [r["unit"] for r in whole["results"][:10]]
        assert first["total"] == whole["total"]
        by_name = api.get("/api/search", params={"q": "block4:3"}).json()["results"]
        assert ("block4", 3, "unit") in [(r["layer"], r["unit"], r["field"]) for r in by_name]
        only = api.get("/api/search", params={"category": "shape", "layer": "block4"}).json()
        assert only["total"] > 0 and all(r["label"].startswith("shape:") and r["layer"] == "block4"
                                         for r in only["results"])


@pytest.mark.parametrize("params, status", [
    ({"q": ""}, 422), ({"q": "  ,; "}, 422), ({"q": "x" * 201}, 422), ({"q": " ".join("abcdefghijklm")}, 422),
    ({"q": "square", "limit": 0}, 422), ({"q": "square", "limit": 101}, 422), ({"q": "square", "offset": -1}, 422),
    ({"q": "square", "model": "nope"}, 404)])
def test_bad_queries_get_a_4xx_that_names_the_problem(labelled, params, status):
    settings, _ = labelled
    with client(settings) as api:
        answer = api.get("/api/search", params=params)
        assert answer.status_code == status
        assert answer.json()["error"]["message"]


def test_token_prefix_matching_and_one_hit_per_unit():
    documents = [Document("m", "d", "l", "channel", 1, field, text, score, "shape:square", "shape", None)
                 for field, text, score in (("label", "shape:square square", 0.2),
                                            ("description", "square (IoU 0.20)", 0.0))]
    documents.append(Document("m", "d", "l", "channel", 2, "label", "colour:red red", 0.3, "colour:red", "colour",
                              None))
    index = TokenIndex(documents)
    assert index.match(tokens("SQU")) == {0, 1}
    assert index.match(tokens("squ red")) == set()
    assert [d.unit for d in rank(documents[i] for i in index.match(tokens("s")))] == [1]  # best field kept
    assert [(d.unit, d.field) for d in rank(documents)] == [(2, "label"), (1, "label")]


def test_a_units_name_finds_the_channel_before_a_feature_of_the_same_number():
    names = [Document("m", "d", "block3", kind, 38, "unit", text, 1.0, None, None, None) for kind, text in
             (("sae-192", "block3:38 block3 sae-192 feature 38"), ("channel", "block3:38 block3 38"))]
    found = rank(names[i] for i in TokenIndex(names).match(tokens("block3:38")))
    assert [d.kind for d in found] == ["channel", "sae-192"]


def test_a_formula_is_not_found_by_the_concepts_it_excludes(labelled):
    settings, atlas = labelled
    with client(settings) as api:
        for hit in api.get("/api/search", params={"q": "colour", "limit": 100}).json()["results"]:
            if hit["field"] == "formula":
                assert re.search(r"(^|\(|AND |OR )colour:", hit["text"]), hit["text"]


def test_the_concepts_summary_and_a_concept_mask(labelled):
    settings, atlas = labelled
    with client(settings) as api:
        summary = api.get("/api/models/shapes-cnn/concepts").json()
        assert summary["layout"] == "demo" and summary["categories"] == ["shape", "colour", "texture", "region"]
        block4 = next(layer for layer in summary["layers"] if layer["layer"] == "block4")
        assert sum(block4["labelled"].values()) == sum(c["units"] for c in block4["concepts"])
        image = 0
        regions, concepts = _demo_regions(atlas, image)
        shape = next(c for c in concepts[1])  # the first shape's kind
        concept = _concept_id(shape)
        mask = api.get(f"/api/models/shapes-cnn/concepts/{concept}/masks/{image}.png")
        assert mask.status_code == 200 and mask.headers["content-type"] == "image/png"
        pixels = np.asarray(Image.open(io.BytesIO(mask.content)))
        expected = np.isin(regions, [i for i, cs in enumerate(concepts) if shape in cs])
        assert pixels.shape == (112, 112, 4) and np.array_equal(pixels[..., 3] > 0, expected)
        assert api.get("/api/models/shapes-cnn/concepts/shape:nope/masks/0.png").status_code == 404
        assert api.get(f"/api/models/shapes-cnn/concepts/{concept}/masks/9999.png").status_code == 404
        assert api.get("/api/models/shapes-cnn/concepts", params={"dataset": "nope"}).status_code == 409  # no atlas


def _demo_regions(atlas, image):
    return open_concepts(atlas.dataset_root).regions(atlas.image(image)["path"])


def _concept_id(number):
    return CONCEPTS[number].id


def test_notes_are_written_read_searched_and_refused_when_read_only(labelled):
    settings, _ = labelled
    path = "/api/models/shapes-cnn/layers/block4/units/7/notes"
    with client(settings) as api:
        written = api.post(path, json={"text": "  fires on arrow tips ", "author": "ada"})
        assert written.status_code == 201 and written.json()["text"] == "fires on arrow tips"
        listed = api.get(path).json()
        assert [n["text"] for n in listed["notes"]] == ["fires on arrow tips"] and listed["writable"]
        found = api.get("/api/search", params={"q": "arrow tips"}).json()["results"]
        assert found[0]["field"] == "note" and found[0]["unit"] == 7 and found[0]["image"]
        assert api.post(path, json={"text": "x" * 1001}).status_code == 422
        assert api.post(path, json={"text": "   "}).status_code == 422
        assert api.post(path, content=b"{" + b" " * 70_000 + b"}",
                        headers={"content-type": "application/json"}).status_code == 413
        assert api.post("/api/models/shapes-cnn/layers/block4/units/999/notes", json={"text": "a"}).status_code == 404
    with client(settings, read_only=True) as api:
        refused = api.post(path, json={"text": "another"})
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
        assert api.get(path).json()["writable"] is False


def _best_classes(api, layer: str, units: int, dataset: str) -> list[dict | None]:
    """Each unit's best class with its AUC, read unit by unit from the unit answers."""
    answers = [api.get(f"/api/models/shapes-cnn/layers/{layer}/units/{unit}", params={"dataset": dataset}).json()
               for unit in range(units)]
    return [a["labels"]["classes"][0] if a["labels"]["classes"] else None for a in answers]


def _best_aucs(api, layer: str, units: int, dataset: str) -> list[float | None]:
    return [c["auc"] if c else None for c in _best_classes(api, layer, units, dataset)]


def test_class_selectivity_is_summarised_per_layer_on_a_dataset_of_classes(tmp_path):
    root = tmp_path
    settings, model, _, _ = small_atlas(root, images=8, layers=["block4"], k=2)
    alpha, _ = two_datasets(root / "folders", images=40)  # class folders, no concept masks
    index_model(model, scan_folder(alpha, name="alpha"), settings, layers=["block4"], k=2)
    for threshold in (0.9, 0.6):
        with client(settings, selectivity_auc_threshold=threshold) as api:
            summary = api.get("/api/models/shapes-cnn/concepts", params={"dataset": "alpha"}).json()
            assert summary["layout"] is None and summary["categories"] == [] and summary["concepts"] == []
            assert summary["auc_threshold"] == threshold and len(summary["classes"]) >= 2
            (block4,) = summary["layers"]
            classes = _best_classes(api, "block4", block4["units"], "alpha")
            best = [c["auc"] if c else None for c in classes]
            selective = [auc for auc in best if auc is not None and auc >= threshold]
            assert block4["selective_units"] == len(selective) > 0
            assert block4["best_auc_mean"] == pytest.approx(np.mean([auc for auc in best if auc is not None]))
            assert sum(c["units"] for c in block4["selective_classes"]) == len(selective)
            counts = [c["units"] for c in block4["selective_classes"]]
            assert counts == sorted(counts, reverse=True)
            for selected in block4["selective_classes"]:  # each count links to exactly its units, best first
                found = api.get("/api/search", params={"class": selected["class"], "model": "shapes-cnn",
                                                       "dataset": "alpha", "layer": "block4", "limit": 100}).json()
                assert found["total"] == selected["units"] == len(found["results"])
                assert all(classes[hit["unit"]]["class"] == selected["class"] and hit["field"] == "class"
                           and hit["score"] == classes[hit["unit"]]["auc"] >= threshold for hit in found["results"])
                scores = [hit["score"] for hit in found["results"]]
                assert scores == sorted(scores, reverse=True)
            unit = api.get("/api/models/shapes-cnn/layers/block4/units/0", params={"dataset": "alpha"}).json()
            labels = unit["labels"]
            assert labels["layout"] is None and labels["auc_threshold"] == threshold and labels["label"] is None
            grid = api.get("/api/models/shapes-cnn/layers/block4/units", params={"dataset": "alpha"}).json()
            chips = [u["label"] for u in grid["units"]]
            assert [c["name"] if c else None for c in chips] == [
                unit["class"] if unit is not None and unit["auc"] >= threshold else None
                for unit in classes]
        assert block4["labelled_units"] == 0 and block4["best_iou_mean"] is None


def test_a_class_with_too_few_images_scores_no_unit_and_the_summary_names_it(tmp_path):
    """With the default selectivity_min_class_images (10): classes of 12 images are scored, one of 3 is not (its
    AUC would reach 0.9 by chance on many units), and the summary names it with its images."""
    settings, model, _, _ = small_atlas(tmp_path, images=4, layers=["block4"], k=2)
    settings = settings.model_copy(update={"selectivity_min_class_images": 10})
    write_split(tmp_path / "more", "heldout", 27)
    scenes = sorted((tmp_path / "more" / "heldout" / "images").rglob("*.png"))
    for name, files in (("big", scenes[:12]), ("large", scenes[12:24]), ("tiny", scenes[24:])):
        (tmp_path / "folders" / name).mkdir(parents=True)
        for path in files:
            shutil.copy(path, tmp_path / "folders" / name / path.name)
    target = index_model(model, scan_folder(tmp_path / "folders", name="sizes"), settings, layers=["block4"], k=2)
    with sqlite3.connect(target / "atlas.sqlite") as db:
        scored = {row[0] for row in db.execute("SELECT DISTINCT class FROM unit_classes")}
    assert scored == {"big", "large"}
    with client(settings) as api:
        summary = api.get("/api/models/shapes-cnn/concepts", params={"dataset": "sizes"}).json()
    assert summary["unscored_classes"] == {"tiny": 3} and summary["min_class_images"] == 10


def test_the_demo_summary_has_both_concept_labels_and_class_selectivity(labelled):
    settings, atlas = labelled
    with client(settings) as api:
        summary = api.get("/api/models/shapes-cnn/concepts").json()
        assert summary["categories"] and summary["classes"]
        for layer in summary["layers"]:
            best = _best_aucs(api, layer["layer"], layer["units"], summary["dataset"])
            assert layer["selective_units"] == sum(auc >= summary["auc_threshold"] for auc in best)


def test_a_notes_file_from_before_dictionary_versions_is_read_and_extended(tmp_path):
    """notes.sqlite written before notes kept their dictionary's digest: its notes are channels' notes, read as
    they were, and new ones are added beside them."""
    db = sqlite3.connect(tmp_path / "notes.sqlite")
    db.executescript("CREATE TABLE notes (id INTEGER PRIMARY KEY, model TEXT NOT NULL, layer TEXT NOT NULL, "
                     "kind TEXT NOT NULL, unit INTEGER NOT NULL, text TEXT NOT NULL, author TEXT NOT NULL, "
                     "created TEXT NOT NULL);"
                     "INSERT INTO notes VALUES (1, 'm', 'l', 'channel', 3, 'old', 'ada', '2026-01-01T00:00:00Z');")
    db.close()
    notes = Notes(tmp_path)
    before = (tmp_path / "notes.sqlite").read_bytes()
    assert [(n["text"], n["dictionary"]) for n in notes.for_unit("m", "l", 3)] == [("old", "")]
    assert [n["dictionary"] for n in notes.all()] == [""]
    assert notes.for_unit("m", "l", 3, dictionary="0" * 16) == []
    assert (tmp_path / "notes.sqlite").read_bytes() == before  # reading changed nothing (a read-only copy works)
    notes.add("m", "l", 3, "new", "bob")
    assert [n["text"] for n in Notes(tmp_path).for_unit("m", "l", 3)] == ["old", "new"]


def test_a_notes_file_its_first_writer_has_made_but_not_yet_filled_reads_as_empty(tmp_path):
    sqlite3.connect(tmp_path / "notes.sqlite").close()  # the file as the first note's `connect` leaves it
    notes = Notes(tmp_path)
    assert notes.for_unit("m", "l", 3) == [] and notes.all() == []
    notes.add("m", "l", 3, "first", "ada")
    assert [n["text"] for n in notes.for_unit("m", "l", 3)] == ["first"]


def test_a_description_names_a_class_the_unit_selects_and_only_the_closest_below_the_threshold():
    from app.atlas.labels import describe

    def labels(auc: float) -> dict:
        return {"iou_threshold": 0.04, "auc_threshold": 0.9, "concepts": [], "formula": None, "layout": None,
                "classes": [{"class": "deer", "auc": auc}, {"class": "cat", "auc": 0.55}], "class_source": "labels"}

    assert describe(labels(0.93)) == "top class deer, AUC 0.93"
    assert describe(labels(0.60)) == "no class reaches AUC 0.9 (closest: deer, 0.60)"
    assert describe(labels(0.40)) == "no class or concept measured"


def test_units_found_by_their_description_rank_by_what_it_measures(labelled):
    """A class below the selectivity threshold is found through descriptions alone: the unit nearest to selecting
    it comes first, not the first layer's."""
    settings, atlas = labelled
    with client(settings, selectivity_auc_threshold=1.0) as api:  # no unit selects a class: descriptions only
        hits = api.get("/api/search", params={"q": "square", "limit": 100, "model": "shapes-cnn"}).json()["results"]
    described = [hit for hit in hits if hit["field"] == "description"]
    assert len(described) >= 3 and all("(closest: square, " in hit["text"] for hit in described)  # the clause
    scores = [hit["score"] for hit in described]  # each the number its clause reports
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.5
    assert all(hit["text"].endswith(f"{hit['score']:.2f})") or hit["text"].endswith(f"{hit['score']:.3f})")
               for hit in described)
