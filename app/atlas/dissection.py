"""Labels of a build's units, once its pass is over: Network Dissection against the dataset's concept
labels (pixel or image level), compositional labels by beam search, and class selectivity against an
ImageFolder's classes (formulas: docs/concepts.md, code: app/engine/dissection/).

The pass kept each unit's top activations (app/atlas/recording.py); here the label maps are read a chunk
of images at a time, mapped into the model's view, grouped into signatures, and every unit's region pixels
are counted per signature, the next chunk read while one is counted. IoU, labels and formulas are sums over
those counts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image

from app.atlas.concepts import Concept, category_numbers
from app.atlas.concepts.label_layers import nearest
from app.atlas.recording import BuildCancelled, ImageRecord, IndexPlan, LayerRecorder
from app.engine.dissection.auc import class_auc, too_few_images
from app.engine.dissection.labels import Formulas, beam_searches, concept_iou
from app.engine.dissection.region import count_region_pixels
from app.engine.dissection.signatures import SignatureTable, signature_map
from app.engine.preprocess import Resampling
from app.errors import FoveaError

log = logging.getLogger(__name__)

CONCEPTS_PER_UNIT = 5  # the best concepts kept per unit, by IoU
CLASSES_PER_UNIT = 3  # the best classes kept per unit, by AUC
FORMULA_LENGTH, BEAM = 3, 5  # Mu & Andreas 2020: formulas of up to 3 concepts, beam of 5
CHUNK = 512  # images whose label maps are held at once


@dataclass
class LayerLabels:
    thresholds: np.ndarray  # (units,) the top-0.005 quantile each region is cut at
    region_pixels: np.ndarray | None  # (units,) pixels of each unit's region over the dataset
    concepts: tuple[np.ndarray, np.ndarray] | None  # (units, CONCEPTS_PER_UNIT) concept indices and IoUs
    formulas: list[tuple[str, float] | None] | None  # per unit: the best formula and its IoU
    classes: tuple[np.ndarray, np.ndarray] | None  # (units, CLASSES_PER_UNIT) class names and AUCs


@dataclass
class Dissection:
    layout: str | None  # of the concept labels; None: classes only
    concepts: list[Concept]
    categories: list[str]
    concept_pixels: np.ndarray  # (concepts,) labelled pixels over the dataset
    concept_images: np.ndarray  # (concepts,) images with the concept
    classes: list[str]  # scored against; on predictions, those the model predicted for at least one image
    class_source: str | None  # "labels" (the images' classes), "predictions" (the model's), or None
    unscored_classes: dict[str, int]  # class -> its images, for classes too small (or too large) to score units
    min_class_images: int
    size: tuple[int, int] | None  # of the label maps in the model's view
    unreadable_labels: list[str]  # images whose label files could not be read (taken as unlabelled)
    layers: dict[str, LayerLabels]
    seconds: float

    def meta(self) -> dict:
        return {"layout": self.layout, "categories": self.categories, "classes": self.classes,
                "class_source": self.class_source, "unscored_classes": self.unscored_classes,
                "min_class_images": self.min_class_images,
                "size": list(self.size) if self.size else None, "formula_length": FORMULA_LENGTH, "beam": BEAM,
                "unreadable_labels": len(self.unreadable_labels),
                "unreadable_label_examples": self.unreadable_labels[:20]}


def dissect(plan: IndexPlan, recorders: dict[str, LayerRecorder], images: ImageRecord,
            progress: Callable[[int, int], None] | None = None,
            cancel: threading.Event | None = None) -> Dissection | None:
    """The labels of the pass's units; None when the dataset has neither concept labels nor classes.
    Setting `cancel` stops it between chunks of images (BuildCancelled)."""
    if plan.concepts is None and not plan.class_selectivity:
        return None
    started = time.perf_counter()
    readable = np.flatnonzero(images.readable)
    labels = {name: LayerLabels(thresholds=np.full(r.info.shape[0], np.nan), region_pixels=None, concepts=None,
                                formulas=None, classes=None) for name, r in recorders.items()}
    # Class selectivity beside the concept labels: its sorts let go of the GIL, and it writes other fields.
    with ThreadPoolExecutor(1) as beside:
        classes = plan.class_selectivity and beside.submit(_class_selectivity, plan, recorders, images, readable,
                                                           labels)
        found = {} if plan.concepts is None else _concept_labels(plan, recorders, readable, labels, progress, cancel)
        scored, unscored = classes.result() if classes else ([], {})
    seconds = time.perf_counter() - started
    log.info("dissected %d layers of %s in %.1f s", len(recorders), plan.model.id, seconds)
    empty = np.zeros(0, dtype=np.int64)
    return Dissection(layout=plan.concepts.layout if plan.concepts else None,
                      concepts=list(plan.concepts.concepts) if plan.concepts else [],
                      categories=list(plan.concepts.categories) if plan.concepts else [],
                      concept_pixels=found.get("pixels", empty), concept_images=found.get("images", empty),
                      classes=scored, class_source=plan.class_source, unscored_classes=unscored,
                      min_class_images=plan.min_class_images, size=found.get("size"),
                      unreadable_labels=found.get("unreadable", []), layers=labels, seconds=seconds)


def _concept_labels(plan: IndexPlan, recorders: dict[str, LayerRecorder], readable: np.ndarray,
                    labels: dict[str, LayerLabels], progress, cancel: threading.Event | None) -> dict:
    """Network Dissection and formulas into `labels`; the concepts' pixels and images, and the label size."""
    concepts, categories = list(plan.concepts.concepts), list(plan.concepts.categories)
    size = _label_size(plan)
    table = SignatureTable(category_numbers(concepts, categories), len(categories))
    counts = {name: np.zeros((r.info.shape[0], 0), dtype=np.int64) for name, r in recorders.items()}
    pixels = np.zeros(0, dtype=np.int64)
    present = []  # per image, the signatures in it: how many images have each concept
    unreadable = []  # images whose label files could not be read
    chunks = [readable[start:start + CHUNK] for start in range(0, len(readable), CHUNK)]
    read_chunk = partial(_read_chunk, plan, table, size)
    # Reading a chunk's label maps holds the GIL; counting another's (the kernel, a layer a thread) lets go of it.
    with ThreadPoolExecutor(1) as reading, ThreadPoolExecutor(2) as counting:
        ahead = reading.submit(read_chunk, chunks[0]) if chunks else None
        above = {}  # each unit's region entries, selected while the first chunk is read
        for name, recorder in recorders.items():
            labels[name].thresholds = recorder.top_activations.thresholds()
            above[name] = recorder.top_activations.above(labels[name].thresholds)
        # The costliest layers first, so that the last to finish a chunk is a short one.
        layers = sorted(recorders, key=lambda name: -_counting_cost(above[name], recorders[name], size))
        counting_chunk = {}  # layer -> its count of the chunk being counted
        for i, chunk in enumerate(chunks):
            if cancel is not None and cancel.is_set():
                raise BuildCancelled("stopped while labelling units; the pass resumes from its last checkpoint")
            stacked, chunk_present, chunk_unreadable, signatures = ahead.result()
            if i + 1 < len(chunks):
                ahead = reading.submit(read_chunk, chunks[i + 1])
            present += chunk_present
            unreadable += chunk_unreadable
            pixels = _grow(pixels, signatures) + np.bincount(stacked.ravel(), minlength=signatures)
            _add_counts(counts, counting_chunk)
            rows = np.full(len(plan.dataset), -1, dtype=np.int64)
            rows[chunk] = np.arange(len(chunk))
            count = partial(_count_layer, above=above, labels=labels, recorders=recorders, signature_maps=stacked,
                            rows=rows, chunk=chunk, signatures=signatures)
            counting_chunk = {name: counting.submit(count, name) for name in layers}
            if progress:
                progress(min((i + 1) * CHUNK, len(readable)), len(readable))
        # Every label map is read: the formulas' tables, while the last chunk is counted; then each layer's
        # labels as soon as its last count is in, beside the others' counting.
        concept_table, labelled = table.concepts(), table.labelled()
        names = [concept.id for concept in concepts]
        formulas = Formulas.of(concept_table, pixels) if names else None
        category_of = category_numbers(concepts, categories)

        def label_layer(name: str) -> None:
            if name in counting_chunk:  # (none when no image was readable)
                _add_counts(counts, {name: counting_chunk[name]})  # its own entry: threads never share one
            layer_counts = _grow(counts[name], len(table))
            iou, _, _ = concept_iou(layer_counts, pixels, concept_table, labelled, category_of)
            order = np.argsort(-iou, axis=1, kind="stable")[:, :CONCEPTS_PER_UNIT]
            labels[name].concepts = (order, np.take_along_axis(iou, order, axis=1))
            labels[name].region_pixels = layer_counts.sum(axis=1)
            labels[name].formulas = _formulas(layer_counts, formulas, names)

        for done in [counting.submit(label_layer, name) for name in layers]:
            done.result()  # raises what the layer raised
    images = np.zeros(len(concepts), dtype=np.int64)
    for image_signatures in present:
        images += concept_table[image_signatures].any(axis=0)
    return {"pixels": pixels @ concept_table, "images": images, "size": size, "unreadable": unreadable}


