"""Feature visualisation: Fovea's batched renderer (app/engine/featurevis) against Lucent (torch-lucent 0.1.8,
the torch port of Lucid), each comparison measured in one run on the same model, layer, image size, steps and
device. Model: torchvision resnet18 with random weights (seed 0), eval(), parameters frozen (as the store
serves models; Lucent is given the same weights, so neither computes weight gradients); layer3, 128 px.

  lucent  Fovea renders all --units units in one optimisation (batch item i maximises unit i, `channel`)
          vs Lucent's `render_vis(model, "layer3:UNIT", ...)` called once per unit, as a user loops over
          units. Both: Lucid's FFT parameterisation with decorrelated colour (Lucid's ImageNet colour matrix,
          Fovea's `prior=LUCID`), Lucid's standard transforms (Lucent's kornia ones; Fovea's own torch port),
          ImageNet normalisation before the model (Lucent's `preprocess=True` appends it; Fovea's `to_input`
          does the same), Adam at Lucent's default rate 0.05 (Fovea's default for fft is 0.2: the bench passes
          `learning_rate=0.05`). Reports seconds, ms per unit per step, the speed-up, and the activation each
          reaches: the unit's spatial mean at the layer on the final 128 px image, untransformed, normalised,
          taken by this bench's own forward hook on the same model for both tools; the median over units of
          Fovea / Lucent.
  maco    Fovea's FFT vs MACO parameterisation at equal steps: ms per unit per step and the activation
          reached (median over the same units, and of MACO / FFT per unit). Each at its own default Adam rate
          (fft 0.2, maco 1.0: render.LEARNING_RATES); both with one prior estimated (`estimate_prior`) from
          scikit-image's bundled photos (astronaut, coffee, chelsea, rocket, motorcycle: the centre square and
          its four quadrants of each, resized to --size), so only the parameterisation differs.

Each timed call is preceded by one warm-up call of the same tool (2 steps); times are time.perf_counter
around the calls, with torch.set_num_threads(--threads, default all cores) for both. CPU only: Lucent 0.1.8
puts its tensors on cuda:0 by itself whenever CUDA is available, so run it where CUDA is not.

Differences that remain, by design of each tool (so the times compare what a user gets):
  * Lucent upsamples images under 224 px to 224 before the model (`render_vis`), 2.6x the pixels Fovea's
    transforms hand the model at 128 px (140 px). By default (--lucent-input match) the bench passes
    `fixed_image_size` so Lucent's model sees the same 140 px; --lucent-input default leaves Lucent's 224.
  * Lucent runs the whole model each step; Fovea stops the forward pass at the layer (probe.run_to).
  * Fovea redirects ReLU gradients for its first 16 steps (Lucid all the way; Lucent not at all):
    --redirect-steps N sets how many (0: none).
  * Lucent's transforms: random scale resizes the image (Fovea's scales inside a fixed frame), rotation
    pads with zeros (Fovea's reflects) and draws from -10..10 plus five extra 0s, as Lucid's list does.
  * Lucent's `render_vis` registers a forward hook on every module and never removes it, so a loop over
    units slows down call by call; the bench hands each Lucent call a fresh copy of the model (untimed).

Lucent is installed beside the project, not into it (no dependencies; IPython needs traitlets at import,
pygments comes from the venv; kornia 0.4.1 imports and runs on torch 2.x as is, no shim):
    .venv/bin/pip install --no-deps --target /work/bench-lucent torch-lucent==0.1.8 kornia==0.4.1 \\
        decorator ipython traitlets
scikit-image (the photos) must be importable from the venv. Usage:
    python bench/featvis.py [--parts lucent,maco] [--units 16] [--steps 64] [--size 128] [--layer layer3]
                            [--lucent-path /work/bench-lucent] [--lucent-input match|default] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.atlas.visualize import render_precision  # noqa: E402
from app.engine.featurevis.objectives import channel  # noqa: E402
from app.engine.featurevis.prior import LUCID, ImagePrior, estimate_prior  # noqa: E402
from app.engine.featurevis.render import RenderSettings, render  # noqa: E402
from app.engine.featurevis.transforms import standard_transforms  # noqa: E402
from app.engine.layout import choose_memory_format  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LUCENT_RATE = 0.05  # Lucent's default Adam rate (render_vis)
WARM_UP_STEPS = 2
INSTALL = ("{python} -m pip install --no-deps --target {path} torch-lucent==0.1.8 kornia==0.4.1 decorator "
           "ipython traitlets")


def resnet18(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).eval().requires_grad_(False)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation, as Lucent's `transform.normalize()`."""
    mean = torch.tensor(MEAN, device=images.device)[:, None, None]
    std = torch.tensor(STD, device=images.device)[:, None, None]
    return (images - mean) / std


