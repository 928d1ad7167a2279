"""Dictionaries as a kind of unit (app/atlas/dictionaries.py): learned on an atlas dataset's activations by
`fovea dictionary`, resumed after a kill, refused on other weights, and indexed so that each feature has the
atlas a channel has, equal to the projection computed directly; then served by the API as units are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors import safe_open
from safetensors.torch import save_file

from app.api.app import create_app
from app.atlas.dictionaries import DictionaryRequest, check_request, memory_needed, train_dictionary
from app.atlas.dictionary_store import DictionaryRefused, DictionaryStore, read_dictionary, save_dictionary
from app.atlas.indexer import index_model
from app.atlas.layout import dictionary_build_dir, dictionary_file
from app.atlas.notes import Notes
from app.atlas.reader import Atlas
from app.engine.dictionary import encode_maps
from app.errors import FoveaError
from tests.atlas_helpers import all_activations, brute_force_unit_stats, small_atlas
from tests.conftest import DEMO_MODELS_ONLY_ARGS
from tests.test_api import assert_error

IMAGES, K = 30, 4
SAE = DictionaryRequest(layer="block4", method="sae", size=48, sparsity=4, steps=30, max_vectors=600,
                        batch_size=256)
NMF = DictionaryRequest(layer="block3", method="nmf", size=24, sparsity=0, steps=30, max_vectors=600)
SIGNED = "block3.4"  # block3's second batch norm, before its ReLU


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """shapes-cnn's atlas of block3 and block4 on 30 demo scenes, a sparse autoencoder of block4 and NMF of
    block3 learned on it, and the atlas rebuilt with their features."""
    root = tmp_path_factory.mktemp("dictionaries")
    settings, model, dataset, _ = small_atlas(root, IMAGES, ["block3", "block4"], K)
    stored = [train_dictionary(model, dataset, request, settings.data_dir, batch_size=16) for request in (SAE, NMF)]
    atlas = Atlas(index_model(model, dataset, settings, layers=["block3", "block4"], k=K))
    return settings, model, dataset, atlas, stored


def test_the_stored_dictionary_has_its_figures_and_fits_the_weights_it_learned_on(built):
    settings, model, _, _, (sae, nmf) = built
    for stored, request in ((sae, SAE), (nmf, NMF)):
        assert (stored.layer, stored.kind) == (request.layer, request.kind)
        figures = stored.meta["figures"]
        assert figures["vectors"] > 0 and 0 < figures["variance_explained"] <= 1
        assert 0 <= figures["dead_features"] <= request.size
        assert stored.meta["weights"] == model.weights_sha256
    assert sae.meta["figures"]["mean_active"] <= SAE.sparsity
    # Every tenth image is held out: 3 of 30 scenes. Each image gives ceil(600 / 27) = 23 of block4's 49 positions.
    assert sae.meta["held_out_vectors"] == 3 * 23 and sae.meta["vectors"] == 27 * 23
    path = dictionary_file(settings.data_dir, model.id, "block4", SAE.kind)
    with safe_open(path, framework="pt") as opened:  # plain tensors and JSON: nothing is unpickled
        assert set(opened.keys()) == {"encoder", "encoder_bias", "decoder", "pre_bias", "scale", "k"}
    assert read_dictionary(path).digest == sae.digest
    assert [d.kind for d in DictionaryStore(settings.data_dir).of_model(model)] == [NMF.kind, SAE.kind]


def test_each_feature_s_atlas_equals_the_projection_computed_directly(built):
    _, model, dataset, atlas, stored = built
    assert atlas.meta["dictionaries"] == [[d.layer, d.kind, d.digest] for d in reversed(stored)]  # by file name
    assert_features_are_their_projections(model, dataset, atlas, stored)
    assert atlas.kinds("block4") == ["channel", SAE.kind] and atlas.kinds("block3") == ["channel", NMF.kind]


def assert_features_are_their_projections(model, dataset, atlas: Atlas, stored: list) -> None:
    """Every feature's top images, maps, statistics and pooled means in the atlas are those of the dictionary's
    projection of the layer's activations, computed here directly."""
    activations, _ = all_activations(model, dataset, sorted({d.layer for d in stored}), atlas.meta["batch_size"])
    for dictionary in stored:
        maps = activations[dictionary.layer]
        batch = atlas.meta["batch_size"]  # encoded batch by batch, as the build's hook does
        features = torch.cat([encode_maps(dictionary.dictionary, torch.from_numpy(maps[start:start + batch]))
                              for start in range(0, len(maps), batch)]).contiguous().numpy()
        expected = brute_force_unit_stats(features, K)
        layer = atlas.layer(dictionary.layer, dictionary.kind)
        assert (layer.kind, layer.units) == (dictionary.kind, dictionary.dictionary.size)
        for unit in range(layer.units):
            top = atlas.top_images(layer, unit)
            assert [row["image"] for row in top] == expected["topk"][unit].tolist(), (dictionary.kind, unit)
            assert np.allclose([row["value"] for row in top], expected["values"][unit], rtol=1e-6, atol=0)
            brute_maps = features[expected["topk"][unit], unit].astype(np.float16).astype(np.float32)
            assert np.array_equal(np.asarray(atlas.maps(layer, unit), dtype=np.float32), brute_maps)
            row = atlas.unit(layer, unit)
            for key in ("max_max", "max_mean", "fraction_active"):
                assert row[key] == pytest.approx(expected[key][unit], rel=1e-6, abs=1e-9), (dictionary.kind, key)
        pooled = np.load(atlas.folder / f"layer-{layer.idx:03d}.pooled.npy")
        assert np.allclose(pooled, expected["spatial_mean"], rtol=1e-3, atol=1e-3)


