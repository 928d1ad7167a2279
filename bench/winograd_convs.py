"""Winograd F(4x4, 3x3) against the direct convolution (oneDNN) for each kind of 3x3 stride-1 convolution
in resnet18 at 224, as Score-CAM's masked passes run them: a batch of 32, channels-last, float32, on the
CPU. Prints the median of `--repeats` alternating rounds per shape, the ratio direct / Winograd, and the
largest difference relative to the output's range. The 64-channel shape is the one `MIN_CHANNELS` leaves to
the direct convolution. Usage:
    python bench/winograd_convs.py [--repeats 9] [--batch 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from app.allocator import tune_allocator

SHAPES = [(64, 56), (128, 28), (256, 14), (512, 7)]  # (channels in and out, side) of layer1..layer4


def seconds(conv: nn.Module, x: torch.Tensor) -> float:
    started = time.perf_counter()
    conv(x)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    tune_allocator()
    from app.engine.cam.winograd import MIN_CHANNELS, WinogradConv2d  # after the allocator's settings

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"median of {args.repeats}; Winograd used from {MIN_CHANNELS} channels")
    with torch.inference_mode():
        for channels, side in SHAPES:
            conv = nn.Conv2d(channels, channels, 3, padding=1).eval()
            x = torch.randn(args.batch, channels, side, side).contiguous(memory_format=torch.channels_last)
            direct, winograd = conv.to(memory_format=torch.channels_last), WinogradConv2d(conv)
            expected = direct(x)
            error = float((winograd(x) - expected).abs().max() / expected.abs().max())  # also a warm-up
            times = {"direct": [], "winograd": []}
            for _ in range(args.repeats):  # alternating, so that drift hits both alike
                times["direct"].append(seconds(direct, x))
                times["winograd"].append(seconds(winograd, x))
            d, w = (statistics.median(times[k]) * 1e3 for k in ("direct", "winograd"))
            print(f"{channels:3d} channels, {side:2d}x{side:<2d}: direct {d:6.1f} ms, Winograd {w:6.1f} ms -> "
                  f"{d / w:.2f}x; max difference {error:.1e} of the output's range")


if __name__ == "__main__":
    main()
