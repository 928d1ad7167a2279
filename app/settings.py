"""Settings: one typed table, and the only place that reads the environment.

Every field reads `FOVEA_<NAME>` (for example `FOVEA_DATA_DIR`); CLI flags override the environment.
The README's settings table is checked against this class by a test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _bundled(name: str) -> Path:
    """A folder shipped beside the package: inside a built wheel it is `app/_bundled/<name>`, in a source
    checkout (editable install, Docker) the repository's top-level folder."""
    inside_wheel = Path(__file__).resolve().parent / "_bundled" / name
    return inside_wheel if inside_wheel.is_dir() else PROJECT_ROOT / name


BUILTIN_MODEL_DIR = _bundled("model_store")
# The bundled cards: the demo models, then the ImageNet model (ready once the `imagenet` extra is installed).
# Pages that default to the first ready model keep showing a demo model.
BUILTIN_CARD_DIRS = (BUILTIN_MODEL_DIR, BUILTIN_MODEL_DIR / "imagenet")
FRONTEND_DIR = _bundled("frontend")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FOVEA_", extra="forbid", validate_default=True)

    data_dir: Path = Field(
        default=Path.home() / ".fovea",
        description="Where Fovea writes everything it makes (demo datasets, atlases, uploads).",
    )
    host: str = Field(default="127.0.0.1", description="Interface `fovea serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `fovea serve` listens on.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        description="Host names the server answers to (others get a 400, so a page that rebinds its DNS name to "
                    "127.0.0.1 cannot read it), separated by commas in the environment. `host` is added when it is "
                    "not a wildcard; `*.example.org` matches its subdomains; `*` answers any Host.",
    )
    keep_alive_seconds: float = Field(
        default=75.0, gt=0,
        description="How long `fovea serve` keeps an idle connection open between requests. Longer than clients and "
                    "proxies keep theirs (httpx 5 s, a cloud load balancer 60 s): a server that closes first races "
                    "a request sent on the connection just then, which fails with a reset.",
    )
    read_timeout_seconds: float = Field(
        default=30.0, gt=0,
        description="`fovea serve` closes a connection that has not sent a whole request head this long after it "
                    "opened (after an answer: after the head's first bytes), or that pauses this long while sending "
                    "a body.",
    )
    device: str = Field(
        default="auto",
        description="Where models run: `auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:N` or `mps`.",
    )
    model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Extra folders of model cards (`*.toml`), separated by `" + os.pathsep + "` in the environment.",
    )
    builtin_models: bool = Field(
        default=True, description="Load the bundled cards: the demo models (`model_store/`), then the ImageNet "
                                  "model (`model_store/imagenet/`, ready once `pip install -e '.[imagenet]'` ran)."
    )
    memory_layout: Literal["auto", "channels_last", "contiguous"] = Field(
        default="auto",
        description="Memory layout of the batches an index build feeds a model: `channels_last` where the model "
                    "accepts it, `contiguous`, or `auto` (channels-last on the CPU, where it is faster).",
    )
    torch_threads: int = Field(
        default=0, ge=0, description="CPU threads PyTorch may use; 0 keeps PyTorch's default."
    )
    max_weights_bytes: int = Field(
        default=4 * 1024**3, gt=0, description="Largest weights file a card may name, in bytes."
    )
    log_level: str = Field(default="info", description="Log level: debug, info, warning or error.")
    auto_index_demo: bool = Field(
        default=True, description="At start, build the demo models' atlases in the background if missing."
    )
    auto_visualize_demo: bool = Field(
        default=True, description="At start, render the demo models' default layers' feature visualisations in the "
                                  "background (after their atlases) if missing.")
    demo_images: int = Field(
        default=2000, ge=1, le=2000,
        description="Held-out demo images that the demo atlases are built on (the first of the 2,000; fewer make a "
                    "first start quicker on a small machine).",
    )
    atlas_top_k: int = Field(default=32, ge=1, description="Top images kept per unit by `fovea index` (its --k).")
    atlas_max_top_k: int = Field(default=256, ge=1, description="Largest k an index build or a request may ask for.")
    index_batch_size: int = Field(default=64, ge=1, description="Images per forward pass while indexing.")
    index_workers: int = Field(default=2, ge=0, description="Processes decoding images while indexing (0: inline).")
    index_shard_images: int = Field(
        default=2048, ge=1, description="Images per shard of a distributed index build (`fovea index --ray`), rounded "
        "up to whole batches: a worker's unit of work, merged and checkpointed as one.")
    index_histogram_samples: int = Field(
        default=16, ge=1,
        description="Activation values per image and unit that feed a unit's histogram and 99.5% quantile.",
    )
    dissection_iou_threshold: float = Field(
        default=0.04, ge=0, le=1,
        description="Smallest IoU with which a unit is labelled with its best concept (Network Dissection's 0.04).",
    )
    selectivity_auc_threshold: float = Field(
        default=0.9, ge=0.5, le=1,
        description="Smallest ROC AUC of a unit's most selective class (its spatial maximum, that class against the "
                    "rest) with which the detectors page counts the unit as selective for it.",
    )
    selectivity_min_class_images: int = Field(
        default=10, ge=1,
        description="Fewest images a class needs, and the rest of the dataset too, for units to be scored against "
                    "it: with 2 images, about 6% of units reach AUC 0.9 by chance.")
    predicted_class_selectivity: bool = Field(
        default=True,
        description="On a dataset whose images have no classes, score units against the classes the model predicts "
                    "for them instead (the same ROC AUC, each predicted class against the rest): what the unit feeds "
                    "in the model's decisions, not what the images are.")
    dissection_label_size: int = Field(
        default=112, ge=8, le=1024,
        description="Longest side of the concept label maps units are compared with, in pixels of the model's view "
                    "(larger is finer and slower; Broden's own maps are 112).",
    )
    dissection_max_bytes: int = Field(
        default=8 * 1024**3, gt=0,
        description="Most memory an index pass may give the activations dissection keeps (about 0.01 of every "
                    "position of the dissected layers, 48 bytes each); a dataset that needs more is refused before the "
                    "pass, naming fewer layers.")
    read_only: bool = Field(
        default=False, description="Refuse every write a visitor can make (notes on units): for a shared deployment.")
    note_max_chars: int = Field(default=1000, ge=1, le=100_000, description="Longest note on a unit, in characters.")
    upload_max_bytes: int = Field(default=20 * 1024**2, gt=0, description="Largest upload accepted, in bytes (413).")
    upload_max_pixels: int = Field(
        default=40_000_000, gt=0,
        description="Largest upload accepted, in pixels, checked from the header before decoding (413).",
    )
    upload_max_decode_bytes: int = Field(
        default=512 * 1024**2, gt=0,
        description="Most memory decoding one upload to RGB may take, estimated from its header by its pixels and "
                    "mode (413 above it).",
    )
    upload_decode_concurrency: int = Field(
        default=2, ge=1, description="Uploads decoded at once; the other requests wait their turn."
    )
    model_view_cache_bytes: int = Field(
        default=64 * 1024**2, ge=0,
        description="Memory for the images as models see them (PNGs), so each is decoded once while it stays.",
    )
    model_worker: bool = Field(
        default=True,
        description="`fovea serve` runs model work (CAMs, predictions, live activations, feature visualisations) in "
                    "a second process, so that reads never wait for a forward pass to let go of Python's lock; "
                    "false: one process.")
    model_worker_nice: int = Field(
        default=10, ge=0, le=19,
        description="How much lower the model worker's CPU priority is than the reads' (Unix nice value).")
    model_worker_timeout_seconds: float = Field(
        default=600.0, gt=0,
        description="Longest the server waits for the model worker's answer to a request (504 past it).")
    compute_concurrency: int = Field(
        default=16, ge=1,
        description="Requests that run a model (CAMs, predictions, live activations) at once, computing or waiting for "
                    "the model (and so sharing its batches); the others wait without holding a worker thread (of "
                    "40), so reads never queue behind them.",
    )
    batch_window_ms: float = Field(
        default=0.0, ge=0, le=1000,
        description="How long a request that runs a batchable pass (predictions, fired units, gradient CAMs) waits "
                    "for others to share it when the model is idle. Requests gather anyway while the model is busy; "
                    "on a CPU a window costs a lone client more than it gains (docs/benchmarks.md).")
    batch_max_size: int = Field(
        default=16, ge=1, description="Most requests one batched pass serves (1: no micro-batching).")
    cam_score_batch_size: int = Field(default=32, ge=1, description="Masked images per forward pass for Score-CAM.")
    cam_ablation_batch_size: int = Field(
        default=128, ge=1, description="Ablated layer outputs per forward pass for Ablation-CAM."
    )
    visualization_steps: int = Field(
        default=128, ge=1, description="Optimisation steps of a feature visualisation rendered on request.")
    visualization_precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="Precision of the model's pass while rendering feature visualisations: `auto` is bfloat16 where "
                    "it runs the model faster (a CUDA GPU from Ampere on; a CPU with AMX or AVX-512 BF16, for models "
                    "without depthwise convolutions), float32 elsewhere. Recorded in each image's parameters.")
    visualization_batch_max_size: int = Field(
        default=8, ge=1,
        description="Most feature visualisations of one layer, asked for at once with the same settings, that are "
                    "rendered as one batch (1: each alone). A batch of 8 costs a CPU about half a unit's time per "
                    "unit (docs/benchmarks.md); its memory grows with it.")
    visualization_batch_window_ms: float = Field(
        default=50.0, ge=0, le=1000,
        description="How long a feature visualisation asked for while the model is idle waits for others to share "
                    "its batch (a layer grid asks for several at once); small beside a rendering's seconds.")
    visualization_max_steps: int = Field(
        default=1024, ge=1, description="Most steps a request may ask a feature visualisation for (422 above).")
    visualization_max_size: int = Field(
        default=512, ge=16, description="Largest side in pixels a request may ask a feature visualisation for.")
    visualization_max_facets: int = Field(
        default=8, ge=1, description="Most facets a request may ask of one unit (each is one more image rendered).")
    cam_max_channels: int = Field(
        default=2048, ge=1,
        description="Most channels a layer may have for Score-CAM and Ablation-CAM, which run the model once "
                    "per channel (422 above it).",
    )
    cam_max_seconds: float = Field(
        default=120.0, gt=0,
        description="Longest a CAM request may compute, methods and metrics together, once it has the model; it "
                    "stops between forward passes past this (422).",
    )
    cam_max_followed: int = Field(
        default=256, ge=0,
        description="Most CAM requests in flight that clients may follow by progress token at once; past it a "
                    "request still runs, and its progress polls answer 404.",
    )
    cam_metric_steps: int = Field(
        default=100, ge=1,
        description="Steps of the deletion and insertion curves (each step changes 1/steps of the pixels).",
    )
    cam_metric_batch_size: int = Field(default=32, ge=1, description="Images per forward pass for CAM metrics.")
    dictionary_max_vectors: int = Field(
        default=262_144, ge=1,
        description="Activation vectors (spatial positions) a dictionary learns from at most, spread evenly over "
                    "the dataset's training images.",
    )
    dictionary_steps: int = Field(
        default=2000, ge=1, description="Optimisation steps of a sparse autoencoder (`fovea dictionary`), each on "
                                        "a minibatch of 4,096 vectors.")
    dictionary_nmf_iterations: int = Field(
        default=200, ge=1, description="Multiplicative updates of NMF and semi-NMF (`fovea dictionary --method nmf` "
                                       "or `semi-nmf`), each a pass over every vector.")
    dictionary_max_size: int = Field(default=16_384, ge=1, description="Most features a dictionary may have.")
    dictionary_max_bytes: int = Field(
        default=8 * 1024**3, ge=1,
        description="Most memory `fovea dictionary` may give its vectors and, for (semi-)NMF, their codes (4 bytes a "
                    "number, the codes and their update counted three times over for NMF, five for semi-NMF); more "
                    "is refused before it starts.")
    index_checkpoint_seconds: float = Field(
        default=30.0, ge=0, description="How often an index build saves a checkpoint it can resume from."
    )

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value):
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        return [host.strip().lower() for host in value if host.strip()]

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"unknown device {value!r}; use auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError(f"unknown log level {value!r}; use debug, info, warning or error")
        return value.lower()

    def trusted_hosts(self) -> list[str]:
        """allowed_hosts, and the host the server listens on when it names one (not 0.0.0.0 or ::)."""
        named = self.host.lower() not in {"0.0.0.0", "::", ""}
        return self.allowed_hosts + ([self.host.lower()] if named and self.host.lower() not in self.allowed_hosts
                                     else [])

    def card_dirs(self) -> list[Path]:
        """The user's folders before the built-in ones: their models are listed first, are what the image page
        opens with, and a card of theirs under a built-in id is the one that loads."""
        return list(self.model_dirs) + (list(BUILTIN_CARD_DIRS) if self.builtin_models else [])
