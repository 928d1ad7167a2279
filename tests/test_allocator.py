"""The allocator settings of the `fovea` process (app/allocator.py), each checked in a child process so
that the test process keeps the platform's defaults."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest


def _run(code: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


# The settings are glibc's (mallopt); the probes read its state through libc.so.6 (mallinfo2, malloc_stats).
glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="probes glibc's malloc through libc.so.6: only glibc has these settings")


_GLIBC_PROBE = """
import ctypes
from app.allocator import tune_allocator

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Mallinfo2, ctypes.c_void_p, [ctypes.c_void_p]

def mapped_by(size):  # bytes glibc maps with mmap (not from the heap) to serve one block of `size`
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(block)
    return mapped

print(mapped_by(20 << 20), tune_allocator()["glibc_keeps_freed_memory"], mapped_by(20 << 20), mapped_by(40 << 20))
"""


@glibc_only
def test_glibc_serves_blocks_up_to_32_mib_from_the_heap():
    default, accepted, tuned, large = _run(_GLIBC_PROBE)
    assert int(default) >= 20 << 20  # by default a fresh 20 MiB block is mapped, to be faulted in page by page
    assert accepted == "True"
    assert int(tuned) == 0  # now the heap serves it, and a freed block is reused
    assert int(large) >= 40 << 20  # above glibc's 32 MiB ceiling, blocks are still mapped


_ARENA_PROBE = """
import ctypes, sys, threading
from app.allocator import tune_allocator
if sys.argv[1] == "tuned":
    print(tune_allocator()["glibc_one_arena"])

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]

def allocate():
    libc.free(libc.malloc(64 << 10))

worker = threading.Thread(target=allocate)
worker.start()
worker.join()
libc.malloc_stats()  # to stderr: one "Arena n:" section per arena
"""


def _arenas(code: str) -> tuple[list[str], int]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split(), done.stderr.count("Arena ")


@glibc_only
def test_worker_threads_allocate_from_the_main_arena():
    _, default = _arenas(_ARENA_PROBE.replace("sys.argv[1]", "'default'"))
    accepted, tuned = _arenas(_ARENA_PROBE.replace("sys.argv[1]", "'tuned'"))
    assert default >= 2  # by default a thread that allocates gets an arena of its own
    assert accepted == ["True"] and tuned == 1


_TORCH_PROBE = """
import resource, sys
from app.allocator import tune_allocator
if sys.argv[1] == "tuned":
    print(tune_allocator()["torch_huge_pages"])
import torch

before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(2**24)  # 64 MiB: 16,384 pages of 4 KiB, or 32 huge pages
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.mark.skipif(not _THP.is_file() or "[never]" in _THP.read_text(), reason="the kernel has no huge pages")
def test_large_tensors_fault_in_huge_pages():
    (default,) = _run(_TORCH_PROBE.replace("sys.argv[1]", "'default'"))
    accepted, tuned = _run(_TORCH_PROBE.replace("sys.argv[1]", "'tuned'"))
    assert int(default) >= 16_000
    assert accepted == "True" and int(tuned) < 2_000


def test_huge_pages_are_not_claimed_once_torch_is_loaded():
    (claimed,) = _run("import torch\nfrom app.allocator import tune_allocator\n"
                      "print(tune_allocator()['torch_huge_pages'])")
    assert claimed == "False"