def _read_chunk(plan: IndexPlan, table: SignatureTable, size: tuple[int, int], chunk: np.ndarray
                ) -> tuple[np.ndarray, list[np.ndarray], list[str], int]:
    """A chunk's (n, H, W) signature maps, the signatures in each image, its images whose labels could not be
    read, and how many signatures the table had once they were interned (the maps' ids are below it)."""
    maps = np.empty((len(chunk), *size), dtype=np.int32)
    present, unreadable = [], []
    for row, image_id in enumerate(chunk):
        regions, region_concepts, readable = _regions(plan, int(image_id), size)
        ids = table.intern(region_concepts)
        present.append(ids[signature_map(regions, ids, maps[row])])
        if not readable:
            unreadable.append(plan.dataset.files[image_id])
    return maps, present, unreadable, len(table)


def _class_selectivity(plan: IndexPlan, recorders: dict[str, LayerRecorder], images: ImageRecord,
                       readable: np.ndarray, labels: dict[str, LayerLabels]) -> tuple[list[str], dict[str, int]]:
    """Each unit's most selective classes by ROC AUC of its spatial maximum, into `labels`, the classes being
    the images' own or, on a dataset without them, those the model predicts. Returns the classes scored against
    (on predictions, those predicted for an image at least once) and those left unscored (class -> its images)
    for having fewer than plan.min_class_images images, or the rest fewer."""
    if plan.class_source == "labels":
        classes = plan.dataset.classes
        class_of = {c: i for i, c in enumerate(classes)}
        image_classes = np.array([class_of.get(plan.dataset.labels[i], -1) for i in readable])
    else:
        classes = plan.model.labels
        image_classes = images.prediction[readable].astype(np.int64)
    known = image_classes >= 0
    counts = np.bincount(image_classes[known], minlength=len(classes))
    present = counts > 0 if plan.class_source == "predictions" else np.ones(len(classes), dtype=bool)
    too_few = too_few_images(image_classes[known], len(classes), plan.min_class_images) & present
    unscored = {classes[c]: int(counts[c]) for c in np.flatnonzero(too_few)}
    names = np.array(classes, dtype=object)
    for name, recorder in recorders.items():
        auc = class_auc(np.asarray(recorder.peaks[readable[known]]), image_classes[known], len(classes),
                        plan.min_class_images)
        order = np.argsort(-np.nan_to_num(auc, nan=-1.0), axis=1, kind="stable")[:, :CLASSES_PER_UNIT]
        labels[name].classes = (names[order], np.take_along_axis(auc, order, axis=1))
    return [classes[c] for c in np.flatnonzero(present)], unscored


