"""The image prior of a model's dataset (app/engine/featurevis/prior.py): its colour covariance and mean
magnitude spectrum, estimated from images of the model's atlas as the model sees them, at the size that
renderings will have. Estimated once per atlas build and size, in memory: a few hundred small images."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from app.atlas.reader import Atlas
from app.atlas.registry import AtlasRegistry
from app.engine.featurevis.prior import LUCID, ImagePrior, estimate_prior
from app.engine.preprocess import Preprocessing, resize, to_tensor
from app.errors import AtlasMissing, InvalidInput
from app.store.store import LoadedModel

PRIOR_IMAGES = 256  # enough for a stable mean spectrum; more only costs time


def atlas_prior(atlas: Atlas, preprocessing: Preprocessing, size: tuple[int, int]) -> ImagePrior:
    return _cached(atlas.folder, atlas.meta["created"], preprocessing, size)


@lru_cache(maxsize=16)
def _cached(folder: Path, created: str, preprocessing: Preprocessing, size: tuple[int, int]) -> ImagePrior:
    atlas = Atlas(folder)

    def images():
        for image_id in atlas.spread(PRIOR_IMAGES):
            yield to_tensor(resize(preprocessing.view(atlas.load_image(image_id)), size))

    with torch.no_grad():
        return estimate_prior(images(), f"dataset {atlas.dataset!r}")


def render_prior(atlases: AtlasRegistry, model: LoadedModel, size: tuple[int, int], param: str) -> ImagePrior:
    """The prior a rendering of `model` uses: its default atlas's images when it has one; otherwise Lucid's
    ImageNet colours, except for MACO, whose magnitudes can only come from the model's own images."""
    try:
        atlas = atlases.get(model.id)
    except AtlasMissing:
        if param == "maco":
            raise InvalidInput(f"param=maco takes its magnitude spectrum from {model.id}'s atlas images, and it "
                               f"has no atlas yet: run `fovea index {model.id}` first, or use param=fft",
                               param=param) from None
        return LUCID
    return atlas_prior(atlas, model.preprocessing, size)
