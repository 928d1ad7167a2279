"""What one index pass records: the plan it follows, and per layer the accumulators that its forward hook
feeds (top-k, statistics, histogram, pooled activations), with their exact state for checkpoints. The build
(`build.py`) runs the pass; the writer (`writer.py`) turns the finished recorders into an atlas."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from app.atlas.concepts import ConceptSource
from app.atlas.datasets import ImageDataset
from app.atlas.dictionary_store import StoredDictionary
from app.atlas.kinds import CHANNEL
from app.atlas.schema import ATLAS_FORMAT
from app.atlas.statistics import REGION_QUANTILE, FinishedLayer
from app.engine.accumulators import ImageStats, TopK
from app.engine.dictionary import encode_maps
from app.engine.dictionary.sparse_maps import SparseMaps
from app.engine.dissection.top_activations import TopActivations
from app.engine.histogram import Histogram, sample_positions
from app.engine.layers import LayerInfo
from app.files import job_array, prefixed
from app.store.store import LoadedModel


class BuildCancelled(Exception):
    """The build was asked to stop; it resumes from its last checkpoint next time."""


@dataclass(frozen=True)
class IndexPlan:
    model: LoadedModel
    dataset: ImageDataset
    layers: tuple[LayerInfo, ...]
    k: int
    batch_size: int
    histogram_samples: int  # activation values per image and unit that feed the histogram
    concepts: ConceptSource | None = None  # the dataset's concept labels: the pass dissects the layers
    dissection_size: int = 112  # the longest side of the label maps units are compared with
    min_class_images: int = 10  # a class scored by AUC has at least this many images, and so has the rest
    dictionaries: tuple[StoredDictionary, ...] = ()  # their features are indexed too, each a kind of unit
    predicted_classes: bool = False  # on a dataset without classes, score units against the model's predictions

    @property
    def class_source(self) -> str | None:
        """What units are scored against by class: "labels", the classes of the dataset's images (an
        ImageFolder's folders); else "predictions", the classes the model predicts for them; or None."""
        if len(self.dataset.classes) >= 2:
            return "labels"
        if self.predicted_classes and len(self.model.labels) >= 2:
            return "predictions"
        return None

    @property
    def class_selectivity(self) -> bool:
        return self.class_source is not None

    def identity(self) -> dict:
        """What a checkpoint must match to be resumed."""
        return {
            "format": ATLAS_FORMAT,
            "model": self.model.id,
            "weights": self.model.weights_id,
            "dataset": self.dataset.name,
            "fingerprint": self.dataset.fingerprint,
            "layers": [info.name for info in self.layers],
            "k": self.k,
            "batch_size": self.batch_size,
            "histogram_samples": self.histogram_samples,
            # Convolutions round differently in each layout: a resumed build must keep the layout it began in.
            "layout": "channels_last" if self.model.memory_format == torch.channels_last else "contiguous",
            "concepts": self.concepts.layout if self.concepts else None,
            "class_source": self.class_source,
            "dictionaries": [[d.layer, d.kind, d.digest] for d in self.dictionaries],
        }


