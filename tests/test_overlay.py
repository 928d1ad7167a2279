"""Server-side heatmap overlays: the front end's colormaps, blended as the page blends them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from app.engine.overlay import ANCHORS, lookup_table, overlay

COLORMAPS_JS = Path(__file__).parents[1] / "frontend" / "js" / "colormaps.js"


def test_colormaps_match_the_front_end():
    source = COLORMAPS_JS.read_text()
    block = re.search(r"const ANCHORS = \{(.*?)\};", source, re.S).group(1)
    in_js = {name: json.loads(colours) for name, colours in re.findall(r"(\w+): (\[.*?\])", block)}
    assert in_js == ANCHORS


def test_lookup_table_by_hand():
    table = lookup_table("gray")
    assert table[0].tolist() == [0, 0, 0] and table[255].tolist() == [255, 255, 255]
    assert table[128].tolist() == [128, 128, 128]  # 255 * 128 / 255
    viridis = lookup_table("viridis")
    assert viridis[0].tolist() == [0x44, 0x01, 0x54] and viridis[255].tolist() == [0xfd, 0xe7, 0x25]
    # Level 17 sits at 17 / 255 * 9 = 0.6 of the way from the first anchor to the second.
    expected = np.floor(np.array([0x44, 0x01, 0x54]) * 0.4 + np.array([0x48, 0x28, 0x78]) * 0.6 + 0.5)
    assert viridis[17].tolist() == expected.tolist()


def test_overlay_blends_by_level():
    image = Image.new("RGB", (4, 4), (100, 100, 100))
    assert overlay(image, np.zeros((2, 2)), 0.0, 1.0, "gray", opacity=1.0).getpixel((0, 0)) == (100, 100, 100)
    full = overlay(image, np.ones((2, 2)), 0.0, 1.0, "gray", opacity=0.5)
    assert full.getpixel((1, 1)) == (178, 178, 178)  # level 255: alpha 0.5 -> 100 / 2 + 255 / 2, rounded
    assert overlay(image, np.ones((2, 2)), 0.0, 1.0, opacity=0.0).tobytes() == image.tobytes()
