"""Tasks, loaders and tokenizer: embedded data, every real file format, and the error messages."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import pickle
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from payattn.errors import PayattnError
from payattn.data import TASKS, load_task, prepare
from payattn.data.dataset import channel_stats
from payattn.data.tokenizer import Tokenizer
from payattn.config import PRESETS

ROOT = Path(__file__).resolve().parent.parent


def _error(call, *args) -> str:
    """The message of the PayattnError that call(*args) must raise."""
    with pytest.raises(PayattnError) as info:
        call(*args)
    return str(info.value)


# --- registry and embedded tasks --------------------------------------------------------------

def test_registry_presets_match_task_kinds():
    embedded = ["mnist-5k", "movie-reviews", "amazon-reviews"]
    assert list(TASKS) == embedded + ["mnist", "cifar100", "imdb", "amazon"]
    assert [t.name for t in TASKS.values() if t.embedded] == embedded
    for task in TASKS.values():
        assert PRESETS[task.default_preset].kind == task.kind


def test_embedded_mnist_counts_shapes_and_balance():
    data = load_task("mnist-5k")
    assert (data.kind, data.labels) == ("vision", [str(d) for d in range(10)])
    assert data.train_x.shape == (4000, 1, 28, 28) and data.test_x.shape == (1000, 1, 28, 28)
    assert data.train_x.dtype == np.uint8 and data.train_y.dtype == np.int64
    assert np.bincount(data.train_y).tolist() == [400] * 10
    assert np.bincount(data.test_y).tolist() == [100] * 10
    # Real digits: close to the published full-MNIST statistics (0.1307, 0.3081).
    assert abs(data.mean[0] - 0.1307) < 0.01 and abs(data.std[0] - 0.3081) < 0.01


@pytest.mark.parametrize("name, n_train, n_test",
                         [("movie-reviews", 8452, 2114), ("amazon-reviews", 2880, 720)])
def test_embedded_text_counts_and_disjoint_splits(name, n_train, n_test):
    data = load_task(name)
    assert (data.kind, data.labels, data.mean) == ("text", ["negative", "positive"], ())
    assert (len(data.train_x), len(data.test_x)) == (n_train, n_test)
    assert len(data.train_y) == n_train and data.test_y.dtype == np.int64
    assert all(isinstance(t, str) and t for t in data.train_x)
    assert not set(data.train_x) & set(data.test_x)
    for y in (data.train_y, data.test_y):  # both classes, stratified: same share in each split
        share = y.mean()
        assert 0.3 < share < 0.7
    assert abs(data.train_y.mean() - data.test_y.mean()) < 0.01


def test_embedded_split_is_fixed():
    a, b = load_task("movie-reviews"), load_task("movie-reviews")
    assert a.train_x == b.train_x and np.array_equal(a.test_y, b.test_y)
    c, d = load_task("mnist-5k"), load_task("mnist-5k")
    assert np.array_equal(c.test_x, d.test_x) and c.mean == d.mean


def _build_script():
    path = ROOT / "scripts" / "build_embedded_data.py"
    spec = importlib.util.spec_from_file_location("build_embedded_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_builder_split_is_stratified_disjoint_and_seeded():
    split = _build_script().stratified_split
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train, test = split(labels)
    assert len(test) == 20 and sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    assert np.bincount(labels[test]).tolist() == [10, 6, 4]
    again, _ = split(labels)
    assert np.array_equal(train, again)
    other, _ = split(labels, seed=1)
    assert not np.array_equal(train, other)


def test_prepare_vision_normalises_float32_nchw():
    data = load_task("mnist-5k")
    prepared = prepare(data)
    assert prepared.train_x.dtype == np.float32 and prepared.train_x.shape == (4000, 1, 28, 28)
    assert abs(float(prepared.train_x.mean())) < 1e-3 and abs(float(prepared.train_x.std()) - 1) < 1e-3
    expected = (data.test_x[:2] / 255 - data.mean[0]) / data.std[0]
    np.testing.assert_allclose(prepared.test_x[:2], expected, rtol=1e-5, atol=1e-5)
    assert prepared.test_y is data.test_y


def test_prepare_text_needs_a_tokenizer():
    data = load_task("amazon-reviews")
    with pytest.raises(PayattnError, match="needs a tokenizer"):
        prepare(data)
    tok = Tokenizer.fit(data.train_x, max_vocab=500, max_length=16)
    prepared = prepare(data, tok)
    assert prepared.train_x.shape == (2880, 16) and prepared.train_x.dtype == np.int32
    assert prepared.train_x.max() == 499 and prepared.test_x.min() == 0


def test_channel_stats_exact_and_constant_channel():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 3, 5, 5), dtype=np.uint8)
    images[:, 2] = 9
    mean, std = channel_stats(images)
    scaled = images / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std[:2], scaled.std(axis=(0, 2, 3))[:2], rtol=1e-12)
    assert std[2] == 1.0


# --- tokenizer --------------------------------------------------------------------------------

def test_tokenizer_vocab_by_frequency_then_alphabet():
    tok = Tokenizer.fit(["b a c", "c b", "c"], max_vocab=4, max_length=3)
    assert tok.vocab == ["<PAD>", "<UNKNOWN>", "c", "b"]  # c: 3, b: 2, a: 1
    tied = Tokenizer.fit(["z y", "y z", "x"], max_vocab=10, max_length=3)
    assert tied.vocab == ["<PAD>", "<UNKNOWN>", "y", "z", "x"]
    assert (tok.vocab_size, tok.pad_id, tok.unk_id) == (4, 0, 1)


def test_tokenizer_padding_truncation_unknown_and_case():
    tok = Tokenizer.fit(["Don't stop the music", "the music"], max_vocab=100, max_length=4)
    assert tok.tokenize("DON'T Stop! 'quoted' _x_") == ["DON'T", "Stop", "quoted", "x"]
    ids = tok.encode(["the music", "Don't stop THE music now", "jazz", "", "tHe music", "stop\0the"])
    the, music, dont, stop = (tok.vocab.index(w) for w in ("the", "music", "don't", "stop"))
    assert ids.dtype == np.int32 and ids.shape == (6, 4)
    assert ids.tolist() == [[the, music, 0, 0], [dont, stop, the, music], [1, 0, 0, 0], [0, 0, 0, 0],
                            [1, music, 0, 0], [stop, 0, 0, 0]]  # mixed case is unknown; NUL ends
    with pytest.raises(PayattnError, match="list of texts"):
        tok.encode("the music")


def test_tokenizer_save_load_round_trip(tmp_path):
    texts = load_task("amazon-reviews").train_x
    tok = Tokenizer.fit(texts, max_vocab=300, max_length=12)
    tok.save(tmp_path / "tokenizer.json")
    saved = json.loads((tmp_path / "tokenizer.json").read_text())
    header = (saved["pad_id"], saved["unk_id"], saved["max_length"])
    assert header == (0, 1, 12)
    loaded = Tokenizer.load(tmp_path / "tokenizer.json")
    assert loaded.vocab == tok.vocab and loaded.max_length == 12
    assert np.array_equal(loaded.encode(texts[:50]), tok.encode(texts[:50]))
    assert not list(tmp_path.glob(".*.tmp"))


def test_tokenizer_load_errors_name_the_file(tmp_path):
    with pytest.raises(PayattnError, match=r"tokenizer file .*nope\.json is missing"):
        Tokenizer.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "payattn.tokenizer/2", "vocab": ')
    with pytest.raises(PayattnError, match=r"bad\.json is malformed"):
        Tokenizer.load(bad)
    with pytest.raises(PayattnError, match="at least 3"):
        Tokenizer.fit(["a"], max_vocab=2, max_length=4)


# --- task errors ------------------------------------------------------------------------------

def test_unknown_task_lists_valid_tasks():
    message = _error(load_task, "mnist5k")
    assert message.startswith("unknown task 'mnist5k'; valid tasks: mnist-5k, movie-reviews,")


def test_full_task_without_data_dir_says_what_to_pass():
    message = _error(load_task, "cifar100")
    assert "pass --data-dir DIR, a directory holding cifar-100-python.tar.gz" in message
    missing = "/nonexistent/payattn-data"
    assert f"data dir {missing} does not exist" in _error(load_task, "imdb", missing)


def test_data_package_does_not_import_torch():
    code = "import sys, payattn.data; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- MNIST IDX ------------------------------------------------------------------------------

def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def _write_mnist(folder: Path, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) + 3) % 10,
    }
    for name, array in arrays.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(_idx(array)))
    return arrays


def test_mnist_idx_gz_loads(tmp_path):
    arrays = _write_mnist(tmp_path)
    data = load_task("mnist", tmp_path)
    assert data.train_x.shape == (6, 1, 28, 28) and data.test_x.shape == (4, 1, 28, 28)
    assert np.array_equal(data.train_x[:, 0], arrays["train-images-idx3-ubyte"])
    assert data.test_y.tolist() == [3, 4, 5, 6] and data.train_y.dtype == np.int64
    assert data.mean[0] == pytest.approx(arrays["train-images-idx3-ubyte"].mean() / 255)


def test_mnist_accepts_uncompressed_files(tmp_path):
    arrays = _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(arrays["t10k-labels-idx1-ubyte"]))
    assert load_task("mnist", tmp_path).test_y.tolist() == [3, 4, 5, 6]


def test_mnist_missing_and_malformed_files_are_named(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    message = _error(load_task, "mnist", tmp_path)
    expected = tmp_path / "train-labels-idx1-ubyte.gz"
    assert f"needs train-labels-idx1-ubyte.gz, expected at {expected}; get it from the MNIST" in message
    _write_mnist(tmp_path)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-5]))
    message = _error(load_task, "mnist", tmp_path)
    assert f"{images} is not a valid mnist file (header says" in message
    images.write_bytes(b"not gzip at all")
    assert f"{images} is not a valid mnist file (cannot read" in _error(load_task, "mnist", tmp_path)


# --- CIFAR-100 python version -----------------------------------------------------------------

def _cifar_parts(n_train: int = 5, n_test: int = 3) -> dict[str, bytes]:
    rng = np.random.default_rng(2)
    def split(n: int) -> bytes:  # noqa: E306 - bytes keys, protocol 2: like the Python 2 originals
        return pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                             b"fine_labels": [i % 4 for i in range(n)],
                             b"coarse_labels": [0] * n}, protocol=2)
    meta = pickle.dumps({b"fine_label_names": [b"apple", b"bee", b"cloud", b"dolphin"]}, protocol=2)
    return {"train": split(n_train), "test": split(n_test), "meta": meta}


def _write_cifar_tar(path: Path, parts: dict[str, bytes]) -> None:
    _write_tar(path, {f"cifar-100-python/{name}": data for name, data in parts.items()})


def _write_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_cifar100_tarball_and_folder_load_alike(tmp_path):
    parts = _cifar_parts()
    _write_cifar_tar(tmp_path / "cifar-100-python.tar.gz", parts)
    from_tar = load_task("cifar100", tmp_path)
    assert from_tar.labels == ["apple", "bee", "cloud", "dolphin"]
    assert from_tar.train_x.shape == (5, 3, 32, 32) and from_tar.test_y.tolist() == [0, 1, 2]
    train = pickle.loads(parts["train"], encoding="bytes")[b"data"]
    assert np.array_equal(from_tar.train_x[1, 2].ravel(), train[1, 2048:])  # channel-major rows
    assert len(from_tar.mean) == 3
    assert from_tar.mean[1] == pytest.approx(train[:, 1024:2048].mean() / 255)

    folder = tmp_path / "other" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, data in parts.items():
        (folder / name).write_bytes(data)
    from_folder = load_task("cifar100", tmp_path / "other")
    assert np.array_equal(from_folder.test_x, from_tar.test_x) and from_folder.std == from_tar.std


def test_cifar100_missing_and_malformed(tmp_path):
    tarball = tmp_path / "cifar-100-python.tar.gz"
    message = _error(load_task, "cifar100", tmp_path)
    assert f"expected at {tarball}; get it from the 'CIFAR-100 python version'" in message
    parts = _cifar_parts()
    del parts["meta"]
    _write_cifar_tar(tarball, parts)
    message = _error(load_task, "cifar100", tmp_path)
    assert f"{tarball} is not a valid cifar100 file (no cifar-100-python/meta inside)" in message
    tarball.write_bytes(b"\x1f\x8b garbage")
    assert f"{tarball} is not a valid cifar100 file (cannot read" in _error(load_task, "cifar100", tmp_path)


class _Exploit:
    def __reduce__(self):
        return (eval, ("__import__('pathlib').Path('PWNED').touch()",))


def test_cifar100_refuses_pickles_that_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, data in _cifar_parts().items():
        (folder / name).write_bytes(data)
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": _Exploit()}, protocol=2))
    message = _error(load_task, "cifar100", tmp_path)
    assert f"{folder / 'meta'} is not a valid cifar100 file (cannot unpickle it: it refers to" in message
    assert ".eval, which a dataset never needs" in message
    assert not (tmp_path / "PWNED").exists()


# --- IMDB -------------------------------------------------------------------------------------

IMDB_FILES = {
    "train/pos/0_9.txt": "A great film.<br /><br />Loved it", "train/pos/1_8.txt": "Wonderful",
    "train/neg/0_2.txt": "Awful, dull", "train/neg/10_1.txt": "Bad bad bad",
    "test/pos/0_10.txt": "Superb", "test/neg/0_3.txt": "Boring", "test/neg/1_1.txt": "Terrible acting",
    "train/unsup/0_0.txt": "ignored", "train/urls_pos.txt": "http://ignored",
}


def test_imdb_folder_and_tarball_load_alike(tmp_path):
    for name, text in IMDB_FILES.items():
        path = tmp_path / "a" / "aclImdb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (tmp_path / "b").mkdir()
    _write_tar(tmp_path / "b" / "aclImdb_v1.tar.gz",
               {f"aclImdb/{name}": text.encode() for name, text in reversed(IMDB_FILES.items())})
    folder, tarball = load_task("imdb", tmp_path / "a"), load_task("imdb", tmp_path / "b")
    assert folder.labels == ["negative", "positive"]
    assert folder.train_x == ["Awful, dull", "Bad bad bad", "A great film.  Loved it", "Wonderful"]
    assert folder.train_y.tolist() == [0, 0, 1, 1] and folder.test_y.tolist() == [0, 0, 1]
    assert tarball.train_x == folder.train_x and tarball.test_x == folder.test_x
    assert np.array_equal(tarball.test_y, folder.test_y)
    assert load_task("imdb", tmp_path / "a" / "aclImdb").test_x == folder.test_x  # the folder itself


def test_imdb_missing_and_incomplete(tmp_path):
    tarball = tmp_path / "aclImdb_v1.tar.gz"
    message = _error(load_task, "imdb", tmp_path)
    assert message.startswith("task 'imdb' needs aclImdb_v1.tar.gz (or its extracted folder aclImdb/)")
    assert f"expected at {tarball}; get it from the Large Movie Review Dataset" in message
    _write_tar(tarball, {"aclImdb/train/pos/0_9.txt": b"good"})
    message = _error(load_task, "imdb", tmp_path)
    assert f"{tarball} is not a valid imdb file (no train/pos and train/neg reviews" in message


# --- Amazon Review Polarity -------------------------------------------------------------------

def _write_amazon(folder: Path, rows: dict[str, list[list[str]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in rows.items():
        with open(folder / name, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(data)


def test_amazon_csv_loads(tmp_path):
    _write_amazon(tmp_path / "amazon_review_polarity_csv", {
        "train.csv": [["2", "Great CD", 'Lovely, "pure" sound.\\nBuy it'],
                      ["1", "Junk", "Broke, in a day"]],
        "test.csv": [["1", "Meh", "Not, good"]],
    })
    data = load_task("amazon", tmp_path)
    assert data.train_x == ['Great CD Lovely, "pure" sound. Buy it', "Junk Broke, in a day"]
    assert data.train_y.tolist() == [1, 0] and data.test_y.tolist() == [0]
    assert data.labels == ["negative", "positive"] and data.train_y.dtype == np.int64


def test_amazon_missing_and_malformed_files_are_named(tmp_path):
    _write_amazon(tmp_path, {"train.csv": [["2", "ok", "fine"]]})
    test_csv = tmp_path / "test.csv"
    message = _error(load_task, "amazon", tmp_path)
    assert f"needs test.csv, expected at {test_csv}; get it from amazon_review_polarity" in message
    _write_amazon(tmp_path, {"test.csv": [["2", "ok", "fine"], ["3", "bad", "label"]]})
    message = _error(load_task, "amazon", tmp_path)
    assert f'{test_csv} is not a valid amazon file (line 2 is not "1|2","title","text")' in message


def test_tokenizer_vocab_file_gives_each_case_form_one_id():
    tok = Tokenizer.fit(["Straße strasse ok"], max_vocab=10, max_length=4)
    lines = dict(line.split(" ") for line in tok.vocab_file().splitlines())
    assert lines["<PAD>"] == "0" and lines["<UNKNOWN>"] == "1"
    assert lines["ok"] == lines["Ok"] == lines["OK"] == str(tok.vocab.index("ok"))
    # "STRASSE" is the upper form of both words: it belongs to the first by rank, in both tables.
    assert int(lines["STRASSE"]) == tok.lookup["STRASSE"] == tok.vocab.index("strasse")
    assert len(lines) == len(tok.lookup) == len(tok.vocab_file().splitlines())