def test_semi_nmf_learns_a_signed_layer_that_nmf_refuses(tmp_path):
    """block3.4, block3's batch norm before its ReLU, has values of both signs: NMF is refused and says to use
    semi-NMF, whose features are indexed as units, equal to their projections."""
    settings, model, dataset, _ = small_atlas(tmp_path, IMAGES, [SIGNED], K)
    request = DictionaryRequest(layer=SIGNED, method="semi-nmf", size=48, sparsity=0, steps=30, max_vectors=600)
    with pytest.raises(FoveaError, match="non-negative activations.*--method semi-nmf"):
        train_dictionary(model, dataset, replace(request, method="nmf"), settings.data_dir, batch_size=16)
    stored = train_dictionary(model, dataset, request, settings.data_dir, batch_size=16)
    assert (stored.kind, stored.meta["method"], stored.meta["sparsity"]) == ("semi-nmf-48", "semi-nmf", None)
    assert (stored.dictionary.directions() < 0).any() and stored.meta["figures"]["variance_explained"] > 0.5
    atlas = Atlas(index_model(model, dataset, settings, layers=[SIGNED], k=K))
    assert atlas.kinds(SIGNED) == ["channel", "semi-nmf-48"]
    assert_features_are_their_projections(model, dataset, atlas, [stored])


def test_a_request_is_checked_before_any_work(built):
    _, model, _, _, _ = built
    good = dict(layer="block4", method="nmf", size=64, sparsity=4, steps=10, max_vectors=1000)
    check_request(model, DictionaryRequest(**good), max_size=100, max_bytes=10**9)
    for change, message in ((dict(method="pca"), "unknown method"), (dict(size=101), "between 1 and 100"),
                            (dict(name="Channel"), "lowercase"), (dict(name="channel"), "not 'channel'"),
                            (dict(layer="block9"), "block9"), (dict(max_vectors=10**6), "dictionary_max_bytes"),
                            (dict(method="sae", sparsity=65), "sparsity")):
        with pytest.raises(FoveaError, match=message):
            check_request(model, DictionaryRequest(**{**good, **change}), max_size=100, max_bytes=10**9)
    # NMF holds its codes three times over: 10^6 vectors x 64 features x 3 x 4 bytes, beside 10^6 x 192 x 4.
    assert memory_needed(DictionaryRequest(**{**good, "max_vectors": 10**6}), 192) == 4 * (192 + 3 * 64) * 10**6


