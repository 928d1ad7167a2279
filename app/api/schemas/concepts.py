"""Answers of the concept routes: a unit's labels (Network Dissection, compositional labels, class
selectivity), a model's detectors summary, search results and notes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field


class ConceptScoreOut(BaseModel):
    id: str = Field(description="`category:name`, e.g. `shape:square`.")
    name: str
    category: str
    iou: float = Field(description="NetDissect IoU of the unit's top-0.005 region with the concept's pixels.")


class FormulaOut(BaseModel):
    text: str = Field(description="Concepts joined by AND, OR and AND NOT, applied left to right.")
    iou: float


class ClassAuc(BaseModel):
    class_: str = Field(alias="class")
    auc: float = Field(description="ROC AUC of the unit's spatial maximum, this class against the rest.")


ClassSource = Annotated[Literal["labels", "predictions"] | None, Field(description=(
    "What the class AUCs score units against: `labels`, the classes of the dataset's images; `predictions`, on a "
    "dataset without classes, the classes the model predicts for them (what the unit feeds in its decisions, not "
    "what the images are); None: no classes."))]


class UnitLabels(BaseModel):
    dataset: str = Field(description="The atlas the labels were measured on.")
    layout: str | None = Field(description="Of its concept labels (`demo`, `broden`, `label-maps`); None: "
                                           "classes only.")
    iou_threshold: float = Field(description="The smallest IoU that labels a unit (a setting).")
    label: ConceptScoreOut | None = Field(description="The best concept, when its IoU reaches the threshold.")
    concepts: list[ConceptScoreOut] = Field(description="The best concepts by IoU, best first.")
    formula: FormulaOut | None = Field(description="The best formula of up to 3 concepts (beam search).")
    classes: list[ClassAuc] = Field(description="The most selective classes, best first.")
    class_source: ClassSource
    auc_threshold: float = Field(description="The ROC AUC from which the best class counts as one the unit selects "
                                             "(a setting).")
    threshold: float | None = Field(description="The activation the region is cut at (its top 0.005 quantile).")
    region_pixels: int | None = Field(description="Pixels of the region over the dataset.")
    description: str
    described_by: str = Field(description="How the description was written.")


class LabelChip(BaseModel):
    """A unit's label as the grid and the image page show it: its concept label, or else the class it selects."""

    id: str = Field(description="`category:name`, e.g. `shape:square`; `class:NAME` for a class.")
    name: str
    category: str = Field(description="The concept's category, or `class` (`predicted class` where the classes are "
                                      "the model's predictions).")
    iou: float | None = Field(description="The concept's IoU; None for a class.")
    auc: float | None = Field(description="The class's ROC AUC (from `FOVEA_SELECTIVITY_AUC_THRESHOLD`), where no "
                                          "concept labels the unit; None for a concept.")


class ConceptCount(BaseModel):
    id: str
    units: int = Field(description="Units of the layer labelled with it.")


class ClassCount(BaseModel):
    class_: str = Field(alias="class")
    units: int = Field(description="Units of the layer whose most selective class it is, from `auc_threshold`.")


class LayerDetectors(BaseModel):
    layer: str
    kind: str = Field(description="`channel`, or a dictionary's name: its features.")
    units: int
    labelled_units: int = Field(description="Units labelled with a concept (of any category).")
    best_iou_mean: float | None = Field(description="The mean over the units of each one's best concept IoU, "
                                                    "labelled or not.")
    labelled: dict[str, int] = Field(description="Units labelled with a concept of each category.")
    unique: dict[str, int] = Field(description="Distinct concepts of each category among the labels.")
    concepts: list[ConceptCount] = Field(description="Each label concept of the layer with its number of units.")
    selective_units: int = Field(description="Units whose most selective class reaches `auc_threshold` (0 when the "
                                             "images have no classes).")
    best_auc_mean: float | None = Field(description="The mean over the units of each one's best class AUC; None "
                                                    "when the images have no classes.")
    selective_classes: list[ClassCount] = Field(description="Each class of the selective units, with their number.")


class ConceptOut(BaseModel):
    id: str
    name: str
    category: str
    pixels: int
    images: int
    units: int = Field(description="Channels labelled with it, in all layers.")
    features: int = Field(description="Dictionary features labelled with it, in all layers and dictionaries.")


class ConceptSummary(BaseModel):
    model: str
    dataset: str
    layout: str | None
    iou_threshold: float
    auc_threshold: float = Field(description="The ROC AUC from which a unit counts as selective for its best class "
                                             "(a setting).")
    categories: list[str]
    pixels: int | None = Field(description="Pixels of all the images' label maps (in the model's view, at the "
                                           "dissection's size); None without concept labels.")
    region_fraction: float = Field(description="The share of a unit's activations its region keeps (0.005): its IoU "
                                               "with a concept covering a share f of the pixels is at most about "
                                               "region_fraction / f.")
    classes: list[str] = Field(description="The classes units were scored against; on predictions, those the model "
                                           "predicted for at least one image.")
    class_source: ClassSource
    unscored_classes: dict[str, int] = Field(
        description="Classes no unit was scored against, with their images: fewer than `min_class_images` in the "
                    "class or outside it, where chance alone reaches a high AUC (atlases built before this: none).")
    min_class_images: int | None = Field(description="The selectivity_min_class_images setting of the build.")
    layers: list[LayerDetectors]
    concepts: list[ConceptOut]


class SearchResult(BaseModel):
    model: str
    dataset: str | None = Field(description="The atlas the match comes from (a note belongs to the unit).")
    layer: str
    kind: str
    unit: int
    field: Literal["note", "label", "formula", "concept", "class", "description", "unit"]
    text: str = Field(description="What matched.")
    score: float = Field(description="IoU for concepts and formulas, AUC for classes, 1 for notes and names.")
    label: str | None = Field(description="The unit's label concept, if any.")
    page: str = Field(description="Path of the unit's page.")
    image: str | None = Field(description="URL of the unit's top image as the model sees it.")


class SearchPage(BaseModel):
    query: str
    total: int
    offset: int
    limit: int
    results: list[SearchResult]


class NoteIn(BaseModel):
    text: str = Field(min_length=1, description="The label or explanation; length bounded by `note_max_chars`.")
    author: str = Field(default="anonymous", min_length=1, max_length=80)


class Note(BaseModel):
    id: int
    model: str
    layer: str
    kind: str
    unit: int
    text: str
    author: str
    created: str
    dictionary: str = Field(description="On a dictionary's feature: the digest of the dictionary it was written on "
                                        "(one learned again numbers other features); empty on a channel.")


class NoteList(BaseModel):
    notes: list[Note]
    writable: bool = Field(description="False on a read-only deployment (`FOVEA_READ_ONLY`).")
    max_chars: int
