"""The committed demo models: they load from the bundled store, and their recorded held-out accuracy is
real (recomputed here on freshly rendered held-out images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.demo.dataset import SPLIT_SIZES, render_split
from app.demo.train import accuracy
from app.settings import BUILTIN_MODEL_DIR, Settings
from app.store.builders import weights_path
from app.store.store import load_store
from tests.conftest import DEMO_MODELS_ONLY

DEMO_IDS = ("shapes-cnn", "shapes-mobilenet")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_store(Settings(data_dir=tmp_path_factory.mktemp("data"), device="cpu", **DEMO_MODELS_ONLY))


@pytest.fixture(scope="module")
def heldout():
    return render_split("heldout", SPLIT_SIZES["heldout"])


@pytest.mark.parametrize("model_id", DEMO_IDS)
def test_demo_model_accuracy_is_what_its_card_says(store, heldout, model_id):
    model = store.ready(model_id)
    images, labels = heldout
    prep = model.preprocessing
    measured = accuracy(model.module, images, labels, prep.mean, prep.std)
    recorded = model.card.metrics["heldout_accuracy"]
    assert measured >= 0.90
    assert abs(measured - recorded) <= 0.005, (measured, recorded)


def test_demo_models_differ_in_kind_and_stay_small(store):
    cnn, mobilenet = (store.ready(model_id) for model_id in DEMO_IDS)
    assert cnn.card.architecture.callable == "app.demo.architectures:shapes_cnn"
    assert mobilenet.card.architecture.callable == "app.demo.mobilenet:mobilenet_v3_small"  # torchvision's, written out
    sizes = [weights_path(m.card, BUILTIN_MODEL_DIR).stat().st_size for m in (cnn, mobilenet)]
    assert sum(sizes) <= 15 * 1024 * 1024
    assert all(m.weights_sha256 == m.card.weights.sha256 for m in (cnn, mobilenet))


@pytest.mark.parametrize("model_id", DEMO_IDS)
def test_deepest_conv_maps_are_at_least_4x4(store, model_id):
    model = store.ready(model_id)
    convs = [info for info in model.layers if info.type == "Conv2d"]
    assert convs[-1].shape[1] >= 4 and convs[-1].shape[2] >= 4


def test_training_is_reproducible():
    """Two short runs with one seed give identical weights."""
    from app.demo.architectures import shapes_cnn
    from app.demo.dataset import MEAN, STD
    from app.demo.train import train

    images, labels = render_split("train", 64)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = shapes_cnn()
        train(model, images, labels, images[:16], labels[:16], mean=MEAN, std=STD, epochs=1, batch_size=32,
              seed=0, log=lambda _line: None)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][key], runs[1][key]) for key in runs[0])
    assert not np.isnan(runs[0]["fc.weight"].numpy()).any()
