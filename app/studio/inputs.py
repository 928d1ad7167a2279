"""The last few images as models take them: a page asks for an image's maps, then their metrics, then
other methods or targets, and each request would otherwise decode and preprocess the same file again."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image

from app.lru import LruCache
from app.store.store import LoadedModel


class InputCache:
    def __init__(self, entries: int = 8):
        self._inputs: LruCache[torch.Tensor] = LruCache(entries)

    def get(self, model: LoadedModel, image_key: str, load: Callable[[], Image.Image]) -> torch.Tensor:
        """(1, c, H, W) on the model's device in its memory format. `image_key` must change whenever the
        image's bytes do (an ETag); the model's weights are part of the key, so a reloaded model misses."""
        return self._inputs.get((model.id, model.weights_sha256, image_key),
                                lambda: model.as_input(model.preprocessing(load()).unsqueeze(0)))
