"""Draw a `Scene` into pixels and an exact instance map, with numpy only.

Coverage is decided per pixel centre with no anti-aliasing, so the instance map (and every concept mask
derived from it) covers exactly the pixels a shape was drawn on.
"""

from __future__ import annotations

import math

import numpy as np

from app.demo.scenes import COLOURS, SHAPE_KINDS, TEXTURES, Background, Pattern, Scene, Shape

BACKGROUND = 0  # instance id of the background; shape i of a scene has id i + 1


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Return the image (h, w, 3) uint8 and the instance map (h, w) uint8 of the topmost shape per pixel."""
    size = scene.size
    rng = np.random.default_rng(scene.noise_seed)
    py, px = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    image = _paint(scene.background, px, py, rng, contrast=0.3)
    instances = np.full((size, size), BACKGROUND, dtype=np.uint8)
    for number, shape in enumerate(scene.shapes, start=1):
        mask = shape_mask(shape, px, py)
        image[mask] = _paint(shape, px[mask], py[mask], rng, contrast=0.5)
        instances[mask] = number
    if scene.sensor_noise > 0:
        image = image + rng.normal(0.0, scene.sensor_noise, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), instances


def concept_masks(scene: Scene, instances: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks, one per concept present: `shape:<kind>`, `colour:<name>`, `texture:<name>`.

    The background contributes its colour and texture, never a shape kind.
    """
    layers: list[tuple[int, Background | Shape]] = [(BACKGROUND, scene.background)]
    layers += list(enumerate(scene.shapes, start=1))
    masks: dict[str, np.ndarray] = {}
    for number, item in layers:
        pixels = instances == number
        if not pixels.any():
            continue
        concepts = [f"colour:{item.colour}", f"texture:{item.texture}"]
        if isinstance(item, Shape):
            concepts.append(f"shape:{item.kind}")
        for concept in concepts:
            masks[concept] = masks[concept] | pixels if concept in masks else pixels.copy()
    return masks


def all_concepts() -> list[str]:
    return ([f"shape:{k}" for k in SHAPE_KINDS] + [f"colour:{c}" for c in COLOURS]
            + [f"texture:{t}" for t in TEXTURES])


def shape_mask(shape: Shape, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Which pixel centres (px, py) the shape covers."""
    cos, sin = math.cos(shape.angle), math.sin(shape.angle)
    dx, dy = px - shape.cx, py - shape.cy
    # Shape-local coordinates, circumradius 1; v grows downwards like image rows.
    u = (dx * cos + dy * sin) / shape.radius
    v = (-dx * sin + dy * cos) / shape.radius
    return _COVERAGE[shape.kind](u, v)


def _polygon(vertices: list[tuple[float, float]]):
    """Even-odd rule point-in-polygon test, vectorised over points."""
    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        result = np.zeros(u.shape, dtype=bool)
        for (u1, v1), (u2, v2) in zip(vertices, vertices[1:] + vertices[:1]):
            if v1 == v2:
                continue  # a horizontal edge never crosses a horizontal ray
            crosses = (v1 > v) != (v2 > v)
            result ^= crosses & (u < (u2 - u1) * (v - v1) / (v2 - v1) + u1)
        return result
    return inside


def _regular(n: int, radius: float = 1.0, start: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(radius * math.cos(start + 2 * math.pi * i / n), radius * math.sin(start + 2 * math.pi * i / n))
            for i in range(n)]


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    outer = _regular(points)
    inner_vertices = _regular(points, inner, start=-math.pi / 2 + math.pi / points)
    return [v for pair in zip(outer, inner_vertices) for v in pair]


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = 1.2 * u, -1.2 * v + 0.15  # the classic implicit heart, point down
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0


_COVERAGE = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.8,
    "triangle": _polygon(_regular(3)),
    "star": _polygon(_star()),
    "cross": lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(u) <= 0.95) & (np.abs(v) <= 0.3)),
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.55 ** 2),
    "hexagon": _polygon(_regular(6)),
    "heart": _heart,
    "crescent": lambda u, v: (u * u + v * v <= 1.0) & ((u - 0.45) ** 2 + v * v > 0.75 ** 2),
    "arrow": _polygon([(-1, -0.25), (0.2, -0.25), (0.2, -0.6), (1, 0), (0.2, 0.6), (0.2, 0.25), (-1, 0.25)]),
}
assert set(_COVERAGE) == set(SHAPE_KINDS)


def _paint(item: Shape | Background, px: np.ndarray, py: np.ndarray, rng: np.random.Generator,
           contrast: float) -> np.ndarray:
    """Colours for the given pixel centres: the item's colour modulated by its texture."""
    base = np.asarray(COLOURS[item.colour], dtype=np.float32)
    # The second tone of a texture: darker for light colours, lighter for dark ones.
    alternate = base + contrast * (255.0 - base) if base.mean() < 90 else base * (1.0 - contrast)
    weight = _texture(item.texture, item.pattern, px, py, rng)[..., None]
    return base * (1.0 - weight) + alternate * weight


def _texture(texture: str, pattern: Pattern, px: np.ndarray, py: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Per pixel weight in [0, 1] of the alternate tone."""
    if texture == "solid":
        return np.zeros(px.shape, dtype=np.float32)
    if texture == "noise":
        return rng.uniform(0.0, 1.0, px.shape).astype(np.float32)
    cos, sin = math.cos(pattern.angle), math.sin(pattern.angle)
    a = (px * cos + py * sin) / pattern.period + pattern.phase
    b = (-px * sin + py * cos) / pattern.period + pattern.phase
    if texture == "stripes":
        return (np.floor(a) % 2).astype(np.float32)
    if texture == "checker":
        return ((np.floor(a) + np.floor(b)) % 2).astype(np.float32)
    if texture == "dots":
        da, db = a - np.round(a), b - np.round(b)
        return (da * da + db * db <= 0.3 ** 2).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}; expected one of {TEXTURES}")
