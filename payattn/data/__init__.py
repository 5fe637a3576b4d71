"""Tasks: three small datasets shipped with payattn, and the paper's four full datasets.

`load_task(name, data_dir)` gives a raw `Dataset`; `prepare(dataset, tokenizer)` turns it
into the arrays a model takes. Nothing is ever downloaded at run time: full datasets are
read from files the user already has (`--data-dir`).

Images are normalised with the per-channel mean and std of the task's own training split
(computed exactly on load), rather than published constants: the same rule then holds for
the embedded MNIST subset and the full sets, and the manifest records the figures used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from payattn.errors import PayattnError
from payattn.data.dataset import Dataset, Prepared
from payattn.data.embedded import load_embedded
from payattn.data.loaders import LOADERS, NEEDS, SOURCES
from payattn.data.tokenizer import Tokenizer

__all__ = ["TASKS", "TaskInfo", "Dataset", "Prepared", "Tokenizer", "load_task", "prepare", "subset"]


@dataclass(frozen=True)
class TaskInfo:
    name: str
    kind: str  # "vision" or "text"
    default_preset: str
    description: str
    embedded: bool  # shipped inside the package; otherwise read from --data-dir


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("mnist-5k", "vision", "mnist-tiny",
                 "5,000 real MNIST digits shipped with payattn (4,000 train / 1,000 test)", True),
        TaskInfo("movie-reviews", "text", "imdb-paper",
                 "10,566 human-rated movie-review sentences, positive vs negative "
                 "(8,452 train / 2,114 test; shipped)", True),
        TaskInfo("amazon-reviews", "text", "imdb-paper",
                 "3,600 human-rated Amazon review sentences, positive vs negative "
                 "(2,880 train / 720 test; shipped)", True),
        TaskInfo("mnist", "vision", "mnist-tiny", "full MNIST, 60,000 / 10,000 digits (--data-dir)", False),
        TaskInfo("cifar100", "vision", "cifar100-small",
                 "full CIFAR-100, 50,000 / 10,000 images in 100 classes (--data-dir)", False),
        TaskInfo("imdb", "text", "imdb-paper", "full IMDB reviews, 25,000 / 25,000 (--data-dir)", False),
        TaskInfo("amazon", "text", "imdb-paper",
                 "full Amazon Review Polarity, 3.6M / 400,000 reviews (--data-dir)", False),
    )
}


def check_data_dir(name: str, data_dir: Path | str | None) -> None:
    """Refuse a --data-dir given with an embedded task: it would be ignored, and a run's
    config.json must not record a folder its data did not come from."""
    if data_dir is not None and name in TASKS and TASKS[name].embedded:
        full = {"mnist-5k": "mnist", "movie-reviews": "imdb", "amazon-reviews": "amazon"}.get(name)
        instead = f", or --task {full} to train on the full dataset in it" if full else ""
        raise PayattnError(f"task {name!r} is embedded in payattn and reads no --data-dir; "
                           f"drop --data-dir {data_dir}{instead}")


def load_task(name: str, data_dir: Path | str | None = None) -> Dataset:
    """Load a task's raw data. Embedded tasks ignore `data_dir`; full ones require it."""
    if name not in TASKS:
        raise PayattnError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    if TASKS[name].embedded:
        return load_embedded(name)
    if data_dir is None:
        raise PayattnError(
            f"task {name!r} reads the full dataset from disk: pass --data-dir DIR, a directory "
            f"holding {NEEDS[name]} (from {SOURCES[name]})"
        )
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise PayattnError(f"data dir {data_dir} does not exist; it should hold {NEEDS[name]}")
    return LOADERS[name](data_dir)


def prepare(dataset: Dataset, tokenizer: Tokenizer | None = None) -> Prepared:
    """Model-ready arrays: normalised float32 NCHW images, or int32 token ids [N, ℓ]."""
    if dataset.kind == "vision":
        mean = np.asarray(dataset.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(dataset.std, dtype=np.float32).reshape(1, -1, 1, 1)

        def convert(images: np.ndarray) -> np.ndarray:
            x = images.astype(np.float32)  # one copy, then in place: CIFAR-100 is large
            x /= np.float32(255)
            x -= mean
            x /= std
            return x

        return Prepared(convert(dataset.train_x), dataset.train_y, convert(dataset.test_x), dataset.test_y)
    if tokenizer is None:
        raise PayattnError(
            f"task {dataset.name!r} is text: prepare() needs a tokenizer, e.g. "
            "Tokenizer.fit(dataset.train_x, max_vocab, max_length)"
        )
    return Prepared(tokenizer.encode(dataset.train_x), dataset.train_y,
                    tokenizer.encode(dataset.test_x), dataset.test_y)


def subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """`n` distinct indices of `n_total`, seeded and sorted: a reproducible spread-out subset."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))
