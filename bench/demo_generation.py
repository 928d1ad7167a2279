"""How long the demo dataset takes to make: rendering alone, and writing PNGs and masks to disk.

Target (issue 2): 2,000 images in under 30 s. Prints the time per image and the ratio to the target.
    python bench/demo_generation.py [--count 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from app.demo.dataset import render_split, write_split

TARGET_SECONDS_PER_2000 = 30.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    count = parser.parse_args().count

    started = time.perf_counter()
    render_split("heldout", count)
    render_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        write_split(Path(folder), "heldout", count)
        write_seconds = time.perf_counter() - started

    target = TARGET_SECONDS_PER_2000 * count / 2000
    print(f"render in memory: {count} images in {render_seconds:.1f} s ({1000 * render_seconds / count:.2f} ms/image)")
    print(f"write to disk:    {count} images in {write_seconds:.1f} s ({1000 * write_seconds / count:.2f} ms/image)")
    print(f"write / target ({target:.0f} s): {write_seconds / target:.2f}  (below 1.00 meets the target)")


if __name__ == "__main__":
    main()
