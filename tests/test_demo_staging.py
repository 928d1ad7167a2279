"""A demo dataset write killed part-way (SIGKILL, so no cleanup of its own runs) leaves its staging folder;
the next write removes it and completes. A write still running keeps its folder: the next one waits for
it instead of deleting its work."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.demo.dataset import write_split

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def start_writing(root: Path) -> subprocess.Popen:
    """`fovea demo generate` of the full held-out split (2,000 images, far longer than these tests wait)."""
    return subprocess.Popen([sys.executable, "-m", "app", "demo", "generate", "--split", "heldout", "--out", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def staging_folders(root: Path) -> list[Path]:
    return sorted(root.glob(".heldout-*"))


def wait_for_images(root: Path, process: subprocess.Popen, count: int, timeout: float = 60) -> Path:
    """The process's staging folder, once it holds `count` images."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        for folder in staging_folders(root):
            if sum(1 for _ in folder.glob("images/*/*.png")) >= count:
                return folder
        time.sleep(0.05)
    pytest.fail(f"no staging folder with {count} images within {timeout} s")


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    process.stderr.close()


def assert_complete(root: Path, count: int) -> None:
    split = root / "heldout"
    assert json.loads((split / "dataset.json").read_text())["count"] == count
    assert sum(1 for _ in split.glob("images/*/*.png")) == count
    assert len((split / "scenes.jsonl").read_text().splitlines()) == count
    assert staging_folders(root) == [] and list(root.glob(".heldout.old-*")) == []


def test_a_killed_write_is_cleaned_up_by_the_next(tmp_path):
    root = tmp_path / "demo-shapes"
    process = start_writing(root)
    try:
        left = wait_for_images(root, process, 40)
    finally:
        kill(process)
    assert left.is_dir() and not (root / "heldout").exists()  # what a kill leaves: a staging folder, no split
    (root / ".heldout.old-x1y2z3" / "heldout").mkdir(parents=True)  # a kill between replace_dir's two renames
    write_split(root, "heldout", 12)
    assert not left.exists()
    assert_complete(root, 12)


def test_a_write_in_progress_is_left_alone_and_waited_for(tmp_path):
    root = tmp_path / "demo-shapes"
    process = start_writing(root)
    finished = threading.Event()
    try:
        live = wait_for_images(root, process, 10)
        second = threading.Thread(target=lambda: (write_split(root, "heldout", 5), finished.set()), daemon=True)
        second.start()
        before = sum(1 for _ in live.glob("images/*/*.png"))
        time.sleep(1.5)
        assert not finished.is_set()  # it waits for the live writer's lock
        assert live.is_dir() and sum(1 for _ in live.glob("images/*/*.png")) > before  # untouched, still growing
    finally:
        kill(process)  # the writer dies holding the lock; the waiting write takes over
    second.join(timeout=30)
    assert finished.is_set() and not live.exists()
    assert_complete(root, 5)
