"""Saturated units (a ReLU6 caps many images at 6.0): the atlas orders the tied images by their spatial mean,
puts each peak where the maximum's mass is, and the unit's data says it is saturated and where to look."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from app.api.app import create_app
from app.atlas.datasets import scan_folder
from app.atlas.indexer import index_model
from app.settings import Settings
from app.store.store import load_store
from tests.conftest import card_toml

CLAMPED_NET = '''
from torch import nn

def build():
    return nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
'''


def clamped_card(cards: Path, images: Path) -> Path:
    """A card folder with `clamped`, a 1x1 conv and a ReLU6 (unit 0 caps at 6 on any red pixel, unit 1 stays
    below), and `images`: eight 8x8 pictures, image i with a red square of side i + 1 at the bottom right
    (every one saturates unit 0, the larger squares with the larger spatial means) and green rising with i."""
    cards.mkdir(parents=True)
    (cards / "clamped.py").write_text(CLAMPED_NET)
    module = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        module[0].weight.zero_()
        module[0].bias.zero_()
        module[0].weight[0, 0] = 40.0
        module[0].weight[1, 1] = 1.0
    save_file(module.state_dict(), str(cards / "clamped.safetensors"))
    (cards / "clamped.toml").write_text(card_toml({
        "id": "clamped", "name": "Clamped", "architecture": {"callable": "clamped:build"},
        "weights": {"file": "clamped.safetensors"},
        "input": {"size": [8, 8], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}}))
    images.mkdir(parents=True)
    for i in range(8):
        pixels = np.zeros((8, 8, 3), dtype=np.uint8)
        pixels[8 - (i + 1):, 8 - (i + 1):, 0] = 255
        pixels[..., 1] = 20 * i
        Image.fromarray(pixels).save(images / f"{i}.png")
    return cards


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("saturation")
    cards = clamped_card(root / "cards", root / "images")
    settings = Settings(data_dir=root / "data", device="cpu", index_workers=0, auto_index_demo=False,
                        model_dirs=[cards], builtin_models=False, index_batch_size=3)
    model = load_store(settings).ready("clamped")
    index_model(model, scan_folder(root / "images", name="squares"), settings, layers=["1"], k=4)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_saturated_unit_says_so_and_orders_its_ties_by_the_mean(client):
    detail = client.get("/api/models/clamped/layers/1/units/0").json()
    assert detail["max_max"] == 6.0 and detail["saturated"]
    assert detail["quantile_995"] == 6.0  # read off a histogram bin, but never above the largest value
    assert detail["saturation"] == {"images_at_max": 8, "value": 6.0, "tie_break": "spatial mean",
                                    "before_clamp": "0"}
    # All eight tie at 6.0; the largest squares fill the map most, so they come first (not file-name order).
    assert [top["image"] for top in detail["top"]] == [7, 6, 5, 4]
    # Each peak sits inside its square, at its centre (rounded to the first of the nearest), not at (0, 0).
    # Squares of side 8, 7, 6, 5 at the bottom right: centroids 3.5, 4, 4.5 and 5 on both axes.
    assert [(top["y"], top["x"]) for top in detail["top"]] == [(3, 3), (4, 4), (4, 4), (5, 5)]


def test_an_unsaturated_unit_has_no_saturation_note(client):
    detail = client.get("/api/models/clamped/layers/1/units/1").json()
    assert detail["saturated"] is False and detail["saturation"] is None
    assert [top["image"] for top in detail["top"]] == [7, 6, 5, 4]  # green grows with i: a plain ranking
