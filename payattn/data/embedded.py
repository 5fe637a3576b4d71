"""The three datasets shipped inside the package (built by scripts/build_embedded_data.py).

Their train/test splits are stored in the files, so every install trains on the same data.
Sources and licences: embedded/LICENSES.txt.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from importlib import resources
from typing import BinaryIO

import numpy as np

from payattn.errors import PayattnError
from payattn.data.dataset import Dataset, channel_stats

FILES = {
    "mnist-5k": "mnist_5k.npz",
    "movie-reviews": "movie_reviews.json.gz",
    "amazon-reviews": "amazon_reviews.json.gz",
}


def load_embedded(name: str) -> Dataset:
    """Load one embedded task by name (a key of FILES)."""
    path = resources.files("payattn.data") / "embedded" / FILES[name]
    try:
        with path.open("rb") as handle:
            return _vision(name, handle) if path.name.endswith(".npz") else _text(name, handle)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise PayattnError(
            f"embedded dataset file {path} is missing or damaged ({type(exc).__name__}: {exc}); "
            "reinstall payattn, or rebuild it with `python scripts/build_embedded_data.py`"
        ) from None


def _vision(name: str, handle: BinaryIO) -> Dataset:
    with np.load(handle, allow_pickle=False) as arrays:
        train_x, train_y, test_x, test_y = (arrays[k] for k in ("train_x", "train_y", "test_x", "test_y"))
    mean, std = channel_stats(train_x)
    labels = [str(digit) for digit in range(10)]
    return Dataset(name, "vision", labels, train_x, train_y.astype(np.int64),
                   test_x, test_y.astype(np.int64), mean, std)


def _text(name: str, handle: BinaryIO) -> Dataset:
    data = json.loads(gzip.decompress(handle.read()))
    train, test = data["train"], data["test"]
    return Dataset(name, "text", list(data["labels"]),
                   list(train["text"]), np.asarray(train["label"], dtype=np.int64),
                   list(test["text"]), np.asarray(test["label"], dtype=np.int64))
