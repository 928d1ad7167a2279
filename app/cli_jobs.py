"""The `fovea` commands that run long jobs over a dataset: index, dissect, visualize and dictionary, each with
a progress bar on stderr (every one resumes where a killed run stopped). Imports are inside the handlers, so
that `fovea --help` does not load torch."""

from __future__ import annotations

import argparse
import sys
import time

from app.settings import Settings


def index(args: argparse.Namespace, settings: Settings) -> int:
    from app.atlas.indexer import index_model
    from app.store.store import load_store

    model = load_store(settings, only=args.model).ready(args.model)
    dataset = chosen_dataset(args, settings)
    print(f"indexing {model.id} on {dataset.name} ({len(dataset)} images from {dataset.root})", file=sys.stderr)
    report_dropped_layers(model, dataset.name, args.layers, settings)
    started = time.perf_counter()
    target = index_model(model, dataset, settings, layers=args.layers, k=args.k, progress=ProgressBar(),
                         ray=args.ray, ray_replicas=args.ray_replicas)
    end_bar()
    print(f"atlas written to {target} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    report_unreadable(target)
    return 0


def dissect(args: argparse.Namespace, settings: Settings) -> int:
    from app.atlas.concepts import open_concepts
    from app.atlas.indexer import index_model
    from app.atlas.reader import Atlas
    from app.errors import InvalidInput
    from app.store.store import load_store

    model = load_store(settings, only=args.model).ready(args.model)
    dataset = chosen_dataset(args, settings)
    concepts = open_concepts(dataset.root)
    classes = len(dataset.classes) >= 2
    predicted = not classes and settings.predicted_class_selectivity and len(model.labels) >= 2
    if concepts is None and not classes and not predicted:
        raise InvalidInput(f"{dataset.root} has neither concept labels (the demo's, Broden's or Fovea's label-map "
                           f"layout: docs/concepts.md) nor classes (an ImageFolder's folders) to label units with, "
                           f"and FOVEA_PREDICTED_CLASS_SELECTIVITY is off")
    what = (f"{concepts.layout} concept labels" if concepts else "classes only" if classes
            else "no classes: the model's predicted classes")
    print(f"dissecting {model.id} on {dataset.name} ({len(dataset)} images, {what})", file=sys.stderr)
    report_dropped_layers(model, dataset.name, args.layers, settings)
    started = time.perf_counter()
    target = index_model(model, dataset, settings, layers=args.layers, k=args.k, progress=ProgressBar(),
                         dissect_progress=ProgressBar())
    end_bar()
    print(f"atlas with labels written to {target} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    report_unreadable(target)
    atlas = Atlas(target)
    categories = atlas.meta["dissection"]["categories"]
    if categories:
        _print_labelled(atlas, settings)
    if atlas.meta["dissection"]["classes"]:
        _print_selective(atlas)
    return 0


def _print_labelled(atlas, settings: Settings) -> None:
    from app.atlas.labels import detector_summary

    threshold = settings.dissection_iou_threshold
    summary = detector_summary(atlas, threshold, settings.selectivity_auc_threshold)
    categories = summary["categories"]
    print(f"units labelled (IoU >= {threshold:g}), by the label's category:")
    print("layer".ljust(24) + "units".rjust(7) + "".join(c[:10].rjust(11) for c in categories) + "      any")
    for layer in summary["layers"]:
        cells = "".join(f"{layer['labelled'][c] / layer['units']:11.0%}" for c in categories)
        print(f"{_layer_name(layer)[:23].ljust(24)}{layer['units']:7d}{cells}"
              f"{sum(layer['labelled'].values()) / layer['units']:9.0%}")


def _layer_name(row: dict) -> str:
    """A summary row's layer, with its kind when its units are a dictionary's features."""
    return row["layer"] if row["kind"] == "channel" else f"{row['layer']} {row['kind']}"


def _print_selective(atlas) -> None:
    from app.atlas.labels import class_selectivity_summary, class_source

    levels = (0.75, 0.9, 0.99)
    kind = "predicted class" if class_source(atlas) == "predictions" else "class"
    print(f"{kind} selectivity: units whose most selective {kind} reaches each ROC AUC")
    print("layer".ljust(24) + "units".rjust(7) + "".join(f">= {a:.2f}".rjust(10) for a in levels))
    for layer in class_selectivity_summary(atlas, levels):
        cells = "".join(f"{count / layer['units']:10.0%}" for count in layer["reaching"])
        print(f"{_layer_name(layer)[:23].ljust(24)}{layer['units']:7d}{cells}")


def visualize(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from app.atlas.dictionary_store import DictionaryStore
    from app.atlas.image_prior import render_prior
    from app.atlas.indexer import chosen_layers
    from app.atlas.kinds import CHANNEL
    from app.atlas.registry import AtlasRegistry
    from app.atlas.visualize import (
        Target,
        default_render_settings,
        render_precision,
        variant,
        visualize_facets,
        visualize_layer,
    )
    from app.engine.featurevis.prior import LUCID
    from app.store.store import load_store

    model = load_store(settings, only=args.model).ready(args.model)
    layers = [info.name for info in chosen_layers(model, args.layers)]
    defaults = default_render_settings(settings, model, LUCID)
    size = (args.size, args.size) if args.size else defaults.size
    prior = render_prior(AtlasRegistry(settings.data_dir), model, size, args.param)
    precision = render_precision(args.precision, model) if args.precision else defaults.precision
    render_settings = replace(defaults, steps=args.steps or defaults.steps, size=size, param=args.param,
                              seed=args.seed, prior=prior, precision=precision)
    print(f"rendering {model.id}: {', '.join(layers)} ({variant(render_settings)}; colours from {prior.source}) "
          f"into {settings.data_dir}", file=sys.stderr)
    atlas = AtlasRegistry(settings.data_dir).get(model.id) if args.facets else None  # 409 naming fovea index
    dictionaries = DictionaryStore(settings.data_dir)
    for layer in layers:
        target = Target(layer, None if args.kind == CHANNEL else dictionaries.get(model, layer, args.kind))
        print(f"{layer} ({target.kind}):", file=sys.stderr)
        visualize_layer(model, target, settings.data_dir, render_settings, units=args.units, batch_size=args.batch,
                        progress=ProgressBar(unit="units"))
        end_bar()
        if atlas is not None:
            print(f"{layer}, {args.facets} facets of each unit:", file=sys.stderr)
            units = args.units or range(atlas.layer(layer, target.kind).units)
            bar = ProgressBar(unit="units")
            for done, unit in enumerate(units, 1):  # each unit's facets are one batch, stored as it ends
                visualize_facets(model, atlas, target, unit, args.facets, settings.data_dir, render_settings)
                bar(done, len(units))
            end_bar()
    return 0


def dictionary(args: argparse.Namespace, settings: Settings) -> int:
    from app.atlas.dictionaries import DictionaryRequest, check_request, train_dictionary
    from app.atlas.indexer import index_model
    from app.atlas.registry import AtlasRegistry
    from app.errors import AtlasMissing
    from app.store.store import load_store

    model = load_store(settings, only=args.model).ready(args.model)
    channels = model.layer(args.layer).shape[0]
    request = DictionaryRequest(layer=args.layer, method=args.method, size=args.size or 2 * channels,
                                sparsity=args.sparsity or max(4, channels // 8),
                                steps=args.steps or (settings.dictionary_steps if args.method == "sae"
                                                     else settings.dictionary_nmf_iterations),
                                max_vectors=settings.dictionary_max_vectors, seed=args.seed, name=args.name)
    check_request(model, request, settings.dictionary_max_size, settings.dictionary_max_bytes)
    dataset = chosen_dataset(args, settings)
    sparsity = f", {request.sparsity} active" if request.method == "sae" else ""
    print(f"learning {request.kind} of {model.id} {request.layer}: {request.method}, {request.size} features"
          f"{sparsity}, on {dataset.name} ({len(dataset)} images)", file=sys.stderr)
    bars = {"vectors": ProgressBar(unit="images"), "steps": ProgressBar(unit="steps")}
    shown = []

    def progress(phase: str, done: int, total: int) -> None:
        if shown and shown[-1] != phase:
            end_bar()
        if not shown or shown[-1] != phase:
            shown.append(phase)
        bars[phase](done, total)

    stored = train_dictionary(model, dataset, request, settings.data_dir, settings.index_checkpoint_seconds,
                              workers=settings.index_workers, batch_size=settings.index_batch_size,
                              progress=progress, replace=args.replace)
    figures = stored.meta["figures"]
    end_bar()
    print(f"{stored.kind}: {figures['variance_explained']:.1%} of the variance explained on "
          f"{figures['vectors']:,} held-out positions, {figures['mean_active']:.1f} features active per position, "
          f"{figures['dead_features']} dead of {request.size}; {stored.meta['seconds']:.1f} s", file=sys.stderr)
    try:  # the atlas it learned on, rebuilt with its features: the same layers and k as before
        meta = AtlasRegistry(settings.data_dir).get(model.id, dataset.name).meta
        layers, k = meta["layers"], meta["k"]
    except AtlasMissing:
        layers, k = None, None
    print(f"indexing its features in the {dataset.name!r} atlas", file=sys.stderr)
    target = index_model(model, dataset, settings, layers=layers, k=k, progress=ProgressBar())
    end_bar()
    print(f"atlas written to {target}; pages: /m/{model.id}/{request.layer}/{stored.kind}?dataset={dataset.name}",
          file=sys.stderr)
    return 0


def report_dropped_layers(model, dataset_name: str, layers: list[str] | None, settings: Settings) -> None:
    """An atlas is rebuilt whole: the layers of the one it replaces that this build leaves out are said."""
    from app.atlas.indexer import chosen_layers
    from app.atlas.registry import AtlasRegistry
    from app.errors import AtlasMissing

    try:
        before = AtlasRegistry(settings.data_dir).get(model.id, dataset_name).meta["layers"]
    except AtlasMissing:
        return
    now = {info.name for info in chosen_layers(model, layers)}
    dropped = [layer for layer in before if layer not in now]
    if dropped:
        print(f"the atlas this build replaces also has {', '.join(dropped)}, which this one leaves out: to keep them, "
              f"name every layer in --layers", file=sys.stderr)


def report_unreadable(target) -> None:
    """The images that could not be decoded, skipped and counted by the build."""
    from app.atlas.reader import Atlas

    meta = Atlas(target).meta
    if meta["unreadable"]:
        examples = ", ".join(str(path) for path in meta["unreadable_examples"][:5])
        print(f"{meta['unreadable']} image(s) could not be read and were skipped, e.g. {examples}", file=sys.stderr)


def chosen_dataset(args: argparse.Namespace, settings: Settings):
    """The dataset that --dataset names; without it the demo's, said on stderr: a user's own model indexed on
    shapes by accident makes an atlas that every link without ?dataset= then opens."""
    from app.atlas.indexer import resolve_dataset

    if args.dataset is None:
        print("no --dataset given: the demo's held-out shapes (for your own images, --dataset FOLDER)",
              file=sys.stderr)
    return resolve_dataset(args.dataset or "demo", settings)


def end_bar() -> None:
    """End the line a progress bar left open on a terminal (in a log, each of its lines is whole already)."""
    if sys.stderr.isatty():
        print(file=sys.stderr)


class ProgressBar:
    """A one-line progress bar on stderr with items per second and the time left. Where stderr is a file or a
    pipe (a log), a line every LOG_SECONDS instead, so the log holds a readable history, not one long line."""

    LOG_SECONDS = 10.0

    def __init__(self, width: int = 30, unit: str = "images"):
        self.width, self.unit, self.started, self.first = width, unit, time.perf_counter(), None
        self.logged = None  # when the last line went to a log

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = done  # a resumed build starts part-way
        rate = (done - self.first) / max(now - self.started, 1e-9)
        left = f"{(total - done) / rate:5.0f} s left" if rate > 0 else "    ? s left"
        filled = int(self.width * done / max(total, 1))
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {self.unit}  {rate:6.1f}/s  {left}"
        if sys.stderr.isatty():
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        elif self.logged is None or done >= total or now - self.logged >= self.LOG_SECONDS:
            self.logged = now
            print(line, file=sys.stderr, flush=True)
