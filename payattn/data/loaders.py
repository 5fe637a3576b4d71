"""Loaders for the paper's full datasets, read from the files their publishers distribute.

Nothing is downloaded: the user puts the official files in a directory (`--data-dir`) and
each loader reads them once, straight from the archive where that is the usual form
(gzip IDX files, the CIFAR-100 and IMDB tarballs). A missing or damaged file is a
PayattnError naming the file, the path looked at and where the file comes from.
"""

from __future__ import annotations

import csv
import gzip
import pickle
import re
import struct
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from payattn.errors import PayattnError
from payattn.data.dataset import Dataset, channel_stats

# What each task needs in --data-dir, and where the user gets it.
NEEDS = {
    "mnist": "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
             "and t10k-labels-idx1-ubyte.gz (or the same files un-gzipped)",
    "cifar100": "cifar-100-python.tar.gz (or its extracted folder cifar-100-python/)",
    "imdb": "aclImdb_v1.tar.gz (or its extracted folder aclImdb/)",
    "amazon": "train.csv and test.csv (directly or in amazon_review_polarity_csv/)",
}
SOURCES = {
    "mnist": "the MNIST database, http://yann.lecun.com/exdb/mnist/ (or any mirror of its four files)",
    "cifar100": "the 'CIFAR-100 python version', https://www.cs.toronto.edu/~kriz/cifar.html",
    "imdb": "the Large Movie Review Dataset v1.0, https://ai.stanford.edu/~amaas/data/sentiment/",
    "amazon": "amazon_review_polarity_csv.tgz, the Amazon Review Polarity set of Zhang, Zhao & "
              "LeCun (2015, character-level CNNs), extracted",
}
SENTIMENT_LABELS = ["negative", "positive"]


def _missing(task: str, what: str, path: Path) -> PayattnError:
    return PayattnError(f"task {task!r} needs {what}, expected at {path}; get it from {SOURCES[task]}")


def _malformed(task: str, path: Path | str, problem: str) -> PayattnError:
    return PayattnError(
        f"{path} is not a valid {task} file ({problem}); replace it with a fresh copy from {SOURCES[task]}"
    )


# --- MNIST: IDX files ---------------------------------------------------------------------

