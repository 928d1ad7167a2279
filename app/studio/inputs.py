"""The last few images as models take them: a page asks for an image's maps, then their metrics, then
other methods or targets, and each request would otherwise decode and preprocess the same file again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import torch
from PIL import Image

from app.store.store import LoadedModel


class InputCache:
    def __init__(self, entries: int = 8):
        self._entries = entries
        self._inputs: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: LoadedModel, image_key: str, load: Callable[[], Image.Image]) -> torch.Tensor:
        """(1, c, H, W) on the model's device in its memory format. `image_key` must change whenever the
        image's bytes do (an ETag); the model's weights are part of the key, so a reloaded model misses."""
        key = (model.id, model.weights_sha256, image_key)
        with self._lock:
            if key in self._inputs:
                self._inputs.move_to_end(key)
                return self._inputs[key]
        batch = model.as_input(model.preprocessing(load()).unsqueeze(0))
        with self._lock:
            self._inputs[key] = batch
            while len(self._inputs) > self._entries:
                self._inputs.popitem(last=False)
        return batch
