"""Peak memory of an index build over 2,000 and over 10,000 images (issue 3): ratio target <= 1.2.

Each build runs `fovea index shapes-cnn` in a fresh process with the default settings (decoding workers
included) on demo images; the peak is the largest sum of resident memory over the whole process tree,
sampled every 20 ms from /proc. Usage:
    python bench/index_memory.py [--small 2000] [--large 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.demo.dataset import write_split


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 once it is gone)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue  # exited between the listing and the read
    return total


def _peak_rss_of_index(images: Path, data_dir: Path) -> tuple[int, float]:
    env = {**os.environ, "FOVEA_AUTO_INDEX_DEMO": "false"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "app", "index", "shapes-cnn", "--dataset", str(images),
                                "--data-dir", str(data_dir), "--device", "cpu"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_rss(process.pid))
        time.sleep(0.02)
    if process.returncode != 0:
        raise SystemExit(f"fovea index failed with exit status {process.returncode}")
    return peak, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        print(f"rendering {args.large} demo images ...", flush=True)
        write_split(root / "shapes", "train", args.large)
        large = root / "shapes" / "train" / "images"
        small = root / "small"  # the first images of the large set, hard-linked
        for path in sorted(large.rglob("*.png"), key=lambda p: p.name)[: args.small]:
            (small / path.parent.name).mkdir(parents=True, exist_ok=True)
            os.link(path, small / path.parent.name / path.name)
        results = {}
        for name, images in (("small", small), ("large", large)):
            count = sum(1 for _ in images.rglob("*.png"))
            peak, seconds = _peak_rss_of_index(images, root / f"data-{name}")
            results[name] = peak
            print(f"{count:6d} images: peak RSS {peak / 2**20:7.1f} MiB  ({seconds:.1f} s)", flush=True)
    print(f"ratio large/small = {results['large'] / results['small']:.3f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
