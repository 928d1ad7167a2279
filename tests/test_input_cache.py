"""The input cache: an image is decoded and preprocessed once per model while it stays among the last few."""

from __future__ import annotations

from dataclasses import replace

import torch
from PIL import Image

from app.engine.preprocess import Preprocessing
from app.store.store import LoadedModel
from app.studio.inputs import InputCache


def model(weights: str = "w1") -> LoadedModel:
    return LoadedModel(id="m", card_path=None, status="ready", device=torch.device("cpu"), weights_sha256=weights,
                       preprocessing=Preprocessing(size=(4, 4), resize=None, mean=(0, 0, 0), std=(1, 1, 1)))


def test_hits_evictions_and_the_weights_in_the_key():
    loads = []

    def loader(colour):
        def load():
            loads.append(colour)
            return Image.new("RGB", (8, 8), colour)
        return load

    cache, first = InputCache(entries=2), model()
    red = cache.get(first, '"red"', loader("red"))
    assert red.shape == (1, 3, 4, 4) and torch.allclose(red[0, 0], torch.ones(4, 4))
    assert cache.get(first, '"red"', loader("red")) is red and loads == ["red"]
    cache.get(first, '"blue"', loader("blue"))
    cache.get(first, '"red"', loader("red"))  # red is now the most recent: green evicts blue
    cache.get(first, '"green"', loader("green"))
    cache.get(first, '"red"', loader("red"))
    cache.get(first, '"blue"', loader("blue"))
    assert loads == ["red", "blue", "green", "blue"]
    cache.get(replace(first, weights_sha256="w2"), '"blue"', loader("blue"))  # new weights: a miss
    assert loads[-1] == "blue" and len(loads) == 5
