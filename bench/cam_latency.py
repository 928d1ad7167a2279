"""CAM latency (issue 4, item 3): Fovea's CAM engine against pytorch-grad-cam, each ratio measured in one run
on the same model, input and device, printing medians of `--repeats` alternating rounds (after one warm-up
round each: a shared 2-core machine drifts by more than some of the differences measured).

  gradient  the 7 gradient-family maps (gradcam, gradcampp, xgradcam, hirescam, layercam, eigencam,
            eigengradcam) in one Fovea call vs 7 pytorch-grad-cam objects called one after another as a
            user writes them; torchvision resnet50 at 224, layer4. Target >= 6x.
  overhead  Fovea gradcam alone vs the bare forward + backward it needs (a hook keeping layer4's output,
            the model, torch.autograd.grad of the top logit w.r.t. that output). Target overhead <= 10%.
  score     Score-CAM vs pytorch-grad-cam's ScoreCAM, resnet18 layer4 at 224. Target >= 1.5x, r >= 0.99.
  ablation  Ablation-CAM vs pytorch-grad-cam's AblationCAM, resnet18 layer4 at 224. Target >= 100x, r >= 0.99.
  http      a CAM request to a running server vs the in-process engine call (same model, image, methods), on
            resnet50 (random weights) and the demo model. Target overhead <= 20%.
  rss       the server's resident memory after 500 vs after 50 CAM requests. Target within 5%.

Models have random weights (seed 0; --weights loads torchvision's pretrained files from a folder instead) and
are served as the store serves them: eval(), parameters frozen, inputs channels-last on the CPU (contiguous
on a GPU, --device cuda). The served model's parameters do not require grad, so the library is given
an input that does (else its backward has no graph); --trainable-library also times it on a copy whose
parameters require grad, as a user's model usually is (its backward then computes every weight's gradient).
The input is a rendered demo scene, ImageNet-normalised. The process allocates memory as the fovea command
does (app/allocator.py); --system-allocator leaves the platform's defaults. Requires the test extra
(pytorch-grad-cam). Usage:
    python bench/cam_latency.py [--parts gradient,overhead,score,ablation,http,rss] [--repeats 5]
                                [--device cuda] [--weights ~/.cache/torch/hub/checkpoints]
"""

from __future__ import annotations

import os
import sys

from app.allocator import tune_allocator

if "--system-allocator" not in sys.argv:
    tune_allocator()  # before torch is imported
os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import argparse  # noqa: E402
import copy  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402

from app.demo.render import render  # noqa: E402
from app.demo.scenes import sample_scene  # noqa: E402
from app.engine.cam import compute_cams, postprocess  # noqa: E402

GRADIENT_FAMILY = ["gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam"]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Options:
    """Set once from the command line: where the in-process parts run, and the weights they load."""

    device = torch.device("cpu")
    weights: Path | None = None  # a folder of torchvision state dicts: resnet18-*.pth, or .pt or .safetensors


