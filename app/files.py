"""Files: atomic writes (a reader sees the old file or folder or the new one, never half of either), relative
paths kept inside their folder, and the memory-mapped arrays a resumable job fills."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from filelock import FileLock

from app.errors import InvalidInput


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(descriptor)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp creates files private to the owner; what Fovea writes is meant to be read
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A fresh folder to build `target` in, renamed over `target` when the block ends without error.

    One builder of `target` at a time, across processes: the block holds an OS lock on `.<name>.lock` beside
    it, which the kernel lets go of however the holder ends (SIGKILL included). So the staging folders
    (`.<name>-*`) and replaced ones (`.<name>.old-*`) found once the lock is ours were left by a builder that
    died, and are removed; a live builder's are never touched, as it holds the lock until it is done."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        for stale in [*target.parent.glob(f".{target.name}-*"), *target.parent.glob(f".{target.name}.old-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp makes it private to the owner
        try:
            yield staging
            replace_dir(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def replace_dir(staging: Path, target: Path) -> None:
    """Move a finished `staging` folder to `target`, replacing any old one with two renames."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def path_inside(root: Path, relpath: str) -> Path:
    """root / relpath with '.' and '..' folded; refused when it is not below root (absolute paths, '..', links
    out). A dataset's labelling reads two files per image this way: resolving every component from '/' cost
    0.3 ms a call, so only the components below root are looked at (strings, not Paths: 10x faster), and the
    path is resolved if one of them is a link."""
    top = os.path.join(root, "")
    path = os.path.normpath(os.path.join(top, relpath))
    inside = path.startswith(top)
    if inside and any(os.path.islink(below) for below in _prefixes(top, path[len(top):])):
        inside = Path(path).resolve().is_relative_to(root.resolve())
    if not inside:
        raise InvalidInput(f"path {relpath!r} leads outside the dataset folder", path=str(relpath))
    return Path(path)


def _prefixes(top: str, relative: str) -> Iterator[str]:
    """top/a, top/a/b, top/a/b/c of a/b/c."""
    end = relative.find(os.sep)
    while end != -1:
        yield top + relative[:end]
        end = relative.find(os.sep, end + 1)
    yield top + relative


def prefixed(arrays: dict, prefix: str) -> dict:
    """The entries of `arrays` whose names start with `prefix`, named without it (one part of a saved state)."""
    return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}


def job_array(path: Path, dtype, shape: tuple[int, ...]) -> np.memmap:
    """A memory-mapped .npy array that a long job fills as it goes: created (zeros) the first time, reopened as
    it is when the job resumes. Flush it before a checkpoint names it."""
    return np.lib.format.open_memmap(path, mode="r+" if path.exists() else "w+", dtype=dtype, shape=shape)
