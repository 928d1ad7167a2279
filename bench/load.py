"""Load (issue 14, item 17): a real `fovea serve` with the demo models, first the same requests from one
client, then `--clients` concurrent clients for `--seconds`, in one run, on one server. For each kind of
request: p50 and p99 alone and under load, their ratio, and errors. Target: a unit's JSON at p99 under
load within 5x of its p99 alone, and no errors.

The mix is what pages ask for, weighted as a few people browsing and explaining would ask:
  unit        a unit's page data (JSON)                     /api/models/{m}/layers/{l}/units/{u}
  image       a dataset image's bytes                       /api/datasets/demo/images/{i}
  units-page  a layer grid's first page, with its maps      /api/models/{m}/layers/{l}/units?limit=96&maps=true
  predictions a model's top classes on a dataset image      /api/images/demo:{i}/predictions?model={m}
  gradcam     Grad-CAM of a layer on a dataset image        /api/images/demo:{i}/cam?model={m}&layer={l}
  scorecam    Score-CAM, now and then                       ... &methods=scorecam
Images, units, layers and targets are drawn at random (seeded), so answers come from the server's work,
not from a cache the client holds (it never sends If-None-Match). What the server does once (each
layer's receptive field, each model's first pass) is done before either phase.

The demo atlases come from the server's own first start (built in the background the first time, which
takes minutes; `--data-dir` keeps them for the next run). Usage:
    python bench/load.py [--seconds 60] [--clients 64] [--alone 30] [--data-dir ~/.cache/fovea-bench-load]
    python bench/load.py --seconds 5 --clients 8 --alone 5     # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.live_server import children, live_server_process  # noqa: E402

DEMO_MODELS = ("shapes-cnn", "shapes-mobilenet")
# kind -> weight in the mix under load; the alone phase asks each kind `--alone` times (Score-CAM a fifth).
MIX = {"unit": 30, "image": 30, "units-page": 8, "predictions": 12, "gradcam": 17, "scorecam": 3}
TARGET_KIND, TARGET_RATIO = "unit", 5.0


@dataclass
class Demo:
    """What the requests are drawn from: each model's indexed layers and their units, the dataset's size."""

    layers: dict[str, dict[str, int]]  # model -> layer -> units
    images: int
    classes: dict[str, int]


@dataclass
class Results:
    seconds: dict[str, list[float]] = field(default_factory=dict)
    started: dict[str, list[float]] = field(default_factory=dict)  # perf_counter at send (one clock for all)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, started: float, seconds: float) -> None:
        self.seconds.setdefault(kind, []).append(seconds)
        self.started.setdefault(kind, []).append(started)

    def fail(self, kind: str, message: str) -> None:
        self.errors.setdefault(kind, []).append(message)

    def merge(self, other: Results) -> None:
        for mine, theirs in ((self.seconds, other.seconds), (self.started, other.started),
                             (self.errors, other.errors)):
            for kind, values in theirs.items():
                mine.setdefault(kind, []).extend(values)

    def summary(self, kind: str) -> dict:
        times = np.array(self.seconds.get(kind, []))
        return {"n": int(times.size), "errors": len(self.errors.get(kind, [])),
                "p50_ms": float(np.percentile(times, 50) * 1000) if times.size else None,
                "p99_ms": float(np.percentile(times, 99) * 1000) if times.size else None,
                "slow_seconds": self.slow_seconds(kind)}

    def slow_seconds(self, kind: str) -> int | None:
        """In how many distinct seconds of the run the requests slower than the p99 were sent: a few means
        stalls that held everything at once, many means a tail spread over the run."""
        times = np.array(self.seconds.get(kind, []))
        if not times.size:
            return None
        slow = np.array(self.started[kind])[times > np.percentile(times, 99)]
        return len({int(start) for start in slow})


def request_for(kind: str, demo: Demo, rng: random.Random) -> tuple[str, dict]:
    model = rng.choice(sorted(demo.layers))
    layer = rng.choice(sorted(demo.layers[model]))
    image = rng.randrange(demo.images)
    if kind == "unit":
        return f"/api/models/{model}/layers/{layer}/units/{rng.randrange(demo.layers[model][layer])}", {}
    if kind == "image":
        return f"/api/datasets/demo/images/{image}", {}
    if kind == "units-page":
        return f"/api/models/{model}/layers/{layer}/units", {"limit": 96, "maps": "true"}
    if kind == "predictions":
        return f"/api/images/demo:{image}/predictions", {"model": model}
    cam = {"model": model, "layer": layer, "target": rng.randrange(demo.classes[model])}
    if kind == "gradcam":
        return f"/api/images/demo:{image}/cam", {**cam, "methods": "gradcam"}
    if kind == "scorecam":
        return f"/api/images/demo:{image}/cam", {**cam, "methods": "scorecam"}
    raise ValueError(kind)


async def timed(client: httpx.AsyncClient, kind: str, demo: Demo, rng: random.Random, results: Results) -> None:
    path, params = request_for(kind, demo, rng)
    started = time.perf_counter()
    try:
        response = await client.get(path, params=params)
        await response.aread()
        if response.status_code != 200:
            results.fail(kind, f"{response.status_code} {path} {response.text[:200]}")
            return
    except httpx.HTTPError as exc:
        results.fail(kind, f"{type(exc).__name__} {path}: {exc}")
        return
    results.add(kind, started, time.perf_counter() - started)


def warm_up(base: str, demo: Demo) -> float:
    """Seconds spent on what the server does once: each layer's receptive field (computed with the model on
    the layer's first unit read) and each model's first pass. Neither phase below counts it."""
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=600) as http:
        for model, layers in demo.layers.items():
            for layer in layers:
                http.get(f"/api/models/{model}/layers/{layer}/units/0").raise_for_status()
            http.get("/api/images/demo:0/predictions", params={"model": model}).raise_for_status()
            http.get("/api/images/demo:0/cam", params={"model": model}).raise_for_status()
    return time.perf_counter() - started


async def alone(base: str, demo: Demo, per_kind: int, seed: int) -> Results:
    """One client, one request at a time: each kind `per_kind` times (Score-CAM a fifth as often)."""
    rng, results = random.Random(seed), Results()
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        for kind in MIX:
            for _ in range(max(1, per_kind // 5) if kind == "scorecam" else per_kind):
                await timed(client, kind, demo, rng, results)
    return results


async def under_load(base: str, demo: Demo, clients: range, total: int, start_at: float, seconds: float,
                     ramp: float, seed: int) -> tuple[Results, Results]:
    """Clients number `clients` of `total`, each sending its next request as soon as its last is answered.
    Client n starts at `start_at` + `ramp` * n / `total` (a perf_counter time), as load tools ramp users up;
    what is asked before the last one has started (the ramp) is kept apart from what is asked in the
    `seconds` after (the load). With `ramp` 0 they all send their first request at the same instant, and that
    burst is part of the load."""
    ramp_results, results = Results(), Results()
    kinds, weights = list(MIX), list(MIX.values())
    loaded_from, deadline = start_at + ramp, start_at + ramp + seconds
    # Idle connections are dropped by the client before the server's keep-alive (keep_alive_seconds, 5 s) closes
    # them: at equal timeouts a request can go out on a connection the server is closing (a ReadError, never
    # seen by the server; browsers resend a GET there, httpx does not).
    limits = httpx.Limits(max_connections=len(clients), max_keepalive_connections=len(clients), keepalive_expiry=2.0)

    async def client_loop(n: int, client: httpx.AsyncClient, rng: random.Random) -> None:
        await asyncio.sleep(max(0.0, start_at + ramp * n / total - time.perf_counter()))
        while (now := time.perf_counter()) < deadline:
            await timed(client, rng.choices(kinds, weights)[0], demo, rng,
                        results if now >= loaded_from else ramp_results)

    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        await asyncio.gather(*(client_loop(n, client, random.Random(seed + 1 + n)) for n in clients))
    return ramp_results, results


def client_process(*args) -> tuple[Results, Results, float]:
    """One client process's share of `under_load`, and the CPU seconds it used."""
    ramped, loaded = asyncio.run(under_load(*args))
    return ramped, loaded, time.process_time()


