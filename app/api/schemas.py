"""Response shapes of the JSON API (they are also its OpenAPI documentation)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.store.store import LoadedModel


class Health(BaseModel):
    status: str = Field(description="`ok` when the server answers.")
    version: str
    device: str | None = Field(description="Where models run.")
    models_ready: int
    models_failed: int


class ProgressOut(BaseModel):
    task: str = Field(description="`starting`, `waiting` (another request holds the model), `maps`, a method id "
                                  "while it runs, or `scoring` (the metrics).")
    done: int = Field(description="Images of the task run so far (a perturbation method's, or the metrics').")
    total: int = Field(description="Images the task runs in all; 0 for a task that is not counted.")
    seconds: float = Field(description="Since the request arrived.")
    task_seconds: float = Field(description="Since the task began: with done and total, an estimate of what is left.")
    note: str = Field(description="The task in words for people, e.g. `Score-CAM: 12 of 96 masked images`; empty "
                                  "for a quick task.")


class InputOut(BaseModel):
    size: tuple[int, int] = Field(description="(height, width) fed to the model.")
    resize: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class WeightsOut(BaseModel):
    source: str = Field(description="`file`, `package` (a file inside an installed Python package) or `torchvision`.")
    name: str
    sha256: str | None = Field(description="Checksum of the loaded file.")
    verified: bool = Field(description="The card names a checksum and the file matched it.")


class LayerOut(BaseModel):
    name: str = Field(description="Dotted module path, as in `named_modules()`.")
    type: str
    shape: tuple[int, int, int] = Field(description="(channels, height, width) for one input image.")
    units: int
    parameters: int
    default: bool = Field(description="In the default selection of layers to explore.")


class ModelSummary(BaseModel):
    id: str
    name: str
    description: str
    trained_on: str = Field(description="What the weights were trained on, from the card; empty when it does not "
                                        "say.")
    status: str = Field(description="`ready` or `error`.")
    error: str | None
    card: str = Field(description="The card file's name.")
    architecture: str | None
    parameters: int
    num_classes: int
    input: InputOut | None
    weights: WeightsOut | None
    metrics: dict[str, float | str]
    layer_count: int
    device: str | None
    page: str = Field(description="Path of the model's page in the dashboard.")


class ModelDetail(ModelSummary):
    labels: list[str]
    layers: list[LayerOut]


def layer_out(info) -> LayerOut:
    return LayerOut(name=info.name, type=info.type, shape=info.shape, units=info.units,
                    parameters=info.parameters, default=info.default)


def model_summary(model: LoadedModel) -> ModelSummary:
    card = model.card
    architecture = weights = input_out = None
    if card is not None:
        spec = card.architecture
        architecture = f"torchvision:{spec.torchvision}" if spec.torchvision else spec.callable
        weights = WeightsOut(
            source="torchvision" if card.weights.torchvision else "package" if card.weights.package else "file",
            name=card.weights.torchvision or "/".join(filter(None, (card.weights.package, card.weights.file))),
            sha256=model.weights_sha256,
            verified=model.weights_sha256 is not None and card.weights.sha256 == model.weights_sha256,
        )
    if model.preprocessing is not None:
        p = model.preprocessing
        input_out = InputOut(size=p.size, resize=p.resize, mean=p.mean, std=p.std)
    return ModelSummary(
        id=model.id,
        name=card.name if card else model.id,
        description=card.description if card else "",
        trained_on=card.trained_on if card else "",
        status=model.status,
        error=model.error,
        card=model.card_path.name,
        architecture=architecture,
        parameters=model.parameters,
        num_classes=len(model.labels),
        input=input_out,
        weights=weights,
        metrics=card.metrics if card else {},
        layer_count=len(model.layers),
        device=str(model.device) if model.device else None,
        page=f"/m/{model.id}",
    )


def model_detail(model: LoadedModel) -> ModelDetail:
    return ModelDetail(**model_summary(model).model_dump(), labels=model.labels,
                       layers=[layer_out(info) for info in model.layers])


class Statistic(BaseModel):
    """A per-unit quantity as app/atlas/statistics.py declares it, or the unit index."""

    id: str
    label: str
    description: str
    format: Literal["number", "percent", "count"] = Field(description="How to write a value: `percent` is a "
                                                                      "fraction shown as %.")


class SortKey(Statistic):
    order: Literal["asc", "desc"] = Field(description="Its natural direction.")


class StatisticInfo(Statistic):
    sortable: bool = Field(description="A sort key of a layer's units, and so also in each unit's summary on the "
                                       "layer grid, not only on its page.")


class StatisticList(BaseModel):
    sorts: list[SortKey] = Field(description="What a layer's units can be sorted by, in menu order.")
    statistics: list[StatisticInfo] = Field(description="Every per-unit statistic in a unit's `stats`.")


# The answers of the atlas, image and CAM routes. Those routes build their dicts and answer through
# FastJSONResponse (no validation pass on the way out, the bytes FastAPI wrote for a dict): these models
# document the bodies, and tests/test_openapi_complete.py checks real answers against them.


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
    done: int = Field(description="Images indexed so far.")
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


class UnitPage(BaseModel):
    model: str
    layer: str
    kind: str = Field(description="What the listed units are, e.g. `channel`.")
    dataset: str
    units_total: int
    offset: int
    sort: str
    order: Literal["asc", "desc"]
    map_shape: tuple[int, int] = Field(description="(h, w) of the layer's maps.")
    units: list[UnitSummary]
    top_maps: EncodedMaps | None = Field(None, description="Only with `maps=true`: each listed unit's map on its "
                                                           "top image, (units, h, w) in list order.")


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


class UnitMaps(EncodedMaps):
    threshold: float = Field(description="The unit's 99.5th percentile over the dataset.")


class Position(BaseModel):
    y: int
    x: int


class UnitActivation(BaseModel):
    model: str
    layer: str
    unit: int
    dataset: str
    image: int
    map: EncodedMaps
    max: float
    argmax: Position = Field(description="The first position at the maximum.")
    crop: Crop
    receptive_field: ReceptiveFieldOut
    view_url: str = Field(description="The image as the model sees it.")


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


class SampleImage(BaseModel):
    id: str
    index: int
    label: str | None
    url: str
    page: str


class DatasetSamples(BaseModel):
    dataset: str
    models: list[str] = Field(description="The models with an atlas on the dataset.")
    images: list[SampleImage]


class UploadInfo(BaseModel):
    """What an upload's bytes say (the same for everyone who holds the id)."""

    id: str
    sha256: str
    format: str
    mode: str
    width: int
    height: int
    frames: int
    bytes: int


