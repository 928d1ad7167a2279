"""Start-up: how long `fovea serve` takes to its first answer, and the CPU its front and model worker spend to
get there, against the floor of any process that runs a model (a bare `python -c "import torch"`), in one run.

For each configuration, `--repeats` starts of a real server on an empty data directory (no first-start jobs:
`FOVEA_AUTO_INDEX_DEMO=false`), each timed to its first `/api/health` 200; the CPU seconds of the front and of
its model worker are read from /proc at that moment. Also a `fovea models inspect shapes-cnn` (a command on one
model) and the import of the app. Medians are printed, and each one's ratio to the bare `import torch`.
    python bench/startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import DEMO_MODELS_ONLY_ARGS  # noqa: E402
from tests.live_server import live_server_process, model_workers  # noqa: E402

CONFIGURATIONS = {
    "serve, every bundled model": [],
    "serve, the demo models only": list(DEMO_MODELS_ONLY_ARGS),
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_command(*arguments: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *arguments], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def serve_once(arguments: list[str]) -> tuple[float, float, float]:
    """(seconds to the first answer, the front's CPU seconds, its worker's) of one start."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        data.mkdir()
        started = time.perf_counter()
        with live_server_process(data, *arguments, env={"FOVEA_AUTO_INDEX_DEMO": "false"}) as (_, front):
            answered = time.perf_counter() - started
            worker = model_workers(front.pid)[0][0]
            return answered, cpu_seconds(front.pid), cpu_seconds(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    floor = statistics.median(timed_command("-c", "import torch") for _ in range(args.repeats))
    print(f"bare `import torch` process: {floor:.2f} s")
    rows = {
        "import app.api.app": statistics.median(timed_command("-c", "import app.api.app")
                                                for _ in range(args.repeats)),
        "fovea models inspect shapes-cnn": statistics.median(
            timed_command("-m", "app", "models", "inspect", "shapes-cnn", *DEMO_MODELS_ONLY_ARGS)
            for _ in range(args.repeats)),
    }
    for name, seconds in rows.items():
        print(f"{name}: {seconds:.2f} s ({seconds / floor:.2f}x the floor)")
    for name, arguments in CONFIGURATIONS.items():
        starts = [serve_once(arguments) for _ in range(args.repeats)]
        answered, front, worker = (statistics.median(values) for values in zip(*starts))
        print(f"{name}: first answer after {answered:.2f} s ({answered / floor:.2f}x the floor); CPU front "
              f"{front:.2f} s, model worker {worker:.2f} s, together {front + worker:.2f} s")


if __name__ == "__main__":
    main()