def _label_size(plan: IndexPlan) -> tuple[int, int]:
    """The label maps' size: the model's input, scaled down so the longer side is at most the setting."""
    h, w = plan.model.preprocessing.size
    scale = min(1.0, plan.dissection_size / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _regions(plan: IndexPlan, image_id: int, size: tuple[int, int]) -> tuple[np.ndarray, list[list[int]], bool]:
    """One image's region map in the model's view (resized and cropped as the image is, NEAREST) at `size`,
    each region's concepts, and whether its labels could be read. An image without labels, or whose label
    files are broken, is one region with no concepts: a bad file is counted, never fatal."""
    try:
        found = plan.concepts.regions(plan.dataset.files[image_id])
    except (OSError, ValueError, FoveaError) as problem:  # unreadable PNG, a label file gone, a bad index row
        log.warning("labels of %s unreadable, taken as unlabelled: %s", plan.dataset.files[image_id], problem)
        return np.zeros(size, dtype=np.int64), [[]], False
    if found is None:
        return np.zeros(size, dtype=np.int64), [[]], True
    regions, region_concepts = found
    preprocessing = plan.model.preprocessing
    if preprocessing.resize is not None or regions.shape != preprocessing.size:
        picture = Image.fromarray(regions.astype(np.int32), mode="I")  # else the view is the image itself
        regions = np.asarray(preprocessing.fit(picture, Resampling.NEAREST), dtype=np.int64)
    if regions.shape != size:
        regions = nearest(regions, size)
    return regions, region_concepts, True


def _count_layer(name: str, above: dict, labels: dict, recorders: dict, signature_maps: np.ndarray, rows: np.ndarray,
                 chunk: np.ndarray, signatures: int) -> np.ndarray:
    units, h, w = recorders[name].info.shape
    entries = above[name]
    start, stop = np.searchsorted(entries["image"], [chunk[0], chunk[-1] + 1])
    part = {key: value[start:stop] for key, value in entries.items()}
    return count_region_pixels(part, labels[name].thresholds, (h, w), signature_maps, rows, signatures, units)


def _counting_cost(entries: dict[str, np.ndarray], recorder: LayerRecorder, size: tuple[int, int]) -> float:
    """About what counting a layer's regions costs: its entries times the label pixels of one map cell."""
    _, h, w = recorder.info.shape
    return len(entries["unit"]) * (size[0] / h) * (size[1] / w)


def _add_counts(counts: dict[str, np.ndarray], counted: dict[str, Future]) -> None:
    """Add each layer's counted chunk (the signature axis grows as images come) to its running counts."""
    for name, future in counted.items():
        chunk_counts = future.result()
        counts[name] = _grow(counts[name], chunk_counts.shape[1]) + chunk_counts


def _grow(counts: np.ndarray, signatures: int) -> np.ndarray:
    """Pad the signature axis (the last) with zeros to `signatures` columns: the table grows as images come."""
    missing = signatures - counts.shape[-1]
    return counts if missing == 0 else np.pad(counts, [(0, 0)] * (counts.ndim - 1) + [(0, missing)])


def _formulas(regions: np.ndarray, formulas: Formulas | None, names: list[str]) -> list[tuple[str, float] | None]:
    """Each unit's best formula and its IoU; None for a unit with an empty region."""
    if formulas is None:
        return [None] * len(regions)
    searched = np.flatnonzero(regions.sum(axis=1) > 0)
    found: list[tuple[str, float] | None] = [None] * len(regions)
    for unit, (formula, iou) in zip(searched, beam_searches(regions[searched], formulas, FORMULA_LENGTH, BEAM)):
        found[unit] = (formula.name(names), iou)
    return found
