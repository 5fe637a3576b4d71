"""Training loop, evaluation and the run dir (model.pt, config.json, metrics.json, tokenizer.json).

train() runs named stages, each callable alone: `resolve` the model config, tokenizer and data,
`fit` the model, `evaluate` it, `write_run_dir`.

Training is deterministic for a seed on CPU: the seed fixes the initial weights and the
order of the batches, so `--mechanism all` trains the four mechanisms on identical data
order and a run can be reproduced exactly.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from payattn.cost import model_cost
from payattn.data import TASKS, Dataset, Prepared, check_data_dir, load_task, prepare
from payattn.data.tokenizer import Tokenizer
from payattn.errors import PayattnError
from payattn.files import check_target, clean_leftovers, pause_point, replace_dir, temp_dir_beside
from payattn.mechanisms import MECHANISMS, canonical_mechanism
from payattn.config import ModelConfig, check_overrides, get_preset, resolve_config
from payattn.models import build_model
from payattn.runtime.readers import read_json
from payattn.runtime.settings import check_bound

DEFAULT_EPOCHS = {"mnist-5k": 15, "movie-reviews": 5, "amazon-reviews": 8}
FALLBACK_EPOCHS = 10  # the paper's setting for its full datasets
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
# Vision batches are moved by up to this many pixels (a cyclic shift, one per batch): with
# 4,000 training digits, a one-head model otherwise overfits (98% train, 88% test).
MAX_SHIFT = 1
MAX_EPOCHS = 10_000
MAX_SEED = 2**32 - 1
# What a run dir holds: `--force` replaces a dir holding these names only.
RUN_FILES = ("model.pt", "config.json", "metrics.json", "tokenizer.json")
RUN_KEYS = ("task", "preset", "mechanism", "seed", "epochs", "model")

# Called after every optimiser step with (steps done, total steps, latest loss).
ProgressFn = Callable[[int, int, float], None]


@dataclass
class LoadedRun:
    model: nn.Module
    config: ModelConfig
    run_config: dict[str, Any]
    tokenizer: Tokenizer | None
    metrics: dict[str, Any]
    run_dir: Path


def default_epochs(task: str) -> int:
    return DEFAULT_EPOCHS.get(task, FALLBACK_EPOCHS)


def make_tokenizer(
    dataset: Dataset, preset: str, context_length: int | None, max_vocab: int | None
) -> Tokenizer:
    """Fit the word-level tokenizer on the training split, capped by the preset's vocabulary."""
    p = get_preset(preset)
    return Tokenizer.fit(dataset.train_x, max_vocab=max_vocab or p.vocab_size,
                         max_length=context_length or p.context_length)


def shift_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Move a batch of NCHW images by up to MAX_SHIFT pixels each way (the same for the batch)."""
    dy, dx = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (2,), generator=generator).tolist()
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))


def train(
    task: str,
    mechanism: str,
    out: Path,
    *,
    preset: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
    overrides: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    dataset: Dataset | None = None,
    threads: int = 1,
    force: bool = False,
) -> dict[str, Any]:
    """Train one model and write its run dir to `out` (atomically). Returns the metrics.

    `overrides` holds ModelConfig fields from the command line (None values are ignored),
    plus `max_vocab` for the tokenizer of text tasks; `dataset` lets `--mechanism all` load the
    data once. An existing `out` is replaced only with `force`, and only if it is a run dir.
    """
    mechanism = canonical_mechanism(mechanism)
    preset = check_task_preset(task, preset)
    epochs = epochs if epochs is not None else default_epochs(task)
    check_train_options(epochs=epochs, seed=seed, threads=threads, overrides=overrides)
    check_data_dir(task, data_dir)
    check_run_target(Path(out), force)
    data_dir = Path(data_dir).absolute() if data_dir is not None else None
    setup = resolve(task, preset, mechanism, dataset or load_task(task, data_dir), overrides)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    model = fit(setup.cfg, setup.data, epochs, seed, progress)
    train_seconds = round(time.perf_counter() - started, 3)
    metrics = {**evaluate(model, setup.cfg, setup.data), "train_seconds": train_seconds}
    run_config = {
        "task": task, "preset": preset, "mechanism": mechanism, "seed": seed, "epochs": epochs,
        "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE,
        "max_shift": MAX_SHIFT if setup.cfg.kind == "vision" else 0,
        "data_dir": str(data_dir) if data_dir else None, "model": setup.cfg.to_dict(),
    }
    write_run_dir(out, model, run_config, metrics, setup.tokenizer)
    return metrics


@dataclass
class Setup:
    """What a run trains: its model config, the tokenizer of a text task, the data model-ready."""

    cfg: ModelConfig
    tokenizer: Tokenizer | None
    data: Prepared


def resolve(
    task: str, preset: str, mechanism: str, dataset: Dataset, overrides: dict[str, Any] | None = None,
) -> Setup:
    """The model config, tokenizer and model-ready data of a run. A text task's tokenizer is fitted
    first: its vocabulary and context length are the model's. `overrides` as for train()."""
    overrides = dict(overrides or {})
    max_vocab = overrides.pop("max_vocab", None)
    tokenizer = None
    if dataset.kind == "text":
        tokenizer = make_tokenizer(dataset, preset, overrides.pop("context_length", None), max_vocab)
        overrides["context_length"] = tokenizer.max_length
    cfg = resolve_config(
        preset, mechanism, num_classes=len(dataset.labels),
        vocab_size=tokenizer.vocab_size if tokenizer else None, **overrides,
    )
    return Setup(cfg, tokenizer, prepare(dataset, tokenizer))


