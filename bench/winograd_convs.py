"""Winograd F(4x4, 3x3) against the direct convolution (oneDNN) for each kind of 3x3 stride-1 convolution
in resnet18 at 224, as Score-CAM's masked passes run them (a batch of 32, channels-last, float32, on the
CPU), and for two small ones (the demo model's last, and one smaller). Prints the median of `--repeats`
alternating rounds per shape, the ratio direct / Winograd, and the largest difference relative to the
output's range. The engine leaves the 64-channel shape (`MIN_CHANNELS`) and calls under
`_MIN_MULTIPLY_ADDS` to the direct convolution; here every shape is timed both ways. Usage:
    python bench/winograd_convs.py [--repeats 9] [--batch 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from app.allocator import tune_allocator

SHAPES = [(64, 56), (128, 28), (256, 14), (512, 7),  # (channels in and out, side) of layer1..layer4
          (192, 7), (128, 7)]


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
    from app.engine.cam import winograd  # after the allocator's settings
    from app.engine.cam.winograd import MIN_CHANNELS, WinogradConv2d

    threshold, winograd._MIN_MULTIPLY_ADDS = winograd._MIN_MULTIPLY_ADDS, 0  # time every shape both ways

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
            used = channels >= MIN_CHANNELS and args.batch * side * side * channels * channels * 9 >= threshold
            print(f"{channels:3d} channels, {side:2d}x{side:<2d}: direct {d:6.1f} ms, Winograd {w:6.1f} ms -> "
                  f"{d / w:.2f}x; max difference {error:.1e} of the output's range"
                  f"{'' if used else ' (the engine runs this one directly)'}")


if __name__ == "__main__":
    main()