def run_clients(base: str, demo: Demo, clients: int, processes: int, seconds: float, ramp: float,
                seed: int) -> tuple[Results, Results, float]:
    """`under_load` over `processes` client processes (forked: they share the mix and the clock). One Python
    event loop serving 64 connections adds its own queueing to what it measures; a browser per user does
    not, so the clients are spread over a few loops."""
    start_at = time.perf_counter() + 1.0  # every process has started by then
    shares = [range(n, clients, processes) for n in range(processes)]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        outcomes = list(pool.map(client_process, *zip(*[(base, demo, share, clients, start_at, seconds, ramp, seed)
                                                        for share in shares])))
    ramped, loaded = Results(), Results()
    for ramp_part, load_part, _ in outcomes:
        ramped.merge(ramp_part)
        loaded.merge(load_part)
    return ramped, loaded, sum(cpu for *_, cpu in outcomes)


def wait_for_demo_atlases(base: str, timeout: float) -> Demo:
    """The demo models' indexed layers once both atlases exist (the server builds them on its first start)."""
    deadline, said = time.monotonic() + timeout, ""
    with httpx.Client(base_url=base, timeout=60) as http:
        while True:
            layers, building = {}, []
            for model in DEMO_MODELS:
                body = http.get(f"/api/models/{model}/atlases").json()
                demo = [atlas for atlas in body["atlases"] if atlas["dataset"] == "demo"]
                if demo:
                    layers[model] = demo[0]
                elif body.get("build"):
                    building.append(f"{model}: {body['build'].get('state')} {body['build'].get('done')}/"
                                    f"{body['build'].get('total')}")
            if len(layers) == len(DEMO_MODELS):
                break
            note = "building the demo atlases (first start): " + "; ".join(building)
            if note != said:
                print(note, flush=True)
                said = note
            if time.monotonic() > deadline:
                raise SystemExit(f"the demo atlases were not built within {timeout:.0f} s")
            time.sleep(5)
        units = {model: {name: http.get(f"/api/models/{model}/layers/{name}/units", params={"limit": 1})
                         .json()["units_total"] for name in layers[model]["layers"]} for model in DEMO_MODELS}
        classes = {model: len(http.get(f"/api/models/{model}").json()["labels"]) for model in DEMO_MODELS}
        return Demo(layers=units, images=min(atlas["images"] for atlas in layers.values()), classes=classes)


