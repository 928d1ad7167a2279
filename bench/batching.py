"""Micro-batching's throughput (issue 19): requests per second of 16 concurrent clients against 1 client, for
predictions and for Grad-CAM, with micro-batching on (the defaults, and with a 2 ms window) and off
(FOVEA_BATCH_MAX_SIZE=1), in one run: each configuration is a real `fovea serve` over real HTTP on the same
atlas, measured in turn (never two at once). Goal on a GPU: 16 clients batched at least 3x the requests per
second of 16 clients unbatched; on a CPU, report what it is. Each client asks for a different dataset image
in turn (no answer is cached).
    python bench/batching.py [--data-dir DIR] [--models shapes-cnn efficientnet-lite2] [--requests 256] [--device auto]
DIR holds the demo atlas (default: built in a temporary folder, as `fovea serve` does at first start).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--models", nargs="+", default=["shapes-cnn"])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--device", default="auto", help="the servers' (auto: the GPU when there is one)")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="fovea-bench-batching-")) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    # The bundled ImageNet model only when asked for: its load is most of a server's start.
    builtin = [] if any(m.startswith("efficientnet") for m in args.models) else list(DEMO_MODELS_ONLY_ARGS)
    configurations = {"batched": {}, "window 2ms": {"FOVEA_BATCH_WINDOW_MS": "2"},
                      "unbatched": {"FOVEA_BATCH_MAX_SIZE": "1"}}
    results = {}
    for name, env in configurations.items():
        env = {**env, "FOVEA_AUTO_VISUALIZE_DEMO": "false"}
        with live_server(data_dir, *builtin, env=env, timeout=900, device=args.device) as base:
            httpx.get(f"{base}/api/models", timeout=60).raise_for_status()
            for model in args.models:
                for endpoint_name, endpoint in ENDPOINTS.items():
                    for clients in (1, 16):
                        results[name, model, endpoint_name, clients] = _rate(base, endpoint, model, clients,
                                                                             args.requests)
    for model in args.models:
        for endpoint_name in ENDPOINTS:
            print(f"{model} {endpoint_name}:")
            for name in configurations:
                one, _ = results[name, model, endpoint_name, 1]
                many, size = results[name, model, endpoint_name, 16]
                print(f"  {name:<10}  1 client {one:7.1f} req/s   16 clients {many:7.1f} req/s "
                      f"({many / one:4.2f}x, mean batch {size:4.1f})")
            ratio = results["batched", model, endpoint_name, 16][0] / results["unbatched", model, endpoint_name, 16][0]
            print(f"  16 clients, batched against unbatched: {ratio:.2f}x (goal on a GPU: >= 3)")


if __name__ == "__main__":
    main()
