"""Train a demo model on the rendered shapes: seeded, CPU-friendly, a few minutes on two cores."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class TrainResult:
    heldout_accuracy: float
    seconds: float
    epochs: int


def to_batch(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (n, h, w, 3) -> normalised float (n, 3, h, w), channels-last in memory (faster convs on CPU)."""
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((batch - mean_t) / std_t).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(to_batch(images[start:start + batch_size], mean, std))
        correct += int((logits.argmax(1).numpy() == labels[start:start + batch_size]).sum())
    return correct / len(images)


def train(model: nn.Module, train_images: np.ndarray, train_labels: np.ndarray,
          heldout_images: np.ndarray, heldout_labels: np.ndarray, *, mean, std, epochs: int,
          seed: int = 0, batch_size: int = 64, lr: float = 0.1, weight_decay: float = 5e-4,
          log: Callable[[str], None] = print) -> TrainResult:
    """SGD with Nesterov momentum and a one-cycle schedule; random horizontal flips (no class depends on
    handedness once shapes are freely rotated)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train_images) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs,
                                                   steps_per_epoch=steps_per_epoch, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    labels_t = torch.from_numpy(train_labels)
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_images), generator=generator).numpy()
        total_loss = 0.0
        for step in range(steps_per_epoch):
            index = np.sort(order[step * batch_size:(step + 1) * batch_size])
            batch = to_batch(train_images[index], mean, std)
            flip = torch.rand(len(index), generator=generator) < 0.5
            batch[flip] = batch[flip].flip(-1)
            loss = loss_fn(model(batch), labels_t[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item()
        heldout = accuracy(model, heldout_images, heldout_labels, mean, std)
        log(f"epoch {epoch + 1}/{epochs}: loss {total_loss / steps_per_epoch:.3f}, "
            f"held-out accuracy {heldout:.4f}, {time.perf_counter() - started:.0f} s")
    model.eval()
    return TrainResult(heldout_accuracy=heldout, seconds=time.perf_counter() - started, epochs=epochs)
