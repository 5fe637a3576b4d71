"""payattn sweep: the grid, run dirs and index, resume, failures, the local pool against a
sequential run, and a real local Ray cluster against the local pool."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from payattn.cli import app
from payattn.errors import PayattnError
from payattn.sweep import make_spec, parse_seeds, run_dir_of, run_sweep
from payattn.sweep_index import read_index
from ray_fixture import ray_head  # noqa: F401  (a real Ray head on 127.0.0.1)

runner = CliRunner()


def small_spec(**kwargs):
    """Two mechanisms × two seeds, one epoch on the embedded digits: ~3 s a point."""
    return make_spec("mnist-5k", kwargs.pop("mechanisms", ["standard", "efficient"]),
                     kwargs.pop("seeds", [0, 1]), epochs=kwargs.pop("epochs", 1), **kwargs)


def assert_same_runs(spec, a: Path, b: Path) -> None:
    """Every point of spec has identical weights and accuracy in sweep folders a and b."""
    for point in spec.points():
        da, db = run_dir_of(a, point), run_dir_of(b, point)
        sa = torch.load(da / "model.pt", weights_only=True)
        sb = torch.load(db / "model.pt", weights_only=True)
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), point.id
        ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (da, db))
        assert ma["test_accuracy"] == mb["test_accuracy"] and ma["test_loss"] == mb["test_loss"]
        assert json.loads((da / "config.json").read_text()) == json.loads((db / "config.json").read_text())


def test_seeds_parse_counts_ranges_and_lists():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("4-6") == [4, 5, 6]
    assert parse_seeds("0,7,9") == [0, 7, 9]
    with pytest.raises(PayattnError, match="--seeds"):
        parse_seeds("two")


def test_grid_names_each_point_by_its_settings():
    spec = make_spec("mnist-5k", ["super", "standard"], [0, 1, 2], presets=["mnist-tiny", "mnist-wide"],
                     options={"heads": [1, 4]}, epochs=2)
    points = spec.points()
    assert len(points) == 2 * 2 * 2 * 3
    assert len({p.id for p in points}) == len(points)
    assert points[0].id == "standard_mnist-tiny_heads-1/seed-0"
    assert {p.setting["preset"] for p in points} == {"mnist-tiny", "mnist-wide"}
    one = make_spec("movie-reviews", ["efficient"], [0], epochs=1).points()[0]
    assert (one.variant, one.preset) == ("efficient", "imdb-paper")  # the task's preset, not in the name


@pytest.mark.parametrize("kwargs, message", [
    ({"task": "nope"}, "unknown task"),
    ({"presets": ["huge"]}, "unknown preset"),
    ({"options": {"heads": [0]}}, "--heads"),
    ({"options": {"colour": [1]}}, "unknown sweep option"),
    ({"seeds": [1, 1]}, "--seeds"),
    ({"epochs": 0}, "--epochs"),
])
def test_bad_grid_is_a_clear_error(kwargs, message):
    args = {"task": "mnist-5k", "mechanisms": ["standard"], "seeds": [0], **kwargs}
    with pytest.raises(PayattnError, match=message):
        make_spec(args.pop("task"), args.pop("mechanisms"), args.pop("seeds"), **args)


@pytest.mark.slow
def test_pool_equals_sequential_and_resume_skips_finished(tmp_path):
    spec = small_spec()
    pooled = run_sweep(spec, tmp_path / "pool", workers=2)
    run_sweep(spec, tmp_path / "seq", workers=1)
    assert [r.status for r in pooled] == ["done"] * 4
    assert_same_runs(spec, tmp_path / "pool", tmp_path / "seq")
    index = read_index(tmp_path / "pool")
    assert [e["status"] for e in index["points"]] == ["done"] * 4
    assert index["points"][0]["run_dir"] == "runs/standard/seed-0"
    assert index["points"][0]["test_accuracy"] == pooled[0].metrics["test_accuracy"]

    # Interrupted: one run dir never written. The next run trains only that point.
    shutil.rmtree(run_dir_of(tmp_path / "pool", spec.points()[3]))
    again = run_sweep(spec, tmp_path / "pool", workers=2)
    assert [r.status for r in again] == ["skipped"] * 3 + ["done"]
    assert_same_runs(spec, tmp_path / "pool", tmp_path / "seq")

    # A wider sweep keeps the finished points and adds the new seed.
    wider = run_sweep(small_spec(seeds=[0, 1, 2]), tmp_path / "pool", workers=2)
    assert sorted(r.status for r in wider).count("done") == 2
    assert len(read_index(tmp_path / "pool")["points"]) == 6

    # Other epochs in the same folder would mix runs: refused without --force.
    with pytest.raises(PayattnError, match="--force"):
        run_sweep(small_spec(epochs=2), tmp_path / "pool", workers=1)


@pytest.mark.slow
def test_cli_reports_a_failing_point_and_finishes_the_others(tmp_path):
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", "-m", "efficient", "--seeds", "2", "--epochs", "1",
                                 "--patch-size", "7,5", "--out", str(out), "--workers", "2"])
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 1, output
    assert "efficient_patch-size-5/seed-0 failed" in output
    assert "multiple of patch size" in output
    assert "2 point(s) failed" in output
    assert "test accuracy over seeds" in output  # the finished points are summarised
    statuses = {e["id"]: e["status"] for e in read_index(out)["points"]}
    assert statuses == {"efficient_patch-size-7/seed-0": "done", "efficient_patch-size-7/seed-1": "done",
                        "efficient_patch-size-5/seed-0": "failed", "efficient_patch-size-5/seed-1": "failed"}
    assert not (out / "runs" / "efficient_patch-size-5").exists()


@pytest.mark.slow
def test_ray_cluster_gives_the_local_pool_results(tmp_path, ray_head):  # noqa: F811
    spec = small_spec()
    seen = []
    on_ray = run_sweep(spec, tmp_path / "ray", ray_address=ray_head, on_status=lambda s: seen.append(s.running))
    assert [r.status for r in on_ray] == ["done"] * 4, [r.error for r in on_ray]
    assert max(seen) >= 1  # the live view saw points running on the cluster
    run_sweep(spec, tmp_path / "local", workers=2)
    assert_same_runs(spec, tmp_path / "ray", tmp_path / "local")
    assert [e["status"] for e in read_index(tmp_path / "ray")["points"]] == ["done"] * 4
    # Resuming through Ray skips what is already here.
    assert [r.status for r in run_sweep(spec, tmp_path / "ray", ray_address=ray_head)] == ["skipped"] * 4


def test_unreachable_ray_address_is_a_clear_error(tmp_path):
    from sshd_fixture import free_port

    with pytest.raises(PayattnError, match="cannot connect to the Ray cluster"):
        run_sweep(small_spec(seeds=[0]), tmp_path, ray_address=f"127.0.0.1:{free_port()}")


@pytest.mark.slow
def test_a_killed_sweep_resumes_where_it_stopped(tmp_path):
    from test_faults import kill, start_paused

    args = ["sweep", "-m", "standard,efficient", "--seeds", "1", "--epochs", "1", "--out", "sw", "--workers", "1"]
    # SIGKILL once the first point's run dir is in place, before the index records it.
    kill(start_paused(args, "sweep:index", tmp_path, tmp_path / "paused"))
    out = tmp_path / "sw"
    assert [e["status"] for e in read_index(out)["points"]] == ["pending", "pending"]
    resumed = run_sweep(make_spec("mnist-5k", ["standard", "efficient"], [0], epochs=1), out, workers=1)
    assert [r.status for r in resumed] == ["skipped", "done"]
    assert [e["status"] for e in read_index(out)["points"]] == ["done", "done"]