class LayerRecorder:
    """Every accumulator of one layer; `update` runs inside the forward hook, before any in-place op
    that follows the layer can change its output."""

    kind = CHANNEL  # its units are the layer's channels

    def __init__(self, info: LayerInfo, k: int, images: int, pooled_path: Path | None, histogram_samples: int,
                 peaks: bool = False, peaks_path: Path | None = None, dissect: bool = False,
                 rows: range | None = None):
        """`images`: in the dataset; `rows`: the image ids this recorder sees (all by default; a shard of a
        distributed build sees a range). `pooled_path`, `peaks_path`: where the per-image arrays live, in
        memory when None; `peaks`: keep each image's spatial maxima, for class selectivity; `dissect`: keep the
        top activations Network Dissection thresholds and rebuilds regions from."""
        units, h, w = info.shape
        self.info = info
        self.rows = range(images) if rows is None else rows
        self.histogram_samples = histogram_samples
        self.topk = TopK(units, k, (h, w))
        self.stats = ImageStats(units)
        self.histogram = Histogram(units)
        self.pooled = _image_array(pooled_path, np.float16, (len(self.rows), units))
        self.peaks = _image_array(peaks_path, np.float32, (len(self.rows), units)) if peaks else None
        self.top_activations = TopActivations(units, (h, w), images, REGION_QUANTILE) if dissect else None

    def update(self, activations: torch.Tensor, image_ids: torch.Tensor) -> None:
        self._record(DenseMaps(activations.detach()), image_ids)

    def _record(self, maps: DenseMaps | SparseMaps, image_ids: torch.Tensor) -> None:
        """Every accumulator's share of a batch of the units' maps."""
        h, w = self.info.shape[1:]
        spatial_max, spatial_mean = maps.spatial_max(), maps.spatial_mean()
        self.topk.update(maps, image_ids, spatial_max, spatial_mean)
        means = spatial_mean.cpu().double().numpy()  # float32 values, exact in float64 (which MPS lacks)
        self.stats.update(spatial_max.cpu().double().numpy(), means)
        maps.into_histogram(self.histogram, sample_positions(image_ids, h * w, self.histogram_samples)
                            if h * w > self.histogram_samples else None)
        rows = image_ids.numpy() - self.rows.start
        self.pooled[rows] = means.astype(np.float16)
        if self.peaks is not None:
            self.peaks[rows] = spatial_max.float().cpu().numpy()
        if self.top_activations is not None:
            self.top_activations.update(maps.dense(), image_ids, spatial_max)

    def finished(self) -> FinishedLayer:
        """What the statistics are computed from, once the pass is over."""
        return FinishedLayer(summary=self.stats.summary(), topk=self.topk.ordered(), histogram=self.histogram,
                             map_shape=tuple(self.info.shape[1:]))

    def _accumulators(self) -> dict:
        parts = {"topk": self.topk, "stats": self.stats, "histogram": self.histogram}
        if self.top_activations is not None:
            parts["top_activations"] = self.top_activations
        return parts

    def merge(self, other: LayerRecorder) -> None:
        """Take in what `other`, a recorder of the same units, recorded on its own images (a shard's)."""
        for part, accumulator in self._accumulators().items():
            accumulator.merge(other._accumulators()[part])
        into = _within(self.rows, other.rows)
        self.pooled[into] = other.pooled
        if self.peaks is not None:
            self.peaks[into] = other.peaks

    def rows_state(self) -> dict[str, np.ndarray]:
        """The per-image arrays (what `state` leaves to the memory-mapped files of a checkpoint)."""
        return {"pooled": np.asarray(self.pooled)} | ({"peaks": np.asarray(self.peaks)} if self.peaks is not None
                                                     else {})

    def load_rows(self, state: dict[str, np.ndarray]) -> None:
        self.pooled[:] = state["pooled"]
        if self.peaks is not None:
            self.peaks[:] = state["peaks"]

    def flush(self) -> None:
        """The memory-mapped arrays to disk, before a checkpoint names them."""
        for array in (self.pooled, self.peaks):
            if isinstance(array, np.memmap):
                array.flush()

    def state(self) -> dict[str, np.ndarray]:
        return {f"{part}.{key}": value for part, accumulator in self._accumulators().items()
                for key, value in accumulator.state().items()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        for part, accumulator in self._accumulators().items():
            accumulator.load(prefixed(state, f"{part}."))


class FeatureRecorder(LayerRecorder):
    """The same accumulators for a dictionary's features: the layer's maps are encoded, every position on its
    own, before they are recorded, so each feature has the atlas a channel has. A dictionary whose codes are
    sparse (a TopK autoencoder's) is recorded from its k active features a position (SparseMaps), never as
    every feature's dense map, unless dissection asks for them."""

    def __init__(self, info: LayerInfo, stored: StoredDictionary, device: torch.device, *args, **kwargs):
        channels, h, w = info.shape
        super().__init__(replace(info, shape=(stored.dictionary.size, h, w)), *args, **kwargs)
        self.kind = stored.kind
        self.dictionary = stored.on(device)

    def update(self, activations: torch.Tensor, image_ids: torch.Tensor) -> None:
        activations = activations.detach().float()
        if hasattr(self.dictionary, "encode_sparse"):
            self._record(SparseMaps.encode(self.dictionary, activations), image_ids)
        else:
            super().update(encode_maps(self.dictionary, activations), image_ids)


class DenseMaps:
    """A batch of (n, c, h, w) maps, any memory layout, read as the accumulators read them: what SparseMaps
    gives of a dictionary's sparse codes, here of every value."""

    def __init__(self, activations: torch.Tensor):
        n, c, h, w = activations.shape
        self.activations = activations
        self.flat = activations.reshape(n, c, h * w)  # a view, contiguous or channels-last alike
        self.device = activations.device

    def spatial_max(self) -> torch.Tensor:
        return _spatial_max(self.activations)

    def spatial_mean(self) -> torch.Tensor:
        return self.flat.mean(dim=2)

    def __getitem__(self, pairs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.flat[pairs]

    def into_histogram(self, histogram: Histogram, positions: torch.Tensor | None) -> None:
        histogram.update(self.flat, positions)

    def dense(self) -> torch.Tensor:
        return self.activations


def _within(rows: range, part: range) -> slice:
    """Where the images `part` sit in arrays over the images `rows`."""
    return slice(part.start - rows.start, part.stop - rows.start)


def _image_array(path: Path | None, dtype, shape: tuple[int, ...]) -> np.ndarray:
    return job_array(path, dtype, shape) if path is not None else np.zeros(shape, dtype=dtype)


def _spatial_max(activations: torch.Tensor) -> torch.Tensor:
    """(n, c) maxima of (n, c, h, w) maps. `amax` beats `max(dim)` with its indices several times over,
    but over a channels-last map with few channels it is not vectorised (13x slower at 24 channels), while
    max pooling is."""
    n, c, h, w = activations.shape
    if activations.is_contiguous():
        return activations.amax(dim=(2, 3))
    return F.max_pool2d(activations, (h, w)).view(n, c)


class ImageRecord:
    """Per image of `rows` (all images by default): readable or not, and the model's top prediction with its
    probability."""

    def __init__(self, images: int, rows: range | None = None):
        self.rows = range(images) if rows is None else rows
        self.readable = np.zeros(len(self.rows), dtype=bool)
        self.prediction = np.full(len(self.rows), -1, dtype=np.int32)
        self.confidence = np.zeros(len(self.rows), dtype=np.float32)

    def update(self, image_ids: torch.Tensor, logits: torch.Tensor) -> None:
        probabilities = logits.detach().float().softmax(dim=1)
        confidence, prediction = probabilities.max(dim=1)
        ids = image_ids.numpy() - self.rows.start
        self.readable[ids] = True
        self.prediction[ids] = prediction.cpu().numpy()
        self.confidence[ids] = confidence.cpu().numpy()

    def merge(self, other: ImageRecord) -> None:
        into = _within(self.rows, other.rows)
        self.readable[into], self.prediction[into], self.confidence[into] = (other.readable, other.prediction,
                                                                            other.confidence)

    def state(self) -> dict[str, np.ndarray]:
        return {"readable": self.readable, "prediction": self.prediction, "confidence": self.confidence}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.readable, self.prediction, self.confidence = (state[k].copy() for k in ("readable", "prediction",
                                                                                     "confidence"))