def test_file_names_come_from_module_and_kind_names_that_cannot_leave_the_folder(tmp_path):
    assert dictionary_file(tmp_path, "m", "features.11", "sae-8").name == "features.11.sae-8.safetensors"
    for layer in ("a/b", "../x", ".hidden", ""):  # PyTorch forbids only dots and empty names in a module's name
        with pytest.raises(ValueError, match="cannot be part of a file name"):
            dictionary_file(tmp_path, "m", layer, "sae-8")


def test_a_dictionary_learned_on_other_weights_is_refused(built):
    settings, model, _, _, (sae, _) = built
    other = DictionaryStore(settings.data_dir)
    original = model.weights_sha256
    try:
        model.weights_sha256 = "0" * 64  # as if the card's weights had changed since
        assert other.of_model(model) == []  # skipped by the index pass
        with pytest.raises(DictionaryRefused, match="learned on other weights"):
            other.get(model, "block4", SAE.kind)
    finally:
        model.weights_sha256 = original
    assert other.get(model, "block4", SAE.kind).digest == sae.digest


def test_a_dictionary_learned_otherwise_is_replaced_only_when_asked(built, tmp_path):
    """The same name learned again on the same terms is the stored dictionary (read in other batches too); on
    other terms it is refused, naming them, unless `replace` (`fovea dictionary --replace`), even where a killed
    run left its work."""
    _, model, dataset, _, _ = built
    request = replace(SAE, steps=5, name="probe")
    first = train_dictionary(model, dataset, request, tmp_path, batch_size=16)
    assert train_dictionary(model, dataset, request, tmp_path, batch_size=16).digest == first.digest
    assert train_dictionary(model, dataset, request, tmp_path, batch_size=8).digest == first.digest
    stored_file = dictionary_file(tmp_path, model.id, "block4", "probe")
    refusal = (r"has a dictionary 'probe' already, learned on '[^']+' \(sae, 48 features, 5 steps\), and this one "
               r"differs in steps, seed: give another --name to keep both, or --replace to learn it again")
    with pytest.raises(FoveaError, match=refusal):
        train_dictionary(model, dataset, replace(request, steps=6, seed=1), tmp_path, batch_size=16)
    work = dictionary_build_dir(tmp_path, model.id, "block4", "probe")
    work.mkdir(parents=True)  # as a killed `--replace` run leaves it
    with pytest.raises(FoveaError, match=refusal):
        train_dictionary(model, dataset, replace(request, steps=6, seed=1), tmp_path, batch_size=16)
    assert read_dictionary(stored_file).digest == first.digest
    again = train_dictionary(model, dataset, replace(request, steps=6), tmp_path, batch_size=16, replace=True)
    assert again.meta["steps"] == 6 and again.digest != first.digest


def test_the_rebuild_a_409_asks_for_names_the_demo_or_the_quoted_folder():
    from types import SimpleNamespace

    from app.api.features import dataset_argument

    assert dataset_argument(SimpleNamespace(dataset="demo", meta={"dataset_root": "/data/datasets/demo"})) == "demo"
    mine = SimpleNamespace(dataset="my-images-1a2b3c4d", meta={"dataset_root": "/home/me/my images"})
    assert dataset_argument(mine) == "'/home/me/my images'"


