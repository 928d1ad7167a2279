"""Answers about the service and its models: health, progress, model cards and the per-unit statistics."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.settings import BUILTIN_MODEL_DIR
from app.store.store import LoadedModel


class Health(BaseModel):
    status: str = Field(description="`ok` when the server answers.")
    version: str
    device: str | None = Field(description="Where models run.")
    models_ready: int
    models_failed: int


class ProgressOut(BaseModel):
    task: str = Field(description="`starting`, `waiting` (another request holds the model), `maps`, a method id "
                                  "while it runs, `scoring` (the metrics), `rendering`, or `finished` (it has "
                                  "answered: listed for two seconds more, then a 404).")
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
    demo: bool = Field(description="One of the bundled demo models, trained on Fovea's procedural shapes alone: "
                                   "the image page opens an upload with another model when one is ready.")
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
        demo=model.card_path.parent.resolve() == BUILTIN_MODEL_DIR.resolve(),
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
