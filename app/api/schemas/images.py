"""Answers of the image routes: dataset samples, uploads, predictions and the units that fire on an image."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.api.schemas.atlas import EncodedMaps
from app.api.schemas.cams import ClassScore
from app.api.schemas.concepts import LabelChip


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
    percentile: float = Field(description="Of the unit's spatial mean among the dataset's images (`compared`): the "
                                          "share below it, ties counting half.")
    z: float
    spatial_max: float
    link: str
    max_max: float | None = Field(None, description="Only with `maps=true`: the unit's maximum over the dataset.")
    top_image: int | None = Field(None, description="Only with `maps=true`.")
    visualized: bool | None = Field(None, description="Only with `maps=true`: whether its feature visualisation at "
                                                      "the default settings is stored (`visualization.png`).")
    label: LabelChip | None = Field(None, description="Its concept label on the atlas, or else the class it selects, "
                                                      "if any.")


class FiredUnits(BaseModel):
    image: str
    model: str
    layer: str
    kind: str = Field(description="`channel`, or the dictionary whose features are ranked.")
    dataset: str
    images: int
    compared: int = Field(description="The dataset images each percentile is among: all of them, less this image "
                                      "when it is one of them.")
    units_total: int
    measure: str
    units: list[FiredUnit]
    maps: EncodedMaps | None = Field(None, description="Only with `maps=true`.")
    top_maps: EncodedMaps | None = Field(None, description="Only with `maps=true`.")