def test_a_killed_training_resumes_to_the_dictionary_of_an_uninterrupted_one(built, tmp_path):
    """The command killed (SIGKILL) as it saves its first training checkpoint, then run again to the end."""
    settings, model, dataset, _, (sae, _) = built
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "app", "dictionary", "shapes-cnn", "--layer", "block4", "--size", "48",
               "--sparsity", "4", "--steps", "30", "--dataset", str(dataset.root), "--data-dir", str(killed),
               "--device", "cpu", *DEMO_MODELS_ONLY_ARGS]
    hook = ("import os, signal, app.atlas.dictionaries as d\nsaved = d.atomic_write\n"
            "def write(path, fn):\n saved(path, fn)\n"
            " if path.name == 'trainer.safetensors': os.kill(os.getpid(), signal.SIGKILL)\n"
            "d.atomic_write = write\n")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(hook)
    env = {**os.environ, "FOVEA_INDEX_CHECKPOINT_SECONDS": "0", "FOVEA_INDEX_WORKERS": "0",
           "FOVEA_INDEX_BATCH_SIZE": "16", "FOVEA_DICTIONARY_MAX_VECTORS": "600", "FOVEA_AUTO_INDEX_DEMO": "false"}
    first = subprocess.run(command, env={**env, "PYTHONPATH": str(tmp_path / "hook")}, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr
    build = dictionary_file(killed, "shapes-cnn", "block4", "sae-48").parent / ".block4.sae-48.build"
    assert (build / "trainer.safetensors").is_file() and not dictionary_file(killed, "shapes-cnn", "block4",
                                                                              "sae-48").exists()
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "1/30 steps" in resumed.stderr.replace("\r", "\n")  # it went on from the first step's checkpoint
    assert "sae-48: " in resumed.stderr and not build.exists()
    again = read_dictionary(dictionary_file(killed, "shapes-cnn", "block4", "sae-48"))
    # The same request, uninterrupted, in this process (SAE's batch size as the command's, 4096 -> all vectors).
    whole = train_dictionary(model, dataset, DictionaryRequest(**{**SAE.__dict__, "batch_size": 4096}),
                             tmp_path / "whole", batch_size=16)
    assert again.digest == whole.digest
    atlas = Atlas(killed / "atlases" / "shapes-cnn" / dataset.name)  # the command indexed the features
    assert atlas.kinds("block4") == ["channel", "sae-48"]


def test_features_are_served_as_units_with_their_composition(built):
    settings, _, _, atlas, (sae, _) = built
    base = "/api/models/shapes-cnn/layers/block4/units"
    query = {"dataset": atlas.dataset, "kind": SAE.kind}
    with TestClient(create_app(settings)) as client:
        listed = client.get("/api/models/shapes-cnn/dictionaries", params={"dataset": atlas.dataset}).json()
        assert [(d["layer"], d["kind"], d["indexed"]) for d in listed["dictionaries"]] == [
            ("block3", NMF.kind, True), ("block4", SAE.kind, True)]
        assert listed["dictionaries"][1]["page"] == f"/m/shapes-cnn/block4/{SAE.kind}?dataset={atlas.dataset}"
        page = client.get(base, params={**query, "sort": "max_max", "order": "desc"}).json()
        assert page["kind"] == SAE.kind and page["units_total"] == SAE.size and len(page["units"]) == SAE.size
        assert page["kinds"] == ["channel", SAE.kind]
        unit = client.get(f"{base}/3", params=query).json()
        assert unit["page"] == f"/m/shapes-cnn/block4/{SAE.kind}/3?dataset={atlas.dataset}"
        decoder = sae.dictionary.directions()[3]
        composition = unit["feature"]["composition"]
        assert [c["unit"] for c in composition] == decoder.abs().argsort(descending=True)[:8].tolist()
        assert composition[0]["weight"] == pytest.approx(decoder[composition[0]["unit"]].item())
        assert composition[0]["page"] == f"/m/shapes-cnn/block4/{composition[0]['unit']}?dataset={atlas.dataset}"
        cosines = torch.nn.functional.normalize(sae.dictionary.directions(), dim=1) @ \
            torch.nn.functional.normalize(decoder, dim=0)
        cosines[3] = -2
        assert [n["unit"] for n in unit["feature"]["nearest"]] == cosines.argsort(descending=True)[:8].tolist()
        assert all(s["page"].startswith(f"/m/shapes-cnn/block4/{SAE.kind}/") for s in unit["similar"])
        channel = client.get(f"{base}/3", params={"dataset": atlas.dataset}).json()
        assert channel["feature"] is None and channel["kind"] == "channel"
        maps = client.get(f"{base}/3/maps", params=query).json()
        assert maps["shape"][0] == K
        assert_error(client.get(f"{base}/{SAE.size}", params=query), 404, "not_found", f"0 to {SAE.size - 1}")
        assert_error(client.get(f"{base}/3", params={**query, "kind": "sae-1000"}), 404, "layer_not_found",
                     "its kinds: channel, sae-48")
        assert client.get(f"{base}/3", params={**query, "kind": "SAE 48"}).status_code == 422


def test_a_feature_is_visualised_found_on_an_image_and_mapped_as_a_unit_is(built):
    """Its feature visualisation (the direction objective), its rank among the features that fire on an image,
    its live map on a dataset image (equal to the atlas's top map), its labels in the detectors summary and in
    search."""
    settings, _, _, atlas, (sae, _) = built
    layer = atlas.layer("block4", SAE.kind)
    top = atlas.top_images(layer, 3)[0]
    with TestClient(create_app(settings)) as client:
        base = "/api/models/shapes-cnn/layers/block4/units/3"
        shown = client.get(f"{base}/visualization", params={"kind": SAE.kind, "steps": 3, "size": 32})
        assert shown.status_code == 200, shown.text
        answer = shown.json()
        assert answer["kind"] == SAE.kind and answer["variant"].endswith(f"-dictionary{sae.digest}")
        assert f"kind={SAE.kind}" in answer["png"] and client.get(answer["png"]).status_code == 200
        channel = client.get(f"{base}/visualization", params={"steps": 3, "size": 32, "render": "false"})
        assert channel.status_code == 404  # the channel's own image is another, not rendered
        live = client.get(f"{base}/activation", params={"kind": SAE.kind, "image": top["image"],
                                                        "dataset": atlas.dataset}).json()
        assert live["kind"] == SAE.kind and live["max"] == pytest.approx(top["value"], rel=1e-5)
        fired = client.get(f"/api/images/{atlas.dataset}:{top['image']}/units",
                           params={"model": "shapes-cnn", "layer": "block4", "kind": SAE.kind, "unit": 3,
                                   "dataset": atlas.dataset}).json()
        assert fired["kind"] == SAE.kind and fired["units_total"] == SAE.size
        assert fired["units"][0]["unit"] == 3 and f"/block4/{SAE.kind}/3?" in fired["units"][0]["link"]
        summary = client.get("/api/models/shapes-cnn/concepts", params={"dataset": atlas.dataset}).json()
        rows = {(row["layer"], row["kind"]): row for row in summary["layers"]}
        assert rows["block4", SAE.kind]["units"] == SAE.size and rows["block3", NMF.kind]["units"] == NMF.size
        best = atlas.query("SELECT AVG(iou) FROM unit_concepts WHERE layer = ? AND rank = 0", (layer.idx,))[0][0]
        assert rows["block4", SAE.kind]["best_iou_mean"] == pytest.approx(best)
        # Per concept, channels and features are counted apart: each the sum of its own kind's rows.
        for concept in summary["concepts"]:
            per_kind = {kind: sum(c["units"] for row in summary["layers"] if (row["kind"] == "channel") == kind
                                  for c in row["concepts"] if c["id"] == concept["id"]) for kind in (True, False)}
            assert (concept["units"], concept["features"]) == (per_kind[True], per_kind[False]), concept
        assert sum(c["features"] for c in summary["concepts"]) > 0
        found = client.get("/api/search", params={"q": f"block4 {SAE.kind} 3", "kind": SAE.kind}).json()
        assert [(r["layer"], r["kind"], r["unit"]) for r in found["results"]][:1] == [("block4", SAE.kind, 3)]
        assert {r["kind"] for r in found["results"]} == {SAE.kind}


def test_a_damaged_foreign_or_stale_dictionary_is_a_clear_answer_never_a_failure(built):
    """A truncated file, one without Fovea's metadata and a copy under another name are skipped (logged) by the
    store and so by index passes; one learned on other weights is a 409; one learned again since the atlas
    indexed it is a 409 that says to rebuild."""
    settings, model, _, atlas, (sae, _) = built
    folder = dictionary_file(settings.data_dir, model.id, "block4", SAE.kind).parent
    original = (folder / f"block4.{SAE.kind}.safetensors").read_bytes()
    (folder / "block4.sae-broken.safetensors").write_bytes(original[:100])
    save_file({"x": torch.zeros(1)}, folder / "block4.sae-bare.safetensors")
    (folder / "block4.sae-copy.safetensors").write_bytes(original)  # its metadata names sae-48
    save_dictionary(settings.data_dir, model.id, sae.dictionary, {**sae.meta, "kind": "sae-other", "weights": "0" * 64})
    try:
        assert [d.kind for d in DictionaryStore(settings.data_dir).of_model(model)] == [NMF.kind, SAE.kind]
        with TestClient(create_app(settings)) as client:
            listed = client.get("/api/models/shapes-cnn/dictionaries", params={"dataset": atlas.dataset})
            assert listed.status_code == 200 and len(listed.json()["dictionaries"]) == 2
            base = "/api/models/shapes-cnn/layers/block4/units/3"
            assert_error(client.get(f"{base}/visualization", params={"kind": "sae-other", "steps": 2, "size": 32}),
                         409, "dictionary_refused", "other weights")
            assert_error(client.get(f"{base}/visualization", params={"kind": "sae-broken", "render": "false"}),
                         404, "not_found", "no dictionary")
            again = sae.dictionary.from_tensors({**sae.dictionary.tensors(), "encoder_bias":
                                                 sae.dictionary.encoder_bias + 1})
            save_dictionary(settings.data_dir, model.id, again, sae.meta)  # learned again, not indexed since
            assert_error(client.get(base, params={"dataset": atlas.dataset, "kind": SAE.kind}), 409,
                         "dictionary_refused", "rebuild")
    finally:
        for name in ("sae-broken", "sae-bare", "sae-copy", "sae-other"):
            (folder / f"block4.{name}.safetensors").unlink(missing_ok=True)
        (folder / f"block4.{SAE.kind}.safetensors").write_bytes(original)


def test_notes_on_a_feature_belong_to_that_version_of_its_dictionary(built):
    """A note on a feature is read, written and searched as a channel's is, apart from the channel of the same
    number; a dictionary learned again under the same name numbers other features, so its feature 5 starts
    without the old one's notes, and search finds a note only where an atlas indexed the version it was on."""
    settings, model, _, atlas, (sae, _) = built
    path = "/api/models/shapes-cnn/layers/block4/units/5/notes"
    feature = {"kind": SAE.kind}
    Notes(settings.data_dir).add("shapes-cnn", "block4", 5, "zigzag of an older sae", "bob", SAE.kind, "0" * 16)
    file = dictionary_file(settings.data_dir, model.id, "block4", SAE.kind)
    original = file.read_bytes()
    try:
        with TestClient(create_app(settings)) as client:
            written = client.post(path, params=feature, json={"text": "zigzag borders of stars", "author": "ada"})
            assert written.status_code == 201, written.text
            assert written.json()["kind"] == SAE.kind and written.json()["dictionary"] == sae.digest
            assert [n["text"] for n in client.get(path, params=feature).json()["notes"]] == ["zigzag borders of stars"]
            assert client.get(path).json()["notes"] == []  # channel 5 is another unit
            found = client.get("/api/search", params={"q": "zigzag"}).json()["results"]
            assert [(r["kind"], r["unit"], r["text"]) for r in found] == [(SAE.kind, 5, "zigzag borders of stars")]
            assert found[0]["page"] == f"/m/shapes-cnn/block4/{SAE.kind}/5?dataset={atlas.dataset}"
            assert_error(client.post(path, params={"kind": "sae-1000"}, json={"text": "a"}), 404, "not_found",
                         "no dictionary")
            assert_error(client.get(path.replace("/5/", f"/{SAE.size}/"), params=feature), 404, "not_found",
                         f"0 to {SAE.size - 1}")
        again = sae.dictionary.from_tensors({**sae.dictionary.tensors(), "encoder_bias":
                                             sae.dictionary.encoder_bias + 1})
        save_dictionary(settings.data_dir, model.id, again, sae.meta)
        with TestClient(create_app(settings)) as client:
            assert client.get(path, params=feature).json()["notes"] == []
    finally:
        file.write_bytes(original)