class UploadReceipt(UploadInfo):
    new: bool = Field(description="False when these bytes were uploaded before.")
    name: str = Field(description="This upload's file name (last path part).")
    uploaded: float


class UploadedImage(UploadInfo):
    source: Literal["upload"]


class DatasetImage(BaseModel):
    source: Literal["dataset"]
    id: str
    dataset: str
    index: int
    name: str = Field(description="The file's name.")
    label: str | None
    width: int
    height: int


ImageInfo = Annotated[UploadedImage | DatasetImage, Field(discriminator="source")]


class Predictions(BaseModel):
    image: str
    model: str
    classes: int
    predictions: list[ClassScore]


class FiredUnit(BaseModel):
    rank: int
    unit: int
    spatial_mean: float
    percentile: float = Field(description="Among the dataset's images, of the unit's spatial mean.")
    z: float
    spatial_max: float
    link: str
    max_max: float | None = Field(None, description="Only with `maps=true`: the unit's maximum over the dataset.")
    top_image: int | None = Field(None, description="Only with `maps=true`.")


class FiredUnits(BaseModel):
    image: str
    model: str
    layer: str
    dataset: str
    images: int
    units_total: int
    measure: str
    units: list[FiredUnit]
    maps: EncodedMaps | None = Field(None, description="Only with `maps=true`.")
    top_maps: EncodedMaps | None = Field(None, description="Only with `maps=true`.")


class AnnotationKindInfo(BaseModel):
    name: str
    version: int
    description: str
    media_type: str = Field(description="Of each stored value.")
    scope: Literal["weights", "atlas"] = Field(description="What it depends on: the model's weights alone, or an "
                                                           "atlas too.")


class AnnotationKindList(BaseModel):
    kinds: list[AnnotationKindInfo]


class RenderedUnit(BaseModel):
    """A unit and the settings its feature visualisations were rendered with."""

    model: str
    layer: str
    unit: int
    steps: int
    size: int = Field(description="Side of the square image in pixels.")
    seed: int
    param: str = Field(description="Parameterisation: `fft` (Lucid's decorrelated Fourier image) or `maco` "
                                   "(phases only, the magnitude spectrum of the model's images).")


class Visualization(RenderedUnit):
    """A unit's feature visualisation (activation maximisation), as stored for its settings."""

    variant: str = Field(description="The settings' name, as `fovea visualize` stores them.")
    colors: str = Field(description="Where the colour space (and MACO's magnitudes) came from: the model's atlas "
                                    "images, or Lucid's ImageNet constants without an atlas.")
    negative: bool = Field(description="The image that drives the unit lowest instead of highest.")
    activation: float = Field(description="The unit's spatial mean on the image, untransformed.")
    dataset_best: float | None = Field(description="The largest spatial mean of any image of the model's default "
                                                   "atlas (none without an atlas of the layer).")
    png: str = Field(description="The image's address.")


class FacetMember(BaseModel):
    rank: int = Field(description="Among the unit's top images (0 is its top image).")
    image: str = Field(description="The image's id, `dataset:index`, as the image page takes it.")
    value: float = Field(description="The unit's peak activation on the image.")


class VisualizationFacet(BaseModel):
    index: int
    members: list[FacetMember]
    activation: float = Field(description="The unit's spatial mean on the facet's image, untransformed.")
    png: str = Field(description="The image's address.")


class VisualizationFacets(RenderedUnit):
    """A unit's facets (Nguyen et al. 2016): its top images clustered by the layer's activations on them, each
    facet rendered from the mean of its images."""

    dataset: str = Field(description="The atlas whose top images were clustered.")
    asked: int = Field(description="The facets asked for; fewer come when the top images have fewer patterns.")
    facets: list[VisualizationFacet]
