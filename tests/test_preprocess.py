"""Fovea's preprocessing equals torchvision's `transforms.functional` on PIL images, pixel for pixel and bit for
bit (resize, centre crop with its padding, to_tensor, normalize), and the processes that serve models do not
import torchvision at all."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from app.engine.preprocess import Preprocessing, Resampling, center_crop, resize, to_tensor

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZES = [(112, 112), (97, 131), (131, 97), (300, 200), (57, 58), (60, 40), (224, 224), (1, 500)]  # (w, h)
GEOMETRIES = [((112, 112), None), ((112, 112), 128), ((224, 224), 256), ((64, 96), None), ((100, 100), 101),
              ((120, 90), 110), ((80, 80), 60)]  # (size (h, w), resize); the last is padded


def picture(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    values = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(values)
    return image if mode == "RGB" else image.convert(mode)


def torchvision_fit(image: Image.Image, size, resize_to, interpolation=InterpolationMode.BILINEAR) -> Image.Image:
    """The torchvision transforms that Fovea's preprocessing used to call."""
    if resize_to is not None:
        return TF.center_crop(TF.resize(image, resize_to, interpolation=interpolation), list(size))
    if (image.height, image.width) != tuple(size):
        return TF.resize(image, list(size), interpolation=interpolation)
    return image


@pytest.mark.parametrize(("size", "resize_to"), GEOMETRIES)
def test_the_model_input_is_torchvisions_bit_for_bit(size, resize_to):
    preprocessing = Preprocessing(size=size, resize=resize_to, mean=MEAN, std=STD)
    for seed, (width, height) in enumerate(SIZES):
        image = picture(width, height, seed=seed)
        expected = TF.normalize(TF.to_tensor(torchvision_fit(image, size, resize_to)), list(MEAN), list(STD))
        found = preprocessing(image)
        assert found.shape == (3, *size) and found.dtype == expected.dtype
        assert torch.equal(found, expected), (width, height)


@pytest.mark.parametrize(("size", "resize_to"), GEOMETRIES)
@pytest.mark.parametrize("mode", ["L", "P", "I"])
def test_masks_fit_the_input_with_nearest_as_torchvision_fits_them(size, resize_to, mode):
    preprocessing = Preprocessing(size=size, resize=resize_to, mean=MEAN, std=STD)
    for seed, (width, height) in enumerate(SIZES):
        mask = picture(width, height, mode, seed)
        found = preprocessing.fit(mask, Resampling.NEAREST)
        expected = torchvision_fit(mask, size, resize_to, InterpolationMode.NEAREST)
        assert found.mode == expected.mode and found.size == expected.size
        assert np.array_equal(np.asarray(found), np.asarray(expected)), (width, height)


def test_the_pieces_equal_torchvisions():
    image = picture(131, 97)
    assert resize(image, (97, 131)) is image  # already that size: not resampled
    assert np.array_equal(np.asarray(resize(image, (50, 70))), np.asarray(TF.resize(image, [50, 70])))
    for crop in [(97, 131), (96, 130), (95, 129), (100, 140), (99, 120), (90, 133)]:
        assert np.array_equal(np.asarray(center_crop(image, crop)), np.asarray(TF.center_crop(image, list(crop))))
    assert torch.equal(to_tensor(image), TF.to_tensor(image))


def test_serving_and_indexing_never_import_torchvision(tmp_path):
    """Importing torchvision adds about 1.7 s of CPU to every process's start (the server's front, its model
    worker, each CLI command, each Ray replica); only a card with a torchvision architecture needs it, and the
    demo models' cards do not (app/demo/mobilenet.py)."""
    modules = ["app.api.app", "app.main", "app.model_worker", "app.cli", "app.atlas.indexer", "app.atlas.dissection",
               "app.atlas.visualize", "app.atlas.ray_index", "app.store.store"]
    code = (f"import sys\nfor name in {modules!r}: __import__(name)\n"
            "from app.settings import BUILTIN_MODEL_DIR, Settings\nfrom app.store.store import load_store\n"
            f"store = load_store(Settings(data_dir={str(tmp_path)!r}, device='cpu', builtin_models=False, "
            "model_dirs=[BUILTIN_MODEL_DIR]))\n"
            "print([(m.card.id, m.error) for m in store], 'torchvision' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[('shapes-cnn', None), ('shapes-mobilenet', None)] False", found.stdout