def fit(cfg: ModelConfig, data: Prepared, epochs: int, seed: int, progress: ProgressFn | None = None) -> nn.Module:
    """A fresh model of `cfg` trained with Adam on the training split. The seed fixes the initial
    weights, the batch order and the image shifts, so a run can be reproduced exactly."""
    torch.manual_seed(seed)
    pause_point("train:fit")
    model = build_model(cfg)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    order = torch.Generator().manual_seed(seed)
    train_x, train_y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    total, step = epochs * ((len(train_x) + BATCH_SIZE - 1) // BATCH_SIZE), 0
    for _ in range(epochs):
        model.train()
        for xb, yb in _batches(train_x, train_y, order, shift=cfg.kind == "vision"):
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            if progress:
                progress(step, total, loss.item())
    return model


def _batches(
    x: torch.Tensor, y: torch.Tensor, order: torch.Generator, shift: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch in BATCH_SIZE batches, shuffled by `order`; with `shift`, each batch of images
    moved by a shift drawn from `order` too."""
    perm = torch.randperm(len(x), generator=order)
    for start in range(0, len(x), BATCH_SIZE):
        idx = perm[start:start + BATCH_SIZE]
        yield (shift_images(x[idx], order) if shift else x[idx]), y[idx]


def evaluate(model: nn.Module, cfg: ModelConfig, data: Prepared) -> dict[str, Any]:
    """A trained model's metrics: accuracy and loss on both splits, and its parameter counts."""
    train_acc, train_loss = accuracy_and_loss(model, data.train_x, data.train_y)
    test_acc, test_loss = accuracy_and_loss(model, data.test_x, data.test_y)
    return {
        "train_accuracy": train_acc, "train_loss": train_loss,
        "test_accuracy": test_acc, "test_loss": test_loss,
        "params": sum(p.numel() for p in model.parameters()),
        "attention_params": model_cost(cfg).attention_params,
    }


@torch.no_grad()
def accuracy_and_loss(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of `model` on prepared inputs."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[start:start + batch_size])
        yb = torch.from_numpy(y[start:start + batch_size])
        logits = model(xb)
        loss_sum += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(dim=1) == yb).sum().item()
    return correct / len(x), loss_sum / len(x)


def check_task_preset(task: str, preset: str | None) -> str:
    """The preset to train (default: the task's), refused when either is unknown or the preset
    is of the other kind (vision/text)."""
    if task not in TASKS:
        raise PayattnError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    preset = preset or TASKS[task].default_preset
    kind, wanted = get_preset(preset).kind, TASKS[task].kind
    if kind != wanted:
        raise PayattnError(f"preset {preset!r} is a {kind} model but task {task!r} is {wanted}; "
                           f"choose a {wanted} preset")
    return preset


def check_train_options(*, epochs: int, seed: int, threads: int, overrides: dict[str, Any] | None) -> None:
    """Refuse out-of-range training options before any data is loaded."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise PayattnError(f"--epochs must be a whole number from 1 to {MAX_EPOCHS:,}, got {epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise PayattnError(f"--seed must be a whole number from 0 to {MAX_SEED:,}, got {seed!r}")
    check_bound("threads", threads)
    check_overrides(dict(overrides or {}))


def check_run_target(out: Path, force: bool) -> None:
    """Refuse to overwrite an existing run dir without `force`, or anything but a run dir with it."""
    check_target(out, force, RUN_FILES, "run dir")


def write_run_dir(
    out: Path, model: nn.Module, run_config: dict[str, Any], metrics: dict[str, Any],
    tokenizer: Tokenizer | None,
) -> None:
    """Write a complete run dir beside `out`, then swap it into place."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(out.parent)
        tmp = temp_dir_beside(out)
    except OSError as exc:
        raise PayattnError(f"cannot write run dir {out} ({exc.strerror or exc}); choose a writable --out") from None
    try:
        torch.save(model.state_dict(), tmp / "model.pt")
        (tmp / "config.json").write_text(json.dumps(run_config, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer.json")
        replace_dir(tmp, out, "train")
    except OSError as exc:
        raise PayattnError(f"cannot write run dir {out} ({exc.strerror or exc}); free space on that "
                           f"disk or choose another --out") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The validated config.json of a run dir: the one reader behind export --checkpoint and the
    reuse of a trained model. A missing, truncated, incomplete or inconsistent file is an error
    naming the file and the fix."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    fix = "retrain it with `payattn train --force`"
    if not path.exists():
        raise PayattnError(f"{path} is missing: {run_dir} is not a run dir from `payattn train`")
    config = read_json(path, "run config", fix)
    missing = [key for key in RUN_KEYS if key not in config]
    if missing:
        raise PayattnError(f"{path} is incomplete: no {', '.join(missing)}; {fix}")
    model = config["model"]
    required = [f for f in ("kind", "mechanism", "d_model", "heads", "depth", "mlp_dim",
                            "num_classes", "context_length") if not isinstance(model, dict) or f not in model]
    if required:
        raise PayattnError(f"{path} is incomplete: no model {', '.join(required)}; {fix}")
    if config["task"] not in TASKS or config["mechanism"] not in MECHANISMS:
        raise PayattnError(f"{path} names task {config['task']!r} and mechanism {config['mechanism']!r}, "
                           f"which payattn does not know; {fix}")
    if model["mechanism"] != config["mechanism"] or model["kind"] != TASKS[config["task"]].kind:
        raise PayattnError(f"{path} disagrees with itself: mechanism {config['mechanism']!r} but model "
                           f"{model['mechanism']!r} ({model['kind']}) for task {config['task']!r}; {fix}")
    bad = [f for f in ("d_model", "heads", "depth", "mlp_dim", "num_classes", "context_length")
           if isinstance(model[f], bool) or not isinstance(model[f], int) or model[f] < 1]
    if bad:
        raise PayattnError(f"{path}: model {', '.join(bad)} must be positive integers; {fix}")
    if model["kind"] == "vision":
        check_image_shape(path, config["task"], model, fix)
    return config


def check_image_shape(path: Path, task: str, model: dict[str, Any], fix: str) -> None:
    """A vision run's image size, channels and patches must be those of its task's images, or
    every later stage fails on the first sample."""
    data = get_preset(TASKS[task].default_preset)
    shape = {k: model.get(k) for k in ("image_size", "channels", "patch_size")}
    want = {"image_size": data.image_size, "channels": data.channels}
    wrong = [f"{k} {shape[k]!r} (the {task} images have {v})" for k, v in want.items() if shape[k] != v]
    patch = shape["patch_size"]
    if not wrong and (type(patch) is not int or patch < 1 or data.image_size % patch
                      or model["context_length"] != (data.image_size // patch) ** 2):
        wrong = [f"patch_size {patch!r} with context_length {model['context_length']} (the patches "
                 f"must tile the {data.image_size}-pixel image)"]
    if wrong:
        raise PayattnError(f"{path}: model {'; '.join(wrong)}; {fix}")


def load_run(run_dir: Path) -> LoadedRun:
    """Rebuild the exact trained model of a run dir, in eval mode."""
    run_dir = Path(run_dir)
    run_config = read_run_config(run_dir)
    weights = run_dir / "model.pt"
    if not weights.is_file():
        raise PayattnError(f"{weights} is missing: {run_dir} is not a run dir; create one with `payattn train`")
    try:
        cfg = ModelConfig.from_dict(run_config["model"])
        model = build_model(cfg)
    except (TypeError, ValueError) as exc:
        raise PayattnError(f"{run_dir / 'config.json'} describes no valid model ({exc}); "
                           f"retrain with `payattn train --force`") from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise PayattnError(
            f"{weights} could not be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            f"the checkpoint is corrupt: retrain with `payattn train --force`"
        ) from None
    try:
        model.load_state_dict(state)
    except Exception as exc:  # shapes or names differ from the config's model
        raise PayattnError(
            f"{run_dir / 'config.json'} disagrees with {weights} ({str(exc).splitlines()[-1].strip()[:200]}); "
            f"the two come from different models: restore the matching pair or retrain with "
            f"`payattn train --force`"
        ) from None
    model.eval()
    tok_path = run_dir / "tokenizer.json"
    tokenizer = Tokenizer.load(tok_path) if cfg.kind == "text" else None
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return LoadedRun(model, cfg, run_config, tokenizer, metrics, run_dir)
