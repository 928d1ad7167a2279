"""The `fovea` command: serve the dashboard, inspect the model store, make the demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from app import __version__
from app import cli_jobs as jobs
from app.allocator import tune_allocator
from app.errors import FoveaError
from app.settings import BUILTIN_MODEL_DIR, Settings


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override FOVEA_* environment variables)")
    group.add_argument("--data-dir", type=Path, help="where Fovea writes everything (FOVEA_DATA_DIR)")
    group.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (FOVEA_DEVICE)")
    group.add_argument("--model-dir", dest="model_dirs", type=Path, action="append",
                       help="an extra folder of model cards; repeat for more (FOVEA_MODEL_DIRS)")
    group.add_argument("--no-builtin-models", dest="builtin_models", action="store_false", default=None,
                       help="skip the bundled demo models (FOVEA_BUILTIN_MODELS=false)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fovea", description="Explore what CNN neurons respond to.")
    parser.add_argument("--version", action="version", version=f"fovea {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="start the dashboard and the API")
    serve.add_argument("--host", help="interface to listen on (FOVEA_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (FOVEA_PORT, default 8000)")
    _settings_flags(serve)
    serve.set_defaults(handler=_serve)

    models = commands.add_parser("models", help="list the model store, inspect a model, checksum a file")
    models_commands = models.add_subparsers(dest="models_command", metavar="ACTION")
    listing = models_commands.add_parser("list", help="every model card and whether it loads (default)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    _settings_flags(listing)
    inspect = models_commands.add_parser("inspect", help="one model: its card and layers with shapes")
    inspect.add_argument("model", help="model id")
    inspect.add_argument("--all", action="store_true", help="every explorable layer, not only the defaults")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    _settings_flags(inspect)
    checksum = models_commands.add_parser("checksum", help="the sha256 to put in a card's weights.sha256")
    checksum.add_argument("file", type=Path)
    _settings_flags(models)
    models.set_defaults(handler=_models, json=False)

    index = commands.add_parser("index", help="build a model's atlas on a dataset (resumes if interrupted)")
    index.add_argument("model", help="model id")
    index.add_argument("--dataset", help="a folder of images (ImageFolder or flat), or `demo` (the default: the demo's "
                                         "held-out shapes)")
    index.add_argument("--layers", nargs="+", metavar="LAYER", help="layers to index (default: the model's defaults)")
    index.add_argument("--k", type=int, help="top images kept per unit (FOVEA_ATLAS_TOP_K, default 32)")
    index.add_argument("--ray", nargs="?", const="auto", metavar="auto|local|ADDRESS",
                       help="run the pass on a Ray cluster (needs fovea[ray]): `auto` (the default) joins the running "
                            "cluster, `local` starts one on this machine, or name a cluster's address")
    index.add_argument("--ray-replicas", type=int, metavar="N",
                       help="model replicas on the cluster (default: one per GPU, else one per CPU)")
    _settings_flags(index)
    index.set_defaults(handler=jobs.index)

    dissect = commands.add_parser("dissect", help="label a model's units with concepts (Network Dissection, "
                                                  "compositional labels, class selectivity): an atlas of a dataset "
                                                  "with concept masks or classes (resumes if interrupted)")
    dissect.add_argument("model", help="model id")
    dissect.add_argument("--dataset",
                         help="a folder in Broden's layout, Fovea's label-map layout (docs/concepts.md), an "
                              "ImageFolder (its classes only) or a flat folder (the model's predicted classes), or "
                              "`demo` (the default: the demo's held-out shapes and their masks)")
    dissect.add_argument("--layers", nargs="+", metavar="LAYER", help="layers (default: the model's defaults)")
    dissect.add_argument("--k", type=int, help="top images kept per unit (FOVEA_ATLAS_TOP_K, default 32)")
    _settings_flags(dissect)
    dissect.set_defaults(handler=jobs.dissect)

    visualize = commands.add_parser("visualize", help="render feature visualisations of a model's units (resumes "
                                                      "if interrupted)")
    visualize.add_argument("model", help="model id")
    visualize.add_argument("--layers", nargs="+", metavar="LAYER", help="layers (default: the model's defaults)")
    visualize.add_argument("--units", nargs="+", type=int, metavar="UNIT", help="units of each layer (default: all)")
    visualize.add_argument("--steps", type=int, help="optimisation steps (default: FOVEA_VISUALIZATION_STEPS, as pages "
                                                     "ask for, so they find what this renders)")
    visualize.add_argument("--size", type=int, help="image side in pixels (default: the model's input size)")
    visualize.add_argument("--param", choices=["fft", "maco", "pixels"], default="fft",
                           help="parameterisation (default fft; maco takes its magnitudes from the model's atlas)")
    visualize.add_argument("--batch", type=int, default=32, help="units rendered together (default 32)")
    visualize.add_argument("--facets", type=int, metavar="F",
                           help="also render F facets of each unit, from its top images in the model's atlas")
    visualize.add_argument("--seed", type=int, default=0)
    visualize.add_argument("--precision", choices=["auto", "float32", "bfloat16"],
                           help="of the model's pass (default: FOVEA_VISUALIZATION_PRECISION, auto: bfloat16 where "
                                "it runs the model faster, as pages ask for)")
    visualize.add_argument("--kind", default="channel",
                           help="`channel` (default) or a dictionary's name: its features (`fovea dictionary`)")
    _settings_flags(visualize)
    visualize.set_defaults(handler=jobs.visualize)

    dictionary = commands.add_parser(
        "dictionary", help="learn a dictionary of a layer's features (a sparse autoencoder or NMF) on an atlas "
                           "dataset's activations, then index its features as units (resumes if interrupted)")
    dictionary.add_argument("model", help="model id")
    dictionary.add_argument("--layer", required=True, help="the layer whose activations it learns from")
    dictionary.add_argument("--method", choices=["sae", "nmf", "semi-nmf"], default="sae",
                            help="sae: a TopK sparse autoencoder (default); nmf: non-negative matrix factorisation "
                                 "(a layer after a ReLU); semi-nmf: non-negative codes of features of any sign (a "
                                 "layer with negative values: a linear bottleneck, a residual sum)")
    dictionary.add_argument("--size", type=int, help="features (default: twice the layer's channels)")
    dictionary.add_argument("--sparsity", type=int, metavar="K",
                            help="the SAE's active features per position (default: channels / 8, at least 4)")
    dictionary.add_argument("--steps", type=int,
                            help="optimisation steps: the SAE's minibatches (FOVEA_DICTIONARY_STEPS, default 2000), "
                                 "(semi-)NMF's passes over every vector (FOVEA_DICTIONARY_NMF_ITERATIONS, default 200)")
    dictionary.add_argument("--name", help="its kind of unit in links (default: METHOD-SIZE, e.g. sae-384)")
    dictionary.add_argument("--replace", action="store_true",
                            help="learn it again where a dictionary of that name was learned otherwise (another "
                                 "dataset, size or method); without it, that is refused")
    dictionary.add_argument("--dataset", help="a folder of images, or `demo` (the default), as for `fovea index`")
    dictionary.add_argument("--seed", type=int, default=0)
    _settings_flags(dictionary)
    dictionary.set_defaults(handler=jobs.dictionary)

    demo = commands.add_parser("demo", help="generate the demo dataset or retrain the demo models")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    generate = demo_commands.add_parser("generate", help="write demo images and concept masks to disk")
    generate.add_argument("--split", choices=["heldout", "train", "all"], default="heldout")
    generate.add_argument("--count", type=int, help="images per split (default: the full split)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--out", type=Path, help="folder (default: DATA_DIR/datasets/demo-shapes)")
    _settings_flags(generate)
    train = demo_commands.add_parser("train", help="train the demo models and write their cards")
    train.add_argument("--model", choices=["all", "shapes-cnn", "shapes-mobilenet"], default="all")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, default=BUILTIN_MODEL_DIR,
                       help=f"where weights and cards go (default: {BUILTIN_MODEL_DIR})")
    demo.set_defaults(handler=_demo)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    names = ("data_dir", "device", "model_dirs", "builtin_models", "host", "port")  # flags named like settings
    overrides = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> int:
    tune_allocator()  # before any command imports torch
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
        logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        return args.handler(args, settings) or 0
    except ValidationError as exc:
        for error in exc.errors():
            print(f"fovea: setting {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return 2
    except FoveaError as exc:
        print(f"fovea: {exc.message}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from app.main import serve

    serve(settings)
    return 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    action = args.models_command or "list"
    if action == "checksum":
        from app.store.checkpoints import sha256_file

        if not args.file.is_file():
            raise FoveaError(f"{args.file} is not a file")
        print(sha256_file(args.file))
        return 0
    from app.store.store import load_store

    logging.getLogger("app.store").setLevel(logging.CRITICAL)  # the table below reports every failure
    for folder in settings.card_dirs():
        if not folder.is_dir():
            print(f"model card folder {folder} does not exist", file=sys.stderr)
    store = load_store(settings, only=None if action == "list" else args.model)
    if action == "list":
        return _print_model_list(store, args.json)
    model = store.get(args.model)
    if args.json:
        from app.api.schemas import model_detail

        print(model_detail(model).model_dump_json(indent=2))
        return 0 if model.ready else 1
    return _print_model(model, args.all)


def _print_model_list(store, as_json: bool) -> int:
    from app.api.schemas import model_summary

    if as_json:
        print(json.dumps([model_summary(m).model_dump() for m in store], indent=2))
    elif len(store) == 0:
        print("no model cards found")
    for model in ([] if as_json else store):
        if model.ready:
            print(f"{model.id:<24} ready  {model.card.name} ({len(model.layers)} layers, "
                  f"{model.parameters:,} parameters, {model.device})")
        else:
            print(f"{model.id:<24} ERROR  {model.error}")
    return 0 if all(model.ready for model in store) else 1


def _print_model(model, show_all: bool) -> int:
    if not model.ready:
        print(f"{model.id}: ERROR {model.error}")
        return 1
    card, prep = model.card, model.preprocessing
    print(f"{card.name} [{model.id}] from {model.card_path}")
    print(f"  input {prep.size[0]}x{prep.size[1]}, mean {prep.mean}, std {prep.std}")
    print(f"  {len(model.labels)} classes, {model.parameters:,} parameters, on {model.device}")
    layers = [info for info in model.layers if show_all or info.default]
    print(f"  {len(layers)} of {len(model.layers)} explorable layers"
          f"{'' if show_all else ' (the default selection; --all for every one)'}:")
    width = max((len(info.name) for info in layers), default=5)
    print(f"    {'layer':<{width}}  {'type':<22} {'C x H x W':>16} {'params':>10}")
    for info in layers:
        shape = "x".join(str(s) for s in info.shape)
        print(f"    {info.name:<{width}}  {info.type:<22} {shape:>16} {info.parameters:>10,}")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.demo_command == "train":
        from app.demo.recipes import RECIPES, train_recipes

        ids = list(RECIPES) if args.model == "all" else [args.model]
        started = time.perf_counter()
        train_recipes(ids, args.out, seed=args.seed)
        print(f"trained {', '.join(ids)} in {time.perf_counter() - started:.0f} s; cards in {args.out}")
        return 0
    from app.demo.dataset import SPLIT_SIZES, write_split

    out = args.out or settings.data_dir / "datasets" / "demo-shapes"
    splits = ["heldout", "train"] if args.split == "all" else [args.split]
    for split in splits:
        count = args.count or SPLIT_SIZES[split]
        started = time.perf_counter()
        target = write_split(out, split, count, seed=args.seed)
        print(f"{split}: {count} images in {time.perf_counter() - started:.1f} s -> {target}")
    return 0
