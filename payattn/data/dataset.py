"""The in-memory form every task loads into, and the per-channel statistics of images."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Dataset:
    """A task's raw data. Vision x: uint8 [N, C, H, W]; text x: list[str]; y: int64 [N].

    `mean` and `std` are per channel on the [0, 1] pixel scale (vision only; empty for text).
    """

    name: str
    kind: str  # "vision" or "text"
    labels: list[str]
    train_x: np.ndarray | list[str]
    train_y: np.ndarray
    test_x: np.ndarray | list[str]
    test_y: np.ndarray
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())


@dataclass
class Prepared:
    """Model-ready numpy arrays: vision float32 NCHW normalised, text int32 token ids [N, ℓ]."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of uint8 images [N, C, H, W], on the [0, 1] scale.

    Counted from a 256-bin histogram per channel and summed with math.fsum, so the figures
    are identical on every machine, and memory stays at one channel's bytes even for all of
    CIFAR-100. A constant channel gets std 1, so normalising never divides by zero.
    """
    means, stds = [], []
    levels = [level / 255.0 for level in range(256)]
    for channel in range(images.shape[1]):
        counts = np.bincount(images[:, channel].ravel(), minlength=256).tolist()
        total = sum(counts)
        mean = math.fsum(n * v for n, v in zip(counts, levels)) / total
        var = math.fsum(n * (v - mean) ** 2 for n, v in zip(counts, levels)) / total
        means.append(mean)
        stds.append(math.sqrt(var) or 1.0)
    return tuple(means), tuple(stds)
