"""Answers of the atlas routes: atlases, a layer's units and one unit. Those routes build their dicts and answer
through FastJSONResponse (no validation pass on the way out): these models document the bodies, and
tests/test_openapi_complete.py checks real answers against them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.concepts import LabelChip, UnitLabels
from app.api.schemas.dictionaries import FeatureOut


class EncodedMaps(BaseModel):
    """Float maps as JSON (app/api/encoding.py): the front end draws heatmaps itself from the numbers."""

    shape: list[int] = Field(description="The array's shape, e.g. (n, h, w).")
    dtype: Literal["float32", "float16"]
    encoding: str = Field(description="How `data` is written, e.g. `base64 little-endian float32, row-major`.")
    range: tuple[float, float] = Field(description="Exact (min, max) of the values; (0, 0) for no values.")
    data: str


class BuildStatusOut(BaseModel):
    model: str
    dataset: str
    state: Literal["queued", "building", "done", "failed"]
    step: Literal["images", "labels"] = Field(description="While building: the pass over the images, then "
                                                          "labelling the units (datasets with concepts or classes).")
    done: int = Field(description="Images of the step so far.")
    total: int
    error: str | None


class AtlasOut(BaseModel):
    dataset: str
    images: int
    readable: int
    unreadable: int = Field(description="Files of the dataset that could not be decoded (skipped).")
    layers: list[str] = Field(description="The indexed layers.")
    k: int = Field(description="Top images kept per unit.")
    created: str
    seconds: float = Field(description="How long the build took.")
    classes: list[str]
    labels: bool = Field(description="Its units have concept labels or class selectivity (`fovea dissect`).")
    default: bool = Field(description="What a link without `?dataset=` shows.")


class RenderStatusOut(BaseModel):
    model: str
    layer: str = Field(description="The default layer being rendered (empty before the first).")
    state: Literal["waiting", "rendering", "done", "failed"] = Field(
        description="`waiting` for the model's demo atlas, whose images give the colours.")
    done: int = Field(description="Units of the layer rendered so far.")
    total: int


class AtlasList(BaseModel):
    model: str
    atlases: list[AtlasOut]
    build: BuildStatusOut | None = Field(description="The first run's background build of the model, if any.")
    rendering: RenderStatusOut | None = Field(
        description="The first run's background rendering of the model's default layers' feature visualisations, "
                    "if any.")


class UnitSummary(BaseModel):
    """One unit on a layer's grid. Besides these keys, one per summary statistic (`GET /api/statistics`)."""

    model_config = ConfigDict(extra="allow")

    unit: int
    kind: str = Field(description="What a unit of the layer is, e.g. `channel`.")
    dead: bool = Field(description="Never positive on any image of the dataset.")
    saturated: bool = Field(description="Several images reach the unit's maximum exactly: a clamp caps it.")
    top_image: int | None = Field(description="Dataset id of the image it fires on most.")
    page: str = Field(description="Path of the unit's page in the dashboard.")
    label: LabelChip | None = Field(default=None, description="Its concept label on this atlas, or else the class "
                                                              "it selects, if any.")


class UnitPage(BaseModel):
    model: str
    layer: str
    kind: str = Field(description="What the listed units are, e.g. `channel`.")
    kinds: list[str] = Field(description="Every kind of unit the atlas has at this layer: `channel`, then its "
                                         "dictionaries.")
    dataset: str
    units_total: int
    offset: int
    sort: str
    order: Literal["asc", "desc"]
    map_shape: tuple[int, int] = Field(description="(h, w) of the layer's maps.")
    units: list[UnitSummary]
    top_maps: EncodedMaps | None = Field(None, description="Only with `maps=true`: each listed unit's map on its "
                                                           "top image, (units, h, w) in list order.")
    visualized: list[int] | None = Field(None, description="Only with `visualized=true`: the listed units whose "
                                                           "feature visualisation at a page's settings is stored.")


class Crop(BaseModel):
    """A box as fractions of the model's view of the image."""

    x: float
    y: float
    w: float
    h: float


class ReceptiveFieldOut(BaseModel):
    method: str = Field(description="How it was found, e.g. `gradient`.")
    input_size: tuple[int, int] = Field(description="(height, width) of the model's input.")
    map_size: tuple[int, int] = Field(description="(h, w) of the layer's maps.")
    size: tuple[float, float] = Field(description="(height, width) in input pixels that one position sees.")
    corner: tuple[float, float] = Field(description="(top, left) of position (0, 0)'s field, in input pixels.")


class LayerReceptiveField(ReceptiveFieldOut):
    model: str
    layer: str


class Histogram(BaseModel):
    edges: list[float] = Field(description="Bin edges over the range the unit's values occupy.")
    counts: list[int]
    zeros: int = Field(description="Values exactly 0, counted apart.")


class LabelCount(BaseModel):
    label: str
    count: int


class SaturationOut(BaseModel):
    images_at_max: int
    value: float = Field(description="The cap: the unit's maximum.")
    tie_break: str = Field(description="How images tied at the cap are ordered.")
    before_clamp: str | None = Field(description="The layer whose output holds the values before the clamp.")


class TopImage(BaseModel):
    rank: int
    image: int = Field(description="Dataset image id.")
    value: float = Field(description="The unit's maximum on the image.")
    y: int = Field(description="Where the maximum is on the map.")
    x: int
    label: str | None = Field(description="The image's class in the dataset, when it has one.")
    prediction: str | None = Field(description="The model's top class on the image.")
    confidence: float | None
    crop: Crop = Field(description="The receptive field of the maximum.")
    url: str = Field(description="The image as the model sees it.")
    original_url: str


class SimilarUnit(BaseModel):
    unit: int
    correlation: float
    page: str


class UnitDetail(UnitSummary):
    model: str
    layer: str
    units_total: int
    dataset: str
    map_shape: tuple[int, int]
    stats: dict[str, float | int | None] = Field(description="Every per-unit statistic, by name "
                                                             "(`GET /api/statistics`).")
    histogram: Histogram
    saturation: SaturationOut | None = Field(description="Only for a saturated unit.")
    top: list[TopImage]
    receptive_field: ReceptiveFieldOut
    class_histogram: list[LabelCount] = Field(description="Labels among the top images, most common first.")
    similar: list[SimilarUnit] = Field(description="Units whose responses correlate most with this one's.")
    labels: UnitLabels | None = Field(description="What dissection measured: from this atlas, or else from another "
                                                  "atlas of the model with concept labels; None when none has.")
    feature: FeatureOut | None = Field(None, description="Only for a dictionary's feature: its dictionary, the "
                                                         "channels that compose it and the nearest features.")


class UnitMaps(EncodedMaps):
    threshold: float = Field(description="The unit's 99.5th percentile over the dataset.")


class Position(BaseModel):
    y: int
    x: int


class UnitActivation(BaseModel):
    model: str
    layer: str
    kind: str = Field(description="`channel`, or the dictionary whose feature it is.")
    unit: int
    dataset: str
    image: int
    map: EncodedMaps
    max: float
    argmax: Position = Field(description="The first position at the maximum.")
    crop: Crop
    receptive_field: ReceptiveFieldOut
    view_url: str = Field(description="The image as the model sees it.")
