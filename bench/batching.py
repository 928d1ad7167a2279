"""Micro-batching's throughput (issue 19): requests per second of 16 concurrent clients against 1 client, for
predictions and for Grad-CAM, with micro-batching on (the defaults, and with a 2 ms window) and off
(FOVEA_BATCH_MAX_SIZE=1), in one run: each configuration is a real `fovea serve` over real HTTP on the same
atlas, measured in turn (never two at once). Goal on a GPU: 16 clients batched at least 3x the requests per
second of 16 clients unbatched; on a CPU, report what it is. Each client asks for a different dataset image
in turn (no answer is cached).

Feature visualisations rendered on request, the same way: `--renders` units of a layer (default: the model's last
default layer) at the page's settings, by 1 client and by 4 and 8 (a layer grid asks for 4 at once), batched (the
defaults) and not (FOVEA_VISUALIZATION_BATCH_MAX_SIZE=1); every run renders with a seed of its own, so nothing
is answered from the store.
    python bench/batching.py [--data-dir DIR] [--models shapes-cnn efficientnet-lite2] [--requests 256]
                             [--renders 16] [--render-layer LAYER] [--device auto]
DIR holds the demo atlas (default: built in a temporary folder, as `fovea serve` does at first start).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import DEMO_MODELS_ONLY_ARGS
from tests.live_server import live_server

ENDPOINTS = {
    "predictions": lambda model, i: (f"/api/images/demo:{i}/predictions", {"model": model}),
    "gradcam": lambda model, i: (f"/api/images/demo:{i}/cam", {"model": model, "methods": "gradcam"}),
}


def _rate(base: str, endpoint, model: str, clients: int, requests: int) -> tuple[float, float]:
    """(requests per second, mean batch size) of `clients` threads sharing `requests` requests."""
    sizes = []
    with httpx.Client(base_url=base, timeout=300, limits=httpx.Limits(max_connections=clients)) as http:
        def one(i: int) -> None:
            path, params = endpoint(model, i % 500)
            response = http.get(path, params=params)
            response.raise_for_status()
            sizes.append(int(response.headers["Fovea-Batch-Size"]))

        for i in range(clients):  # warm: the model's first passes, the connections
            one(1000 + i)
        sizes.clear()
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, range(requests)))
        return requests / (time.perf_counter() - started), sum(sizes) / len(sizes)


RENDER_CLIENTS = (1, 4, 8)


def _render_rate(base: str, model: str, layer: str, clients: int, renders: int, seed: int) -> tuple[float, float]:
    """(units rendered per second, mean batch size) of `clients` threads asking for `renders` units' images."""
    sizes = []
    with httpx.Client(base_url=base, timeout=900, limits=httpx.Limits(max_connections=clients)) as http:
        def one(unit: int) -> None:
            response = http.get(f"/api/models/{model}/layers/{layer}/units/{unit}/visualization.png",
                                params={"seed": seed})
            response.raise_for_status()
            sizes.append(int(response.headers["Fovea-Batch-Size"]))

        one(renders)  # warm, at this seed: the model's first passes, the image prior read from the atlas
        sizes.clear()
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, range(renders)))
        return renders / (time.perf_counter() - started), sum(sizes) / len(sizes)


def _render_rates(base: str, models: list[str], layers: dict[str, str], renders: int, seeds) -> dict:
    return {(model, clients): _render_rate(base, model, layers[model], clients, renders, next(seeds))
            for model in models for clients in RENDER_CLIENTS}


def _print_render_rates(results: dict, models: list[str], layers: dict[str, str]) -> None:
    for model in models:
        print(f"{model} feature visualisations of {layers[model]} (units/s):")
        for name in ("batched", "unbatched"):
            one, _ = results[name][model, 1]
            print(f"  {name:<10}" + "".join(
                f"  {clients} clients {rate:6.3f} ({rate / one:4.2f}x, mean batch {size:4.1f})"
                for (m, clients), (rate, size) in results[name].items() if m == model))
        for clients in RENDER_CLIENTS[1:]:
            ratio = results["batched"][model, clients][0] / results["unbatched"][model, clients][0]
            print(f"  {clients} clients, batched against unbatched: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--models", nargs="+", default=["shapes-cnn"])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--renders", type=int, default=16, help="units rendered per run (0: no renders)")
    parser.add_argument("--render-layer", help="the layer rendered (default: each model's last default layer)")
    parser.add_argument("--device", default="auto", help="the servers' (auto: the GPU when there is one)")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="fovea-bench-batching-")) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    # The bundled ImageNet model only when asked for: its load is most of a server's start.
    builtin = [] if any(m.startswith("efficientnet") for m in args.models) else list(DEMO_MODELS_ONLY_ARGS)
    configurations = {"batched": {}, "window 2ms": {"FOVEA_BATCH_WINDOW_MS": "2"},
                      "unbatched": {"FOVEA_BATCH_MAX_SIZE": "1", "FOVEA_VISUALIZATION_BATCH_MAX_SIZE": "1"}}
    results, render_results, seeds = {}, {}, itertools.count(1000)
    for name, env in configurations.items():
        if name == "window 2ms" and not args.requests:
            continue  # a window of the passes' only
        env = {**env, "FOVEA_AUTO_VISUALIZE_DEMO": "false"}
        with live_server(data_dir, *builtin, env=env, timeout=900, device=args.device) as base:
            httpx.get(f"{base}/api/models", timeout=60).raise_for_status()
            for model in args.models if args.requests else ():
                for endpoint_name, endpoint in ENDPOINTS.items():
                    for clients in (1, 16):
                        results[name, model, endpoint_name, clients] = _rate(base, endpoint, model, clients,
                                                                             args.requests)
            if args.renders and name != "window 2ms":
                layers = {model: args.render_layer or [layer["name"] for layer in httpx.get(
                    f"{base}/api/models/{model}", timeout=60).json()["layers"] if layer["default"]][-1]
                          for model in args.models}
                render_results[name] = _render_rates(base, args.models, layers, args.renders, seeds)
    for model in args.models if args.requests else ():
        for endpoint_name in ENDPOINTS:
            print(f"{model} {endpoint_name}:")
            for name in configurations:
                one, _ = results[name, model, endpoint_name, 1]
                many, size = results[name, model, endpoint_name, 16]
                print(f"  {name:<10}  1 client {one:7.1f} req/s   16 clients {many:7.1f} req/s "
                      f"({many / one:4.2f}x, mean batch {size:4.1f})")
            ratio = results["batched", model, endpoint_name, 16][0] / results["unbatched", model, endpoint_name, 16][0]
            print(f"  16 clients, batched against unbatched: {ratio:.2f}x (goal on a GPU: >= 3)")
    if render_results:
        _print_render_rates(render_results, args.models, layers)

if __name__ == "__main__":
    main()
