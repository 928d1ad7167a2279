"""Procedural scenes for the embedded demo: what is in an image, sampled deterministically from a seed.

A scene is plain data (shapes with kind, colour, texture and pose on a textured background); `render.py`
turns it into pixels and an exact instance map. Keeping sampling and drawing apart lets tests hand-build
scenes whose pixels can be checked by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The class label of a scene is the kind of its main (largest, unoccluded) shape.
SHAPE_KINDS: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "hexagon", "heart", "crescent", "arrow",
)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "orange": (247, 140, 30),
    "yellow": (240, 218, 50),
    "green": (44, 160, 64),
    "cyan": (40, 200, 215),
    "blue": (38, 84, 214),
    "purple": (130, 60, 190),
    "pink": (240, 128, 190),
    "white": (238, 238, 238),
    "black": (28, 28, 28),
}
TEXTURES: tuple[str, ...] = ("solid", "stripes", "checker", "dots", "noise")
SPLITS: dict[str, int] = {"train": 0, "heldout": 1}  # split name -> stream id in the seed sequence

DEFAULT_SIZE = 112
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Pattern:
    """Where a texture's stripes, checks or dots fall: period in pixels, angle in radians, phase in [0, 1)."""

    period: float = 6.0
    angle: float = 0.0
    phase: float = 0.0


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    texture: str
    cx: float  # centre, in pixels from the left edge
    cy: float  # centre, in pixels from the top edge
    radius: float  # size in pixels: the shape spans about this circle (a square reaches its corners past it)
    angle: float = 0.0  # rotation in radians
    pattern: Pattern = Pattern()


@dataclass(frozen=True)
class Background:
    colour: str
    texture: str
    pattern: Pattern = Pattern()


@dataclass(frozen=True)
class Scene:
    """Everything needed to draw one image; shapes are drawn in order, so later ones occlude earlier ones."""

    size: int
    background: Background
    shapes: tuple[Shape, ...]
    label: str
    noise_seed: int = 0  # seeds the "noise" texture and the sensor noise
    sensor_noise: float = 0.0  # standard deviation of additive pixel noise, in 0..255 units

    def to_json(self) -> dict:
        return {
            "size": self.size,
            "label": self.label,
            "noise_seed": self.noise_seed,
            "sensor_noise": self.sensor_noise,
            "background": _as_dict(self.background),
            "shapes": [_as_dict(s) for s in self.shapes],
        }


def _as_dict(item: Shape | Background) -> dict:
    data = dict(item.__dict__)
    data["pattern"] = dict(item.pattern.__dict__)
    return data


def sample_scene(seed: int, split: str, index: int, size: int = DEFAULT_SIZE) -> Scene:
    """The scene at `index` of `split`: independent of every other index, so any image can be drawn alone."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    rng = np.random.default_rng([seed, SPLITS[split], index])
    label = SHAPE_KINDS[index % len(SHAPE_KINDS)]  # balanced classes by construction
    background = Background(
        colour=_choice(rng, list(COLOURS)),
        texture=_choice(rng, TEXTURES),
        pattern=_sample_pattern(rng, size),
    )
    main_radius = rng.uniform(0.2, 0.32) * size
    main_cx, main_cy = (rng.uniform(main_radius, size - main_radius) for _ in range(2))
    shapes = []
    for _ in range(int(rng.choice([0, 1, 2], p=[0.3, 0.4, 0.3]))):
        radius = rng.uniform(0.08, 0.14) * size
        # Keep distractors mostly clear of the main shape so the label stays unambiguous.
        for _attempt in range(10):
            cx, cy = (rng.uniform(radius, size - radius) for _ in range(2))
            if math.hypot(cx - main_cx, cy - main_cy) > main_radius + 0.5 * radius:
                shapes.append(_sample_shape(rng, size, [k for k in SHAPE_KINDS if k != label],
                                            background.colour, cx, cy, radius))
                break
    shapes.append(_sample_shape(rng, size, [label], background.colour, main_cx, main_cy, main_radius))
    return Scene(
        size=size,
        background=background,
        shapes=tuple(shapes),
        label=label,
        noise_seed=int(rng.integers(2**31)),
        sensor_noise=4.0,
    )


def _sample_shape(rng: np.random.Generator, size: int, kinds: list[str], background_colour: str,
                  cx: float, cy: float, radius: float) -> Shape:
    return Shape(
        kind=_choice(rng, kinds),
        colour=_choice(rng, [c for c in COLOURS if c != background_colour]),
        texture=_choice(rng, TEXTURES),
        cx=float(cx),
        cy=float(cy),
        radius=float(radius),
        angle=float(rng.uniform(0, 2 * math.pi)),
        pattern=_sample_pattern(rng, size),
    )


def _sample_pattern(rng: np.random.Generator, size: int) -> Pattern:
    return Pattern(
        period=float(rng.uniform(0.04, 0.08) * size),
        angle=float(rng.uniform(0, math.pi)),
        phase=float(rng.uniform(0, 1)),
    )


def _choice(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]
