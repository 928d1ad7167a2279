"""The two demo models: how each is built and trained, and the card `fovea demo train` writes for it."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from app.demo.dataset import MEAN, SPLIT_SIZES, STD, render_split
from app.demo.scenes import DEFAULT_SEED, DEFAULT_SIZE, SHAPE_KINDS
from app.demo.train import train
from app.files import atomic_write
from app.store.builders import build_module
from app.store.cards import Architecture
from app.store.checkpoints import sha256_file

# Both demo models learn from the same rendered scenes; the card says so wherever a prediction is shown.
TRAINED_ON = (f"Fovea's procedural shapes only: {SPLIT_SIZES['train']:,} rendered {DEFAULT_SIZE} px scenes of "
              f"{len(SHAPE_KINDS)} kinds of shape on textured backgrounds. It has never seen a photo: any image "
              f"gets one of these {len(SHAPE_KINDS)} shape names.")


@dataclass(frozen=True)
class Recipe:
    id: str
    name: str
    description: str
    architecture: dict
    epochs: int
    lr: float


RECIPES: dict[str, Recipe] = {
    recipe.id: recipe
    for recipe in (
        Recipe(
            id="shapes-cnn",
            name="ShapesCNN (demo)",
            description="A plain VGG-style CNN (the demo's own module, loaded like a user's) trained on "
                        "Fovea's procedural shapes. The class is the kind of the largest shape.",
            architecture={"callable": "app.demo.architectures:shapes_cnn", "kwargs": {"num_classes": 10}},
            epochs=6,
            lr=0.1,
        ),
        Recipe(
            id="shapes-mobilenet",
            name="MobileNetV3-Small (demo)",
            description="MobileNetV3-Small, torchvision's mobilenet_v3_small written out (the same modules and "
                        "names), trained from scratch on Fovea's procedural shapes.",
            architecture={"callable": "app.demo.mobilenet:mobilenet_v3_small", "kwargs": {"num_classes": 10}},
            epochs=10,
            lr=0.1,
        ),
    )
}


def train_recipes(recipe_ids: list[str], out_dir: Path, seed: int = DEFAULT_SEED,
                  log: Callable[[str], None] = print) -> dict[str, float]:
    """Render the data once, train each recipe, write `<id>.safetensors` and `<id>.toml` into `out_dir`."""
    log(f"rendering {SPLIT_SIZES['train']} training and {SPLIT_SIZES['heldout']} held-out images")
    train_x, train_y = render_split("train", SPLIT_SIZES["train"], seed)
    heldout_x, heldout_y = render_split("heldout", SPLIT_SIZES["heldout"], seed)
    accuracies = {}
    for recipe_id in recipe_ids:
        recipe = RECIPES[recipe_id]
        log(f"training {recipe.id} for {recipe.epochs} epochs")
        torch.manual_seed(seed)
        model = build_module(Architecture(**recipe.architecture), out_dir)
        result = train(model, train_x, train_y, heldout_x, heldout_y, mean=MEAN, std=STD,
                       epochs=recipe.epochs, lr=recipe.lr, seed=seed, log=log)
        weights = out_dir / f"{recipe.id}.safetensors"
        state = {key: value.contiguous() for key, value in model.state_dict().items()}
        atomic_write(weights, lambda tmp, state=state: save_file(state, str(tmp)))
        card = card_text(recipe, weights.name, sha256_file(weights), result.heldout_accuracy,
                         result.seconds, seed)
        atomic_write(out_dir / f"{recipe.id}.toml", lambda tmp, card=card: tmp.write_text(card))
        log(f"{recipe.id}: held-out accuracy {result.heldout_accuracy:.4f} in {result.seconds:.0f} s")
        accuracies[recipe.id] = result.heldout_accuracy
    return accuracies


def card_text(recipe: Recipe, weights_file: str, sha256: str, accuracy: float, seconds: float,
              seed: int) -> str:
    lines = [
        f"# Written by `fovea demo train` (seed {seed}) on {platform.machine()}, torch {torch.__version__}.",
        f"id = {_toml(recipe.id)}",
        f"name = {_toml(recipe.name)}",
        f"description = {_toml(recipe.description)}",
        f"trained_on = {_toml(TRAINED_ON)}",
        "",
        "[architecture]",
        *(f"{key} = {_toml(value)}" for key, value in recipe.architecture.items()),
        "",
        "[weights]",
        f"file = {_toml(weights_file)}",
        f"sha256 = {_toml(sha256)}",
        "",
        "[input]",
        f"size = {_toml([DEFAULT_SIZE, DEFAULT_SIZE])}",
        f"mean = {_toml(list(MEAN))}",
        f"std = {_toml(list(STD))}",
        "",
        "[labels]",
        f"names = {_toml(list(SHAPE_KINDS))}",
        "",
        "[metrics]",
        f"heldout_accuracy = {accuracy:.4f}",
        f"training_seconds = {round(seconds)}",
        f"training_epochs = {recipe.epochs}",
    ]
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    """TOML for strings, numbers, lists and flat tables (JSON scalars and arrays are valid TOML)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    return json.dumps(value)

