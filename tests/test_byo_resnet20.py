"""Bring your own model, with real data: a third-party CIFAR-10 ResNet-20 checkpoint (DataParallel
`module.` prefixes, nested `state_dict`) loads through a card and the normal store path, then scores
at least 0.80 top-1 on a fixed sample of the CIFAR-10 test JPEGs (the first 200 of each class; 0.81 on
it, as on all 10,000)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from app.store.checkpoints import sha256_file
from app.store.store import load_store
from tests.conftest import FIXTURES, SHARED_DATA, card_toml

CHECKPOINT = SHARED_DATA / "resnet20-cifar10" / "resnet20-12fca82f.th"
CIFAR = SHARED_DATA / "cifar10-test"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SAMPLE_PER_CLASS = 200  # 2,000 of the 10,000: a fifth of the time, the same accuracy to a percent

pytestmark = pytest.mark.skipif(
    not (CHECKPOINT.is_file() and CIFAR.is_dir()),
    reason="../shared/data (the ResNet-20 checkpoint and CIFAR-10 test images) is not present",
)


def cifar_sample(per_class: int = SAMPLE_PER_CLASS) -> list[Path]:
    """A fixed sample of the CIFAR-10 test JPEGs: the first `per_class` files of each class, in order."""
    return [path for name in CLASSES for path in sorted((CIFAR / name).glob("*.jpg"))[:per_class]]


def write_resnet20_card(cards: Path) -> None:
    """The ResNet-20's card, its architecture's module and its class names in the folder `cards`, as its user
    would write them; its model id is `resnet20-cifar10`."""
    shutil.copy(FIXTURES / "resnet20.py", cards / "cifar_resnet.py")
    (cards / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (cards / "resnet20.toml").write_text(card_toml({
        "id": "resnet20-cifar10",
        "name": "ResNet-20 (CIFAR-10, third party)",
        "architecture": {"callable": "cifar_resnet:resnet20", "kwargs": {"num_classes": 10}},
        "weights": {"file": str(CHECKPOINT), "sha256": sha256_file(CHECKPOINT)},
        "input": {"size": [32, 32], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "labels": {"file": "classes.txt"},
    }))


@pytest.fixture(scope="module")
def resnet20(tmp_path_factory):
    cards = tmp_path_factory.mktemp("byo")
    write_resnet20_card(cards)
    from app.settings import Settings

    store = load_store(Settings(model_dirs=[cards], builtin_models=False, device="cpu",
                                data_dir=tmp_path_factory.mktemp("data")))
    return store.get("resnet20-cifar10")


def test_loads_through_the_store(resnet20):
    assert resnet20.ready, resnet20.error
    assert resnet20.labels == CLASSES
    assert resnet20.weights_sha256 == sha256_file(CHECKPOINT)
    assert resnet20.parameters == 269_722
    layers = {info.name: info for info in resnet20.layers}
    assert layers["layer1"].shape == (16, 32, 32)
    assert layers["layer3"].shape == (64, 8, 8)
    assert layers["layer3.2.conv2"].shape == (64, 8, 8)


def test_top1_accuracy_on_cifar10_test(resnet20):
    files = cifar_sample()
    assert len(files) == 10 * SAMPLE_PER_CLASS
    correct = 0
    with torch.no_grad():
        for start in range(0, len(files), 500):
            chunk = files[start:start + 500]
            batch = resnet20.preprocessing.batch([Image.open(path) for path in chunk])
            predictions = resnet20.module(batch.to(resnet20.device)).argmax(1).tolist()
            correct += sum(CLASSES[p] == path.parent.name for p, path in zip(predictions, chunk))
    accuracy = correct / len(files)
    print(f"ResNet-20 top-1 on {len(files)} CIFAR-10 test JPEGs: {accuracy:.4f}")
    assert accuracy >= 0.80
