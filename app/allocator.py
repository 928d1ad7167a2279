"""Memory allocation settings of the `fovea` process: fewer page faults in the forward pass.

A forward pass allocates and frees the same activation-sized blocks batch after batch. By default glibc
hands large freed blocks back to the kernel and PyTorch maps fresh 4 KiB pages for each new tensor, so
every batch faults its activations in page by page: on a virtual machine that cost a quarter of a
resnet50 forward pass, and varied tenfold from run to run (docs/benchmarks.md). Three settings fix it:

- PyTorch's own switch for transparent huge pages on tensors of 2 MiB or more (`THP_MEM_ALLOC_ENABLE`),
  so a large tensor faults in 2 MiB at a time. PyTorch reads it once, at its first allocation, so
  `tune_allocator` must run before torch is imported.
- glibc serves blocks up to 32 MiB from its heap and keeps up to 1 GiB of freed heap for reuse. The
  price is that the process keeps its peak heap resident, as most allocators do.
- glibc gives every thread that allocates an arena of its own, whose heaps (at most 64 MiB each) it hands
  back more eagerly, so a forward pass in a worker thread, where the server computes, faulted in 1.5 to 3
  times the pages it did on the main thread and took about 10% longer (Score-CAM on resnet18). One arena
  for all threads removes the difference; torch allocates a few large blocks per operation, so the
  arena's lock is not contended.

Elsewhere (musl, macOS, Windows, or the kernel's huge pages off) nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling on 64-bit systems; larger blocks are always mapped
_TRIM_THRESHOLD = 2**30


def tune_allocator() -> dict[str, bool]:
    """Apply the settings; says which took effect. Call it before importing torch, and before any thread
    starts (a thread keeps the arena it first allocated from)."""
    huge_pages = "torch" not in sys.modules
    if huge_pages:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    mallopt = _mallopt()
    return {"torch_huge_pages": huge_pages and os.environ["THP_MEM_ALLOC_ENABLE"] == "1",
            "glibc_keeps_freed_memory": mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX))
            and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)),
            "glibc_one_arena": mallopt is not None and bool(mallopt(_M_ARENA_MAX, 1))}


def _mallopt():
    """glibc's mallopt, or None elsewhere."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
