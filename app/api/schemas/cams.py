"""Answers of the CAM routes: the methods and a CAM request's maps and metrics."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.api.schemas.atlas import EncodedMaps


class MethodInfo(BaseModel):
    id: str
    name: str
    description: str
    reference: str
    needs_gradients: bool
    needs_input_gradient: bool
    needs_guided_gradient: bool
    extra_forwards: str = Field(description="The extra forward passes it costs, e.g. `none`.")
    reruns: str | None = Field(description="What those passes run, in words (none: it costs no extra pass).")
    counts: str | None = Field(description="What its progress counts, in words, e.g. `masked images`.")
    resolution: str = Field(description="`layer` or `input`: where the map is computed.")
    default: bool = Field(description="Among the methods the image page opens with.")


class MethodList(BaseModel):
    methods: list[MethodInfo]


class ClassScore(BaseModel):
    class_: int = Field(alias="class", description="Class index.")
    label: str
    probability: float


class Curve(BaseModel):
    auc: float
    curve: list[float]
    step: int = Field(description="Pixels changed between two points.")


class ConfidenceChangeOut(BaseModel):
    original: float
    explained: float
    drop: float
    increase: bool


class PointingOut(BaseModel):
    hit: bool
    maxima: int
    energy_mask: float
    energy_box: float


class MapMetrics(BaseModel):
    """The metrics asked for (`metrics=`), each present only when asked."""

    deletion: Curve | None = None
    insertion: Curve | None = None
    confidence: ConfidenceChangeOut | None = None
    pointing: PointingOut | None = None


class ShownMap(BaseModel):
    method: str
    name: str
    resolution: str
    seconds: float
    raw: EncodedMaps = Field(description="The method's map as computed, float32.")
    map: EncodedMaps = Field(description="The map shown (ReLU and normalisation as asked); float16 when normalized.")
    metrics: MapMetrics


class GroundTruth(BaseModel):
    available: bool
    reason: str | None = Field(None, description="Why no object mask can be used.")
    label: str | None = None
    tolerance: float | None = None
    mask_pixels: int | None = None


class CamAnswer(BaseModel):
    image: str
    model: str
    layer: str
    layer_shape: tuple[int, int, int]
    input_size: tuple[int, int]
    target: ClassScore
    top: ClassScore
    split: bool = Field(description="Ablation-CAM re-ran only the layers after the target layer.")
    capture_seconds: float
    maps: list[ShownMap]
    ground_truth: GroundTruth | None = Field(None, description="Only when a metric needs the object's mask.")