MNIST_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
               "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes with `ndim` dimensions, gzipped if the name ends in .gz."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise _malformed("mnist", path, f"cannot read it: {exc}") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes([0, 0, 0x08, ndim]):
        raise _malformed("mnist", path, f"no IDX header for a {ndim}-d unsigned-byte array")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) != header + int(np.prod(dims)):
        raise _malformed("mnist", path, f"header says {dims} but the file holds {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_mnist(data_dir: Path) -> Dataset:
    parts = {}
    for key, name in MNIST_FILES.items():
        path = next((p for p in (data_dir / f"{name}.gz", data_dir / name) if p.is_file()), None)
        if path is None:
            raise _missing("mnist", f"{name}.gz", data_dir / f"{name}.gz")
        parts[key] = read_idx(path, 3 if key.endswith("x") else 1)
    for split in ("train", "test"):
        images, labels = parts[f"{split}_x"], parts[f"{split}_y"]
        if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max(initial=0) > 9:
            raise _malformed("mnist", data_dir / MNIST_FILES[f"{split}_x"],
                             f"{images.shape} images do not match {labels.shape} labels 0-9")
    train_x, test_x = parts["train_x"][:, None], parts["test_x"][:, None]
    mean, std = channel_stats(train_x)
    return Dataset("mnist", "vision", [str(d) for d in range(10)], train_x,
                   parts["train_y"].astype(np.int64), test_x, parts["test_y"].astype(np.int64), mean, std)


# --- CIFAR-100: pickled dicts in a tarball --------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and nothing else, so a planted file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a dataset never needs")
        return super().find_class(module, name)


def _unpickle(handle: BinaryIO, path: str) -> dict:
    try:
        data = _ArrayUnpickler(handle, encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on damaged input
        raise _malformed("cifar100", path, f"cannot unpickle it: {exc}") from None
    if not isinstance(data, dict):
        raise _malformed("cifar100", path, "it does not hold a dict")
    # The official files were written by Python 2: keys arrive as bytes.
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _cifar_parts(data_dir: Path) -> dict[str, tuple[str, dict]]:
    """name -> (where it was read, its dict) for train, test and meta."""
    folder, tarball = data_dir / "cifar-100-python", data_dir / "cifar-100-python.tar.gz"
    names = ("train", "test", "meta")
    if folder.is_dir():
        parts = {}
        for name in names:
            if not (folder / name).is_file():
                raise _missing("cifar100", f"the file {name} of cifar-100-python/", folder / name)
            with open(folder / name, "rb") as handle:
                parts[name] = (str(folder / name), _unpickle(handle, str(folder / name)))
        return parts
    if not tarball.is_file():
        raise _missing("cifar100", NEEDS["cifar100"], tarball)
    parts = {}
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in names and member.name.startswith("cifar-100-python/"):
                    where = f"{tarball}:{member.name}"
                    parts[name] = (where, _unpickle(archive.extractfile(member), where))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _malformed("cifar100", tarball, f"cannot read the tarball: {exc}") from None
    missing = [n for n in names if n not in parts]
    if missing:
        raise _malformed("cifar100", tarball, f"no cifar-100-python/{missing[0]} inside")
    return parts


def _cifar_split(where: str, part: dict, classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        images = np.asarray(part["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(part["fine_labels"], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        problem = f"no 'data' [N, 3072] uint8 and 'fine_labels': {exc}"
        raise _malformed("cifar100", where, problem) from None
    if len(images) != len(labels) or labels.min(initial=0) < 0 or labels.max(initial=0) >= classes:
        problem = f"{len(images)} images but {len(labels)} labels in 0-{classes - 1}"
        raise _malformed("cifar100", where, problem)
    return images, labels


def load_cifar100(data_dir: Path) -> Dataset:
    parts = _cifar_parts(data_dir)
    where, meta = parts["meta"]
    if not isinstance(meta.get("fine_label_names"), list):
        raise _malformed("cifar100", where, "no 'fine_label_names' list")
    labels = [n.decode() if isinstance(n, bytes) else str(n) for n in meta["fine_label_names"]]
    train_x, train_y = _cifar_split(*parts["train"], len(labels))
    test_x, test_y = _cifar_split(*parts["test"], len(labels))
    mean, std = channel_stats(train_x)
    return Dataset("cifar100", "vision", labels, train_x, train_y, test_x, test_y, mean, std)


# --- IMDB: one .txt file per review ----------------------------------------------------------

IMDB_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/([^/]+\.txt)$")
IMDB_LABELS = {"neg": 0, "pos": 1}


def _imdb_folder(folder: Path) -> Iterator[tuple[str, str, str, bytes]]:
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            for path in (folder / split / label).glob("*.txt"):
                yield split, label, path.name, path.read_bytes()


def _imdb_tarball(tarball: Path) -> Iterator[tuple[str, str, str, bytes]]:
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            match = IMDB_MEMBER.search(member.name)
            if match and member.isfile():
                yield *match.groups(), archive.extractfile(member).read()


def load_imdb(data_dir: Path) -> Dataset:
    folder = next((d for d in (data_dir / "aclImdb", data_dir) if (d / "train" / "pos").is_dir()), None)
    tarball = data_dir / "aclImdb_v1.tar.gz"
    if folder is None and not tarball.is_file():
        raise _missing("imdb", NEEDS["imdb"], tarball)
    source = folder or tarball
    reviews: dict[str, list[tuple[int, str, str]]] = {"train": [], "test": []}
    try:
        for split, label, name, raw in (_imdb_folder(folder) if folder else _imdb_tarball(tarball)):
            text = raw.decode("utf-8", errors="replace").replace("<br />", " ")
            reviews[split].append((IMDB_LABELS[label], name, text))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _malformed("imdb", source, f"cannot read it: {exc}") from None
    splits = {}
    for split, items in reviews.items():
        labels_seen = {label for label, _, _ in items}
        if labels_seen != {0, 1}:
            raise _malformed("imdb", source, f"no {split}/pos and {split}/neg reviews (*.txt) inside")
        items.sort()  # folder and tarball give the same order
        labels = np.array([label for label, _, _ in items], dtype=np.int64)
        splits[split] = ([text for _, _, text in items], labels)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    return Dataset("imdb", "text", list(SENTIMENT_LABELS), train_x, train_y, test_x, test_y)


# --- Amazon Review Polarity: CSV of (label 1|2, title, text) ---------------------------------

def _read_amazon_csv(path: Path) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            for row in reader:
                if len(row) != 3 or row[0] not in ("1", "2"):
                    problem = f'line {reader.line_num} is not "1|2","title","text"'
                    raise _malformed("amazon", path, problem)
                labels.append(int(row[0]) - 1)
                # The publisher escaped newlines inside reviews as a literal backslash-n.
                texts.append(f"{row[1]} {row[2]}".replace("\\n", " "))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _malformed("amazon", path, f"cannot read it as UTF-8 CSV: {exc}") from None
    if not texts:
        raise _malformed("amazon", path, "it holds no reviews")
    return texts, np.array(labels, dtype=np.int64)


def load_amazon(data_dir: Path) -> Dataset:
    folder = next((d for d in (data_dir / "amazon_review_polarity_csv", data_dir)
                   if (d / "train.csv").is_file() or (d / "test.csv").is_file()), data_dir)
    parts = []
    for name in ("train.csv", "test.csv"):
        if not (folder / name).is_file():
            raise _missing("amazon", name, folder / name)
        parts.append(_read_amazon_csv(folder / name))
    (train_x, train_y), (test_x, test_y) = parts
    return Dataset("amazon", "text", list(SENTIMENT_LABELS), train_x, train_y, test_x, test_y)


LOADERS: dict[str, Callable[[Path], Dataset]] = {
    "mnist": load_mnist, "cifar100": load_cifar100, "imdb": load_imdb, "amazon": load_amazon,
}