def import_lucent(path: Path):
    sys.path.insert(0, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # kornia 0.4.1's torch.jit.script FutureWarning
            from lucent.modelzoo.util import get_model_layers
            from lucent.optvis import param, transform
            from lucent.optvis import render as lucent_render
    except ImportError as error:
        raise SystemExit(f"cannot import Lucent from {path} ({error}); install it there with\n    "
                         + INSTALL.format(python=sys.executable, path=path)) from error
    return get_model_layers, param, lucent_render, transform


def unit_means(model: torch.nn.Module, layer: str, images: torch.Tensor, units: list[int]) -> torch.Tensor:
    """(n,) spatial mean of channel units[i] at `layer` on images[i] (n, 3, h, w) in [0, 1], untransformed,
    normalised; one forward hook of this bench's own, the same for both tools."""
    found: list[torch.Tensor] = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, output: found.append(output))
    try:
        with torch.no_grad():
            model(normalise(images))
    finally:
        handle.remove()
    return found[0][torch.arange(len(units)), torch.tensor(units)].mean(dim=(1, 2))


def fovea(model, layer: str, units: list[int], settings: RenderSettings) -> tuple[torch.Tensor, float]:
    """Images of all units from one batched render, and its seconds (after a warm-up render). Input batches
    in the memory layout the product chooses for the model (app/engine/layout.py, `auto`: channels-last on
    a CPU where the model gives the same answers), as the model store does."""
    layout = choose_memory_format(model, normalise(torch.rand(2, 3, *settings.size)), "auto")

    def to_input(images: torch.Tensor) -> torch.Tensor:
        return normalise(images).contiguous(memory_format=layout)

    warm = dataclasses.replace(settings, steps=WARM_UP_STEPS)
    render(model, layer, channel(units), units, warm, to_input)
    started = time.perf_counter()
    images = render(model, layer, channel(units), units, settings, to_input)
    return images, time.perf_counter() - started


def lucent(lucent_api, model, layer: str, units: list[int], steps: int, size: int, input_size: int | None,
           seed: int) -> tuple[torch.Tensor, float]:
    """Images of the units rendered one by one by Lucent's render_vis, and the seconds of those calls (after
    a warm-up call). Each call gets a fresh copy of the model: render_vis leaves its hooks behind."""
    get_model_layers, param, lucent_render, transform = lucent_api
    name = layer.replace(".", "_")  # Lucent's layer names: the module path joined by underscores
    if name not in get_model_layers(model):
        raise SystemExit(f"Lucent does not know layer {name!r}")

    def call(copied: torch.nn.Module, unit: int, steps: int) -> np.ndarray:
        torch.manual_seed(seed + unit)
        np.random.seed(seed + unit)  # Lucent's transforms draw from numpy's global state
        return lucent_render.render_vis(
            copied, f"{name}:{unit}",
            param_f=lambda: param.image(size, fft=True, decorrelate=True),
            optimizer=lambda params: torch.optim.Adam(params, lr=LUCENT_RATE),
            transforms=transform.standard_transforms, thresholds=(steps,), preprocess=True,
            fixed_image_size=input_size, show_image=False, progress=False)[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call(copy.deepcopy(model), units[0], WARM_UP_STEPS)
        seconds, images = 0.0, []
        for unit in units:
            copied = copy.deepcopy(model)  # before the clock starts
            started = time.perf_counter()
            array = call(copied, unit, steps)
            seconds += time.perf_counter() - started
            images.append(torch.from_numpy(array).permute(0, 3, 1, 2))
    return torch.cat(images), seconds


def photo_prior(size: int) -> ImagePrior:
    """The colour covariance and magnitude spectrum of scikit-image's bundled photos at size x size."""
    try:
        import skimage.data
    except ImportError as error:
        raise SystemExit("the maco part needs scikit-image in the venv (pip install scikit-image)") from error
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket(),
              skimage.data.stereo_motorcycle()[0]]
    images = []
    for photo in photos:
        image = torch.from_numpy(np.ascontiguousarray(photo[..., :3])).permute(2, 0, 1).float() / 255
        side = min(image.shape[1:])
        top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
        square = image[:, top:top + side, left:left + side]
        half = side // 2
        crops = [square] + [square[:, y:y + half, x:x + half] for y in (0, half) for x in (0, half)]
        for crop in crops:
            resized = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True,
                                    align_corners=False)[0]
            images.append(resized.clamp(0, 1))
    return estimate_prior(images, "scikit-image's photos (5 photos, 5 crops each)")


def per_step(seconds: float, units: int, steps: int) -> float:
    return 1000 * seconds / (units * steps)


def median_ratio(a: torch.Tensor, b: torch.Tensor) -> float:
    return statistics.median((a / b).tolist())