def report(alone_results: Results, loaded: Results, clients: int, seconds: float, alone_seconds: float) -> dict:
    rows = {}
    print(f"\n{'kind':<12} {'alone n':>8} {'p50 ms':>8} {'p99 ms':>8} | {'load n':>7} {'p50 ms':>8} {'p99 ms':>9} "
          f"| {'p50 x':>6} {'p99 x':>6} | errors")
    for kind in MIX:
        one, many = alone_results.summary(kind), loaded.summary(kind)
        ratio = {q: (many[q] / one[q] if one[q] and many[q] else None) for q in ("p50_ms", "p99_ms")}
        rows[kind] = {"alone": one, "load": many, "p50_ratio": ratio["p50_ms"], "p99_ratio": ratio["p99_ms"]}

        def cell(value, width, digits=1):
            return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

        print(f"{kind:<12} {one['n']:>8} {cell(one['p50_ms'], 8)} {cell(one['p99_ms'], 8)} | {many['n']:>7} "
              f"{cell(many['p50_ms'], 8)} {cell(many['p99_ms'], 9)} | {cell(ratio['p50_ms'], 6, 2)} "
              f"{cell(ratio['p99_ms'], 6, 2)} | {one['errors'] + many['errors']}")
    answered = sum(len(v) for v in loaded.seconds.values())
    alone_answered = sum(len(v) for v in alone_results.seconds.values())
    errors = {kind: alone_results.errors.get(kind, []) + loaded.errors.get(kind, []) for kind in MIX}
    total_errors = sum(len(v) for v in errors.values())
    print(f"\nthroughput: {alone_answered / alone_seconds:.1f} requests/s from one client, "
          f"{answered / seconds:.1f} requests/s from {clients} clients")
    for kind, messages in errors.items():
        for message in messages[:3]:
            print(f"error ({kind}): {message}")
    slow = rows[TARGET_KIND]["load"]["slow_seconds"]
    print(f"{TARGET_KIND} requests over its p99 under load were sent in {slow} distinct seconds of {seconds:g}")
    target = rows[TARGET_KIND]["p99_ratio"]
    met = target is not None and target <= TARGET_RATIO and total_errors == 0
    print(f"target: {TARGET_KIND} p99 under load within {TARGET_RATIO:g}x of alone, 0 errors -> "
          f"{'met' if met else 'NOT met'} ({'-' if target is None else f'{target:.2f}x'}, {total_errors} errors)")
    return {"clients": clients, "seconds": seconds, "kinds": rows, "errors": total_errors,
            "throughput_alone": alone_answered / alone_seconds, "throughput_load": answered / seconds,
            "target_met": met}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients run together")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--client-processes", type=int, default=4, help="event loops the clients are spread over")
    parser.add_argument("--alone", type=int, default=100, help="requests of each kind from one client first")
    parser.add_argument("--ramp", type=float, default=5.0,
                        help="seconds over which the clients start, before the measured load; 0: all at once")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "fovea-bench-load" / "data",
                        help="the server's data directory; its demo atlases are kept for the next run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--build-timeout", type=float, default=3600.0, help="seconds to wait for the atlases")
    default_mix = ",".join(f"{kind}={weight}" for kind, weight in MIX.items())
    parser.add_argument("--mix", help="weights in the mix under load, e.g. unit=30,image=30,gradcam=17 (kinds "
                                      f"left out are not asked for); default: {default_mix}")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--trace", type=Path, help="also write every request under load here: kind, start (s), ms")
    args = parser.parse_args()
    if args.mix:
        weights = dict(part.split("=") for part in args.mix.split(","))
        unknown = set(weights) - set(MIX)
        if unknown:
            parser.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(MIX)}")
        MIX.clear()
        MIX.update({kind: int(weight) for kind, weight in weights.items()})
    args.data_dir.mkdir(parents=True, exist_ok=True)
    # The server's own defaults (compute_concurrency, threads, ...), as `fovea serve` runs; it builds the
    # demo atlases in the background on its first start. Its other first-start job, rendering the demo models'
    # feature visualisations (many minutes of CPU here), is off: it would run through both phases unequally.
    with live_server_process(args.data_dir, timeout=600,
                             env={"FOVEA_AUTO_VISUALIZE_DEMO": "false"}) as (base, process):
        demo = wait_for_demo_atlases(base, args.build_timeout)
        print(f"server {base}; {sum(len(layers) for layers in demo.layers.values())} indexed layers, "
              f"{demo.images} images", flush=True)
        print(f"warm-up (receptive fields, first passes): {warm_up(base, demo):.1f} s", flush=True)
        started = time.perf_counter()
        alone_results = asyncio.run(alone(base, demo, args.alone, args.seed))
        alone_seconds = time.perf_counter() - started
        print(f"alone: {alone_seconds:.1f} s; now {args.clients} clients for {args.seconds:g} s", flush=True)
        processes = [process.pid, *children(process.pid)]  # the front, then its model worker
        started, server_cpu = time.perf_counter(), [cpu_seconds(pid) for pid in processes]
        ramped, loaded, client_cpu = run_clients(base, demo, args.clients, args.client_processes, args.seconds,
                                                 args.ramp, args.seed)
        seconds = time.perf_counter() - started
        # On a shared machine the processes' share of the cores says whether the figures mean anything.
        used = [100 * (cpu_seconds(pid) - before) / seconds for pid, before in zip(processes, server_cpu)]
        print(f"under load the server used {used[0]:.0f}% of a core, its model worker {sum(used[1:]):.0f}%, the "
              f"{args.client_processes} client processes {100 * client_cpu / seconds:.0f}% ({os.cpu_count()} cores)",
              flush=True)
    if args.ramp:
        during = ramped.summary(TARGET_KIND)
        print(f"during the {args.ramp:g} s ramp ({args.clients} clients starting one after another): "
              f"{TARGET_KIND} p50 {during['p50_ms']:.1f} ms, p99 {during['p99_ms']:.1f} ms, n {during['n']}")
    figures = report(alone_results, loaded, args.clients, args.seconds, alone_seconds)
    if args.trace:
        first = min(min(starts) for starts in loaded.started.values())
        args.trace.write_text("".join(f"{kind}\t{start - first:.4f}\t{1000 * seconds:.2f}\n"
                                      for kind in loaded.seconds
                                      for start, seconds in zip(loaded.started[kind], loaded.seconds[kind])))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
