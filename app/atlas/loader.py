"""Batches of a dataset's images for the index build: decoded and preprocessed in worker processes;
an unreadable file is flagged, never fatal."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from PIL import Image

from app.atlas.datasets import ImageDataset
from app.engine.preprocess import Preprocessing


@dataclass(frozen=True)
class Batch:
    image_ids: torch.Tensor  # (n,) int64, of the readable images only, increasing
    images: torch.Tensor  # (n, 3, h, w)
    unreadable: tuple[int, ...]  # ids in this batch's range that could not be decoded


class _Images(torch.utils.data.Dataset):
    def __init__(self, dataset: ImageDataset, preprocessing: Preprocessing):
        self.dataset, self.preprocessing = dataset, preprocessing

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, image_id: int):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(self.dataset.path(image_id)) as image:
                    return image_id, self.preprocessing(image)
        except Exception:  # truncated, corrupt, not an image, too large: skipped and counted
            return image_id, None


def _collate(items):
    readable = [(image_id, tensor) for image_id, tensor in items if tensor is not None]
    unreadable = tuple(image_id for image_id, tensor in items if tensor is None)
    if not readable:
        return Batch(torch.zeros(0, dtype=torch.int64), torch.zeros(0), unreadable)
    return Batch(torch.tensor([i for i, _ in readable]), torch.stack([t for _, t in readable]), unreadable)


def batches_from_disk(dataset: ImageDataset, preprocessing: Preprocessing, batch_size: int, start: int,
                      workers: int, stop: int | None = None) -> Iterator[Batch]:
    """Batches covering image ids [start, stop) (stop: the end by default), each starting at a multiple of
    batch_size."""
    indices = range(start, len(dataset) if stop is None else stop)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(_Images(dataset, preprocessing), indices),
        batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        persistent_workers=False,
    )
    yield from loader


def batches_from_memory(images: torch.Tensor, batch_size: int, start: int) -> Iterator[Batch]:
    """Batches of preloaded, preprocessed images (for benchmarks that leave decoding out)."""
    for begin in range(start, len(images), batch_size):
        end = min(begin + batch_size, len(images))
        yield Batch(torch.arange(begin, end), images[begin:end], ())