def lucent_part(args, model, units: list[int]) -> None:
    api = import_lucent(args.lucent_path)
    # Fovea's transforms hand the model size + 12 px (pad 12, jitter 8, jitter 4): Lucent is resized to it.
    fovea_input = standard_transforms()(torch.zeros(1, 3, args.size, args.size), torch.Generator()).shape[-1]
    input_size = fovea_input if args.lucent_input == "match" else None
    settings = RenderSettings(steps=args.steps, size=(args.size, args.size), param="fft",
                              learning_rate=LUCENT_RATE, redirect_steps=args.redirect_steps,
                              seed=args.seed, prior=LUCID)
    # float32, and the product's precision where it differs (`auto`: bfloat16 where the CPU computes it natively).
    product = render_precision(args.precision, SimpleNamespace(device=torch.device("cpu"), module=model))
    precisions = dict.fromkeys(["float32", product])
    ours = {precision: fovea(model, args.layer, units, dataclasses.replace(settings, precision=precision))
            for precision in precisions}
    theirs, their_seconds = lucent(api, model, args.layer, units, args.steps, args.size, input_size, args.seed)
    their_acts = unit_means(model, args.layer, theirs, units)
    lucent_sees = f"{input_size} px" if input_size else "224 px (its default upsampling)"
    print(f"(1) {len(units)} units of resnet18 {args.layer}, {args.size} px, {args.steps} steps, fft + decorrelated "
          f"colour, Lucid transforms, Adam lr {LUCENT_RATE} on both (Fovea's fft default is "
          f"{RenderSettings().rate:g}); Fovea: one batch, model sees {fovea_input} px, redirected ReLU "
          f"for {args.redirect_steps} steps; Lucent: one render_vis per unit, model sees {lucent_sees}, float32")
    print(f"    {'':15} {'seconds':>9} {'ms/unit/step':>13} {'median act':>11} {'speed-up':>9} {'act / lucent':>13}")
    for precision, (images, seconds) in ours.items():
        acts = unit_means(model, args.layer, images, units)  # in float32, untransformed, for every row
        print(f"    {'fovea ' + precision:15} {seconds:9.2f} {per_step(seconds, len(units), args.steps):13.2f} "
              f"{statistics.median(acts.tolist()):11.4f} {their_seconds / seconds:8.2f}x "
              f"{median_ratio(acts, their_acts):13.3f}")
    print(f"    {'lucent':15} {their_seconds:9.2f} {per_step(their_seconds, len(units), args.steps):13.2f} "
          f"{statistics.median(their_acts.tolist()):11.4f}", flush=True)


def maco_part(args, model, units: list[int]) -> None:
    prior = photo_prior(args.size)
    rows = []
    for name in ("fft", "maco"):
        settings = RenderSettings(steps=args.steps, size=(args.size, args.size), param=name,
                                  redirect_steps=args.redirect_steps, seed=args.seed, prior=prior)
        images, seconds = fovea(model, args.layer, units, settings)
        rows.append((name, settings.rate, seconds, unit_means(model, args.layer, images, units)))
    print(f"(2) Fovea fft vs maco: {len(units)} units of resnet18 {args.layer}, {args.size} px, {args.steps} steps, "
          f"one batch each, prior of {prior.source}, each at its default Adam rate")
    print(f"    {'':8} {'lr':>5} {'seconds':>9} {'ms/unit/step':>13} {'median act':>11}")
    for name, rate, seconds, acts in rows:
        print(f"    {name:8} {rate:5g} {seconds:9.2f} {per_step(seconds, len(units), args.steps):13.2f} "
              f"{statistics.median(acts.tolist()):11.4f}")
    (_, _, fft_seconds, fft_acts), (_, _, maco_seconds, maco_acts) = rows
    print(f"    maco time per step / fft: {maco_seconds / fft_seconds:.2f}; activation reached, median over units "
          f"of maco/fft: {median_ratio(maco_acts, fft_acts):.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="lucent,maco")
    parser.add_argument("--units", type=int, default=16, help="units 0..N-1 of the layer")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--lucent-path", type=Path, default=Path("/work/bench-lucent"))
    parser.add_argument("--lucent-input", choices=["match", "default"], default="match",
                        help="match: Lucent's model sees the size Fovea's does; default: Lucent's 224 px")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="Fovea's pass besides float32 (default: the product's, auto)")
    parser.add_argument("--redirect-steps", type=int, default=RenderSettings.redirect_steps,
                        help="Fovea's steps with redirected ReLU gradients (default: the product's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU", flush=True)
    model, units = resnet18(args.seed), list(range(args.units))
    parts = args.parts.split(",")
    if "lucent" in parts:
        lucent_part(args, model, units)
    if "maco" in parts:
        maco_part(args, model, units)


if __name__ == "__main__":
    main()
