"""Per-unit annotations (app/atlas/annotations.py): one writer, one reader, a file per kind and version
beside the model's atlases; scopes keep what was computed from other weights or another atlas apart; a
write is all or nothing; readers are not blocked by a writer; a version bump reads nothing old."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.atlas.annotations import KINDS, Annotation, AnnotationKind, Annotations, scope_of
from app.atlas.registry import AtlasRegistry
from tests.atlas_helpers import small_atlas
from tests.test_api import assert_error

LABEL = AnnotationKind("concept-label", 1, "the concept a unit's region overlaps best", "application/json", "atlas")
PICTURE = AnnotationKind("test-picture", 1, "an image of the unit", "image/png", "weights")


def label(layer: str, unit: int, concept: str, **extra) -> Annotation:
    return Annotation(layer, unit, json.dumps({"concept": concept}).encode(), **extra)


def test_what_is_written_is_read_back_by_scope_layer_unit_and_variant(tmp_path):
    labels = Annotations(tmp_path, "shapes-cnn", LABEL)
    assert labels.read("demo@1", "block3", 4) is None and not labels.path.exists()  # reading makes no file
    assert labels.write("demo@1", [label("block3", 4, "square"), label("block3", 5, "red"),
                                   label("block3", 4, "red AND square", variant="formula")]) == 3
    assert json.loads(labels.read("demo@1", "block3", 4)) == {"concept": "square"}
    assert json.loads(labels.read("demo@1", "block3", 4, variant="formula")) == {"concept": "red AND square"}
    assert labels.read("demo@2", "block3", 4) is None  # another build of the atlas: not its labels
    assert labels.read("demo@1", "block4", 4) is None
    assert labels.read("demo@1", "block3", 4, kind="feature") is None  # another kind of unit
    assert labels.done("demo@1", "block3") == {4, 5}
    labels.write("demo@1", [label("block3", 4, "circle")])  # recomputed: replaced
    assert json.loads(labels.read("demo@1", "block3", 4)) == {"concept": "circle"}
    pictures = Annotations(tmp_path, "shapes-cnn", PICTURE)
    assert pictures.path != labels.path and pictures.read("demo@1", "block3", 4) is None


def test_a_new_version_reads_nothing_of_the_old(tmp_path):
    Annotations(tmp_path, "m", LABEL).write("s", [label("l", 0, "square")])
    newer = Annotations(tmp_path, "m", AnnotationKind(LABEL.name, 2, LABEL.description, LABEL.media_type, "atlas"))
    assert newer.read("s", "l", 0) is None and newer.done("s", "l") == set()


def test_a_file_its_first_writer_has_made_but_not_yet_filled_reads_as_empty(tmp_path):
    """A reader between a first writer's `connect` (which makes the file) and its schema: nothing stored yet,
    not an error (it was a 500 of the fired units while a unit page rendered the model's first visualisation)."""
    store = Annotations(tmp_path, "m", LABEL)
    store.path.parent.mkdir(parents=True)
    sqlite3.connect(store.path).close()  # the file as `connect` leaves it: no table
    assert store.read("s", "l", 0) is None and store.done("s", "l") == set()
    with pytest.raises(sqlite3.DatabaseError):  # any other failure still says so
        store.path.write_bytes(b"not a database" * 100)
        store.done("s", "l")


def test_a_write_that_fails_part_way_writes_nothing(tmp_path):
    labels = Annotations(tmp_path, "m", LABEL)
    labels.write("s", [label("l", 0, "square")])

    def rows():
        yield label("l", 1, "red")
        raise RuntimeError("the job died")

    with pytest.raises(RuntimeError):
        labels.write("s", rows())
    broken = [label("l", 2, "red"), Annotation("l", 3, None)]  # NOT NULL fails on the second row
    with pytest.raises(sqlite3.IntegrityError):
        labels.write("s", broken)
    assert labels.done("s", "l") == {0}


def test_readers_are_not_blocked_while_a_job_writes(tmp_path):
    labels = Annotations(tmp_path, "m", LABEL)
    labels.write("s", [label("l", 0, "square")])
    writer = sqlite3.connect(labels.path)
    writer.execute("BEGIN EXCLUSIVE")  # in a rollback journal this would lock readers out; in WAL it does not
    writer.execute("INSERT INTO annotations VALUES ('s', 'l', 'channel', 1, '', x'00')")
    seen = []
    reader = threading.Thread(target=lambda: seen.append(labels.done("s", "l")))
    reader.start()
    reader.join(timeout=5)
    writer.rollback()
    writer.close()
    assert seen == [{0}]


def test_annotations_live_beside_the_atlases_and_are_never_taken_for_one(tmp_path):
    labels = Annotations(tmp_path, "shapes-cnn", LABEL)
    labels.write("s", [label("l", 0, "square")])
    assert labels.path == tmp_path / "atlases" / "shapes-cnn" / ".annotations" / "concept-label.v1.sqlite"
    assert AtlasRegistry(tmp_path).datasets("shapes-cnn") == []


@pytest.mark.parametrize("name, version", [("../up", 1), ("Label", 1), ("label", 0), ("", 1), ("a" * 50, 1)])
def test_a_kind_needs_a_name_safe_for_a_file_and_a_version(name, version):
    with pytest.raises(ValueError, match="annotation kind"):
        AnnotationKind(name, version, "", "application/json", "atlas")


def test_the_scope_is_the_weights_or_the_weights_and_one_build_of_an_atlas():
    meta = {"dataset": "demo", "created": "2026-12-06T03:00:00Z"}
    assert scope_of(PICTURE, "abc", meta) == scope_of(PICTURE, "abc", None) == "abc"
    assert scope_of(LABEL, "abc", meta) == "abc/demo@2026-12-06T03:00:00Z"
    assert scope_of(LABEL, "abc", {**meta, "created": "2026-12-07T00:00:00Z"}) != scope_of(LABEL, "abc", meta)
    with pytest.raises(ValueError, match="depends on an atlas"):
        scope_of(LABEL, "abc", None)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    settings, model, _, atlas = small_atlas(tmp_path_factory.mktemp("annotated"), 12, ["block4"], 2)
    return settings, model, atlas


def test_the_api_serves_any_declared_kind_as_stored(built, monkeypatch):
    settings, model, atlas = built
    for kind in (LABEL, PICTURE):  # as if declared in ANNOTATION_KINDS
        monkeypatch.setitem(KINDS, kind.name, kind)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    Annotations(settings.data_dir, model.id, PICTURE).write(model.weights_sha256, [Annotation("block4", 3, png)])
    Annotations(settings.data_dir, model.id, LABEL).write(scope_of(LABEL, model.weights_sha256, atlas.meta),
                                                          [label("block4", 3, "square")])
    base = "/api/models/shapes-cnn/layers/block4/units"
    with TestClient(create_app(settings)) as client:
        kinds = client.get("/api/annotations").json()["kinds"]
        assert {(k["name"], k["media_type"], k["scope"]) for k in kinds} >= {
            ("concept-label", "application/json", "atlas"), ("test-picture", "image/png", "weights")}
        picture = client.get(f"{base}/3/annotations/test-picture")
        assert picture.status_code == 200 and picture.content == png
        assert picture.headers["content-type"] == "image/png"
        named = client.get(f"{base}/3/annotations/concept-label", params={"dataset": atlas.dataset})
        assert named.json() == {"concept": "square"} and named.headers["content-type"] == "application/json"
        assert_error(client.get(f"{base}/4/annotations/concept-label"), 404, "not_found", "no concept-label")
        assert_error(client.get(f"{base}/3/annotations/caption"), 404, "not_found", "concept-label",
                     "test-picture")
        assert_error(client.get(f"{base}/999/annotations/concept-label"), 404, "not_found")