def served(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    if Options.weights is not None:
        from app.store.checkpoints import fit_state_dict, read_checkpoint

        found = sorted(path for pattern in (f"{name}.*", f"{name}-*") for path in Options.weights.glob(pattern)
                       if path.suffix in (".pth", ".pt", ".safetensors"))
        if not found:
            raise SystemExit(f"no {name} weights (.pth, .pt or .safetensors) in {Options.weights}")
        fit_state_dict(model, read_checkpoint(found[0]), str(found[0]))
    return model.eval().requires_grad_(False).to(Options.device)


def scene(size: int = 224) -> torch.Tensor:
    """The input as the store serves it: channels-last on the CPU, contiguous elsewhere (app/engine/layout.py)."""
    pixels, _ = render(sample_scene(0, "heldout", 3, size))
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    image = (image - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    return as_served(image[None].to(Options.device))


def as_served(image: torch.Tensor) -> torch.Tensor:
    return image.contiguous(memory_format=torch.channels_last if image.device.type == "cpu" else
                            torch.contiguous_format)


def alternate(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs taking turns; one warm-up round first. Timed to the end of
    the device's work."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeats + 1):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            if Options.device.type == "cuda":
                torch.cuda.synchronize(Options.device)
            if round_:
                seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel())[0, 1])


def library_cam(cls, model: torch.nn.Module, layer: str, image: torch.Tensor, target=None, **attributes):
    """One pytorch-grad-cam object, used once, as its README shows."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with cls(model=model, target_layers=[dict(model.named_modules())[layer]]) as cam:
        for name, value in attributes.items():
            setattr(cam, name, value)
        targets = None if target is None else [ClassifierOutputTarget(target)]
        return cam(input_tensor=image.clone().requires_grad_(True), targets=targets)[0]


def report(label: str, ours: float, theirs: float, target: str, extra: str = "") -> None:
    print(f"{label}: fovea {ours * 1000:.1f} ms, pytorch-grad-cam {theirs * 1000:.1f} ms -> "
          f"{theirs / ours:.2f}x ({target}){extra}", flush=True)


def gradient_part(repeats: int, trainable_library: bool) -> None:
    import pytorch_grad_cam as lib

    classes = [lib.GradCAM, lib.GradCAMPlusPlus, lib.XGradCAM, lib.HiResCAM, lib.LayerCAM, lib.EigenCAM,
               lib.EigenGradCAM]
    model, image = served("resnet50"), scene()
    runs = {"fovea": lambda: compute_cams(model, image, "layer4", GRADIENT_FAMILY),
            "library": lambda: [library_cam(cls, model, "layer4", image) for cls in classes]}
    if trainable_library:
        trainable = copy.deepcopy(model).requires_grad_(True)
        runs["library, trainable parameters"] = lambda: [library_cam(cls, trainable, "layer4", image)
                                                         for cls in classes]
    medians = alternate(runs, repeats)
    result = compute_cams(model, image, "layer4", GRADIENT_FAMILY)
    agreement = []
    for method, cls in zip(GRADIENT_FAMILY, classes):
        raw = result.maps[method].raw
        expected = library_cam(cls, model, "layer4", image, result.target)
        signs = (1.0, -1.0) if method.startswith("eigen") else (1.0,)  # a principal component has no sign
        agreement.append(max(pearson(postprocess(sign * raw, size=(224, 224)), expected) for sign in signs))
    report("(1) 7 gradient-family maps, resnet50 layer4 224", medians["fovea"], medians["library"],
           "target >= 6x", f"; min r over the 7 = {min(agreement):.4f}")
    if trainable_library:
        report("    same, library on a copy with trainable parameters", medians["fovea"],
               medians["library, trainable parameters"], "for reference")


def overhead_part(repeats: int) -> None:
    model, image = served("resnet50"), scene()

    def bare() -> None:
        found: list[torch.Tensor] = []
        handle = model.layer4.register_forward_hook(lambda _module, _inputs, output: found.append(output))
        try:
            logits = model(image.detach().clone().requires_grad_(True))
            torch.autograd.grad(logits[0, logits[0].argmax()], found[0])
        finally:
            handle.remove()

    def inference() -> None:
        with torch.inference_mode():
            model(image)

    medians = alternate({"fovea": lambda: compute_cams(model, image, "layer4", ["gradcam"]), "bare": bare,
                         "inference": inference}, repeats)
    print(f"(2) gradcam alone, resnet50 layer4 224: fovea {medians['fovea'] * 1000:.1f} ms, bare forward+backward "
          f"{medians['bare'] * 1000:.1f} ms -> overhead {100 * (medians['fovea'] / medians['bare'] - 1):+.1f}% "
          f"(target <= 10%); inference-only forward {medians['inference'] * 1000:.1f} ms "
          f"({100 * (medians['fovea'] / medians['inference'] - 1):+.1f}%)", flush=True)


def score_part(repeats: int, batch_size: int) -> None:
    from pytorch_grad_cam import ScoreCAM

    # Both are handed the tensor a user builds (ToTensor, Normalize: contiguous); Fovea converts it to the
    # layout the store picked for the model inside the timed call, as `LoadedModel.as_input` does.
    model, image = served("resnet18"), scene().contiguous()
    target = compute_cams(model, image, "layer4", ["gradcam"]).target

    def fovea():
        return compute_cams(model, as_served(image), "layer4", ["scorecam"], score_batch_size=batch_size)

    runs = {"fovea": fovea,
            "library": lambda: library_cam(ScoreCAM, model, "layer4", image, target),
            "library, channels-last input": lambda: library_cam(
                ScoreCAM, model, "layer4", image.contiguous(memory_format=torch.channels_last), target)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        medians = alternate(runs, repeats)
    result = fovea()
    agreement = pearson(postprocess(result.maps["scorecam"].raw, size=(224, 224)),
                        library_cam(ScoreCAM, model, "layer4", image, target))
    masks = compute_masks_run(model, image)
    report(f"(3) Score-CAM, resnet18 layer4 224 (fovea batch {batch_size}, library default 16)", medians["fovea"],
           medians["library"], "target >= 1.5x",
           f"; r = {agreement:.4f} (paper weighting vs the library's); {masks}")
    report("    same, library also given a channels-last input", medians["fovea"],
           medians["library, channels-last input"], "for reference")


def compute_masks_run(model: torch.nn.Module, image: torch.Tensor) -> str:
    """How many masked forward passes Score-CAM leaves (dead channels skipped, equal masks once), of one per
    channel."""
    from app.engine.cam.score import channel_masks
    from app.engine.probe import layer_output

    activations = layer_output(model, "layer4", image)[0].float()
    c = activations.shape[0]
    live = activations[activations.reshape(c, -1).ne(0).any(dim=1)]
    distinct = torch.unique(channel_masks(live).reshape(len(live), -1), dim=0).shape[0]
    return f"{distinct} masked passes for {c} channels ({c - len(live)} dead)"


def ablation_part(repeats: int, batch_size: int) -> None:
    from pytorch_grad_cam import AblationCAM

    model, image = served("resnet18"), scene()
    started = time.perf_counter()
    first = compute_cams(model, image, "layer4", ["ablationcam"], ablation_batch_size=batch_size)
    first_call = time.perf_counter() - started
    target = first.target
    medians = alternate({
        "fovea": lambda: compute_cams(model, image, "layer4", ["ablationcam"], ablation_batch_size=batch_size),
        "library": lambda: library_cam(AblationCAM, model, "layer4", image, target)}, repeats)
    agreement = pearson(postprocess(first.maps["ablationcam"].raw, size=(224, 224)),
                        library_cam(AblationCAM, model, "layer4", image, target))
    report(f"(4) Ablation-CAM, resnet18 layer4 224 (fovea batch {batch_size}, library default 32)",
           medians["fovea"], medians["library"], "target >= 100x",
           f"; r = {agreement:.4f}; split={first.split}; first call (traces and checks the graph) "
           f"{first_call * 1000:.0f} ms -> {medians['library'] / first_call:.0f}x")


def http_part(repeats: int) -> None:
    """A CAM request to a running `fovea serve` (an uploaded image, kept-alive connection, full answer: raw
    and shown maps as JSON) vs the in-process engine call on the same model, preprocessed image and methods."""
    import httpx

    with tempfile.TemporaryDirectory() as folder, served_over_http(Path(folder)) as (base, _process):
        picture = encoded_scene(224)
        store = in_process_store(Path(folder))
        with httpx.Client(base_url=base, timeout=600) as client:
            image_id = client.post("/api/images", files={"file": ("scene.png", picture)}).json()["id"]
            for model_id, layer, methods in HTTP_CASES:
                http_case(client, image_id, store.ready(model_id), Image.open(io.BytesIO(picture)), layer, methods,
                          repeats)


def http_case(client, image_id: str, loaded, picture: Image.Image, layer: str, methods: list[str],
              repeats: int) -> None:
    batch = loaded.as_input(loaded.preprocessing(picture).unsqueeze(0))
    params = {"model": loaded.id, "layer": layer, "methods": ",".join(methods)}

    def over_http() -> None:  # until the whole body has arrived; reading the JSON is the client's work
        client.get(f"/api/images/{image_id}/cam", params=params).raise_for_status()

    medians = alternate({"engine": lambda: compute_cams(loaded.module, batch, layer, methods), "http": over_http},
                        repeats)
    print(f"(5) HTTP vs in-process, {loaded.id} {layer} {'+'.join(methods)}: engine "
          f"{medians['engine'] * 1000:.1f} ms, HTTP {medians['http'] * 1000:.1f} ms -> overhead "
          f"{100 * (medians['http'] / medians['engine'] - 1):+.1f}% (target <= 20%)", flush=True)


def rss_part(repeats: int) -> None:
    """Server RSS after 50 and after 500 CAM requests: a mix of methods, targets, layers and images
    (uploads and dataset-free), so a leak anywhere on the request path would show."""
    import httpx

    del repeats  # one long run
    with tempfile.TemporaryDirectory() as folder, served_over_http(Path(folder)) as (base, process):
        with httpx.Client(base_url=base, timeout=600) as client:
            images = [client.post("/api/images", files={"file": (f"{i}.png", encoded_scene(112, i))}).json()["id"]
                      for i in range(10)]
            layers = ["block2", "block3", "block4"]
            methods = ["gradcam,gradcampp,layercam", "scorecam", "ablationcam", "eigencam,hirescam", "saliency",
                       "guided-gradcam,xgradcam", "eigengradcam"]
            rss = {}
            for n in range(1, 501):
                response = client.get(f"/api/images/{images[n % 10]}/cam", params={
                    "model": "shapes-cnn", "layer": layers[n % 3], "methods": methods[n % 7], "target": n % 10})
                response.raise_for_status()
                if n in (50, 100, 200, 300, 400, 500):
                    rss[n] = resident_bytes(process.pid)
    print("(6) server RSS after n CAM requests (shapes-cnn, 7 method mixes, 3 layers, 10 targets, 10 uploads): "
          + ", ".join(f"{n}: {value / 2**20:.1f} MiB" for n, value in rss.items())
          + f" -> 500 vs 50: {100 * (rss[500] / rss[50] - 1):+.2f}% (target within 5%)", flush=True)


HTTP_CASES = [("resnet50", "layer4", ["gradcam"]), ("resnet50", "layer4", GRADIENT_FAMILY),
              ("shapes-cnn", "block4", ["gradcam"]), ("shapes-cnn", "block4", ["gradcam", "gradcampp", "layercam"])]


@contextmanager
def served_over_http(folder: Path):
    """`fovea serve` with the demo models and a random-weight resnet50, no background indexing."""
    from bench.models import random_torchvision_card
    from tests.live_server import live_server_process

    random_torchvision_card(folder / "cards", "resnet50")
    with live_server_process(folder / "data", "--model-dir", str(folder / "cards"),
                             env={"FOVEA_AUTO_INDEX_DEMO": "false"}) as served:
        yield served


def in_process_store(folder: Path):
    from app.settings import Settings
    from app.store.store import load_store

    return load_store(Settings(data_dir=folder / "in-process", model_dirs=[folder / "cards"], device="cpu",
                               auto_index_demo=False))


def encoded_scene(size: int, index: int = 3) -> bytes:
    pixels, _ = render(sample_scene(0, "heldout", index, size))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmRSS:"))) * 1024


PARTS = {"gradient": gradient_part, "overhead": overhead_part, "score": score_part, "ablation": ablation_part,
         "http": http_part, "rss": rss_part}
DEFAULT_PARTS = "gradient,overhead,score,ablation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=DEFAULT_PARTS, help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--score-batch-size", type=int, default=32)
    parser.add_argument("--ablation-batch-size", type=int, default=128)
    parser.add_argument("--trainable-library", action="store_true")
    parser.add_argument("--system-allocator", action="store_true", help="skip app/allocator.py's settings")
    parser.add_argument("--device", default="cpu", help="where gradient, overhead, score and ablation run: cpu, "
                                                        "cuda (http and rss always serve on the CPU)")
    parser.add_argument("--weights", type=Path, help="a folder of torchvision state dicts (resnet18-*.pth, "
                                                     ".pt or .safetensors) to load instead of random weights")
    args = parser.parse_args()
    Options.device, Options.weights = torch.device(args.device), args.weights
    parts = args.parts.split(",")
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {Options.device}, repeats {args.repeats}, "
          f"allocator {'system' if args.system_allocator else 'fovea'}, "
          f"weights {Options.weights or 'random (seed 0)'}", flush=True)
    for part in parts:
        if part == "gradient":
            gradient_part(args.repeats, args.trainable_library)
        elif part == "score":
            score_part(args.repeats, args.score_batch_size)
        elif part == "ablation":
            ablation_part(args.repeats, args.ablation_batch_size)
        else:
            PARTS[part](args.repeats)


if __name__ == "__main__":
    main()
