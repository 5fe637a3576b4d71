"""Training on the embedded tasks, the run dir, and the CLI's one-line errors."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from test_apps import write_cifar100

from payattn.errors import PayattnError
from payattn.mechanisms import MECHANISMS
from payattn.cli import app
from payattn.data import load_task, prepare
from payattn.train import load_run, train

runner = CliRunner()


def losses_of(task: str, mechanism: str, out: Path, **kw) -> list[float]:
    seen: list[float] = []
    train(task, mechanism, out, progress=lambda step, total, loss: seen.append(loss), **kw)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("task", ["mnist-5k", "movie-reviews", "amazon-reviews"])
def test_every_mechanism_learns_each_embedded_task(task: str, mechanism: str, tmp_path: Path) -> None:
    overrides = {"depth": 1} if task == "mnist-5k" else {"max_vocab": 2000}
    losses = losses_of(task, mechanism, tmp_path / "run", epochs=3, overrides=overrides)
    k = max(len(losses) // 5, 1)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    assert last < 0.92 * first, f"loss did not fall: {first:.3f} -> {last:.3f}"


@pytest.mark.parametrize("task,overrides", [("mnist-5k", {"depth": 1}),
                                            ("movie-reviews", {"max_vocab": 2000, "context_length": 12})])
def test_run_dir_reproduces_logits(task: str, overrides: dict, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    metrics = train(task, "super", run_dir, epochs=1, overrides=overrides)
    assert {p.name for p in run_dir.iterdir()} >= {"model.pt", "config.json", "metrics.json"}
    loaded = load_run(run_dir)
    assert loaded.config.mechanism == "super"
    data = prepare(load_task(task), loaded.tokenizer)
    x = torch.from_numpy(data.test_x[:32])
    first = loaded.model(x)
    torch.testing.assert_close(load_run(run_dir).model(x), first, rtol=0, atol=0)
    acc = (first.argmax(1).numpy() == data.test_y[:32]).mean()
    assert 0.0 <= acc <= 1.0 and metrics["params"] == sum(p.numel() for p in loaded.model.parameters())
    if task == "movie-reviews":
        assert loaded.tokenizer is not None and loaded.tokenizer.max_length == 12


def test_same_seed_same_model(tmp_path: Path) -> None:
    for name in ("a", "b"):
        train("mnist-5k", "efficient", tmp_path / name, epochs=1, seed=7, overrides={"depth": 1})
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_checkpoint_is_clear_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train("mnist-5k", "standard", run_dir, epochs=1, overrides={"depth": 1})
    (run_dir / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PayattnError, match="model.pt could not be loaded.*corrupt"):
        load_run(run_dir)


def test_model_rejects_wrong_context_length(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train("movie-reviews", "super", run_dir, epochs=1, overrides={"max_vocab": 500, "context_length": 8})
    model = load_run(run_dir).model
    with pytest.raises(PayattnError, match=r"\[B, 8\].*pad or truncate"):
        model(torch.zeros(1, 9, dtype=torch.int32))


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--mechanism", "fast"], "unknown mechanism 'fast'"),
        (["train", "--task", "mnist-9k"], "unknown task 'mnist-9k'"),
        (["train", "--task", "movie-reviews", "--preset", "mnist-tiny"], "choose a text preset"),
        (["train", "--task", "mnist", "--data-dir", "{tmp}"], "train-images-idx3-ubyte.gz"),
        (["info", "--preset", "nope"], "unknown preset 'nope'"),
    ],
)
def test_cli_errors_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, args + ["--out", str(tmp_path / "out")] if args[0] == "train" else args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cli_train_all_prints_summary(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--mechanism", "all", "--epochs", "1", "--depth", "1",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "training summary" in result.output
    for mech in MECHANISMS:
        cfg = json.loads((tmp_path / "mnist-5k" / mech / "config.json").read_text())
        assert cfg["mechanism"] == mech and cfg["seed"] == 0


def test_info_ratios(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", "--preset", "imdb-paper"])
    assert result.exit_code == 0, result.output
    assert "efficient" in result.output and "0.50" in result.output  # attention params halve


def test_the_data_dir_is_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    write_cifar100(tmp_path / "data", n_train=200, n_test=50)  # a task that reads --data-dir
    train("cifar100", "efficient", Path("run"), epochs=1, overrides={"depth": 1}, data_dir=Path("data"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data_dir"] == str(tmp_path / "data")  # exportable from any folder
