"""The layer grid at 2,048 units (issue 3): does it stay smooth while a user scrolls through every unit?

Builds a one-layer model with 2,048 channels, indexes it on 64 noise images, starts `fovea serve`, and in
Debian's Chromium (Playwright) opens the layer page and scrolls to the last unit in 600 px steps, while
the page records every animation frame and every long task (main thread busy > 50 ms). Prints the frame
intervals, long tasks, and how many units and DOM nodes the page holds at the end. Usage:
    python bench/grid_smoothness.py [--units 2048]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.atlas.datasets import scan_folder  # noqa: E402
from app.atlas.indexer import index_model  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store.store import load_store  # noqa: E402
from tests.browser import browser  # noqa: E402
from tests.live_server import live_server  # noqa: E402

WIDE_NET = '''
from torch import nn


def wide_net(units: int, num_classes: int = 4):
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, units, 5, stride=4, padding=2), nn.ReLU()),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(units, num_classes))
'''

RECORDER = """
window.__frames = []; window.__long = [];
(function tick(t) { window.__frames.push(t); requestAnimationFrame(tick); })(performance.now());
new PerformanceObserver((list) => list.getEntries().forEach((e) => window.__long.push(e.duration)))
  .observe({ type: "longtask", buffered: true });
"""


def _prepare(root: Path, units: int) -> Settings:
    cards, images = root / "cards", root / "images"
    cards.mkdir()
    images.mkdir()
    (cards / "widenet.py").write_text(WIDE_NET)
    sys.path.insert(0, str(cards))
    from widenet import wide_net

    torch.manual_seed(0)
    save_file(wide_net(units).state_dict(), str(cards / "wide.safetensors"))
    (cards / "wide.toml").write_text(
        f'id = "wide"\nname = "{units} units"\n[architecture]\ncallable = "widenet:wide_net"\n'
        f'kwargs = {{ units = {units} }}\n[weights]\nfile = "wide.safetensors"\n'
        '[input]\nsize = [32, 32]\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n')
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{i:03d}.png")
    settings = Settings(data_dir=root / "data", model_dirs=[cards], builtin_models=False, auto_index_demo=False,
                        index_workers=0)
    index_model(load_store(settings).ready("wide"), scan_folder(images, name="noise"), settings,
                layers=["0"], k=8)
    return settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=2048)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        settings = _prepare(root, args.units)
        with live_server(settings.data_dir, "--model-dir", str(root / "cards"), "--no-builtin-models",
                         env={"FOVEA_AUTO_INDEX_DEMO": "false"}) as server, browser() as chromium:
            page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.add_init_script(RECORDER)
            page.goto(f"{server}/m/wide/0?dataset=noise")
            page.locator(".unit-cell.is-drawn").first.wait_for(timeout=30_000)
            drawn: set[str] = set()  # units whose heatmap was on screen at some step
            peak_cells = steps = 0
            while True:
                drawn.update(page.evaluate("[...document.querySelectorAll('.unit-cell.is-drawn')]"
                                           ".map((cell) => cell.dataset.unit)"))
                peak_cells = max(peak_cells, page.locator(".unit-cell").count())
                if page.evaluate("window.innerHeight + window.scrollY >= document.body.scrollHeight - 2") \
                        and str(args.units - 1) in drawn:
                    break
                page.mouse.wheel(0, 600)
                page.wait_for_timeout(50)
                steps += 1
                if steps > 5000:
                    raise SystemExit("the grid never reached its last unit")
            page.wait_for_timeout(1000)
            frames = page.evaluate("window.__frames")
            long_tasks = page.evaluate("window.__long")
            nodes = page.evaluate("document.getElementsByTagName('*').length")
    intervals = np.diff(frames)
    print(f"{len(drawn)} of {args.units} units drawn on the way; at most {peak_cells} cells in the document, "
          f"{nodes} DOM nodes at the end; {steps} scroll steps of 600 px")
    print(f"frames: {len(intervals)}, interval median {statistics.median(intervals):.1f} ms, "
          f"p95 {np.percentile(intervals, 95):.1f} ms, p99 {np.percentile(intervals, 99):.1f} ms, "
          f"max {intervals.max():.1f} ms; over 50 ms: {int((intervals > 50).sum())}")
    print("long task durations in order:", [round(d) for d in long_tasks])
    print(f"long tasks: {len(long_tasks)}, longest {max(long_tasks, default=0):.0f} ms, "
          f"total {sum(long_tasks):.0f} ms")


if __name__ == "__main__":
    main()
