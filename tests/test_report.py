"""The report from a synthetic results.jsonl: three devices, two runtimes, two precisions, four mechanisms."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import payattn.report as report_mod
from payattn.errors import PayattnError
from payattn.mechanisms import MECHANISMS
from payattn.report import headline_table, headline_tables, report
from payattn.report.results import CSV_COLUMNS

DEVICES = {
    "laptop": {"name": "laptop", "kind": "local", "cpu": "Intel Core i7-1185G7", "cores": 8,
               "os": "Linux 6.8", "arch": "x86_64", "memory_bytes": 16_000_000_000},
    "pi5": {"name": "pi5", "kind": "ssh", "cpu": "Cortex-A76", "cores": 4,
            "os": "Linux 6.6 (Debian 12)", "arch": "aarch64", "memory_bytes": 8_000_000_000},
    "pixel": {"name": "pixel", "kind": "adb", "cpu": "Tensor G3", "cores": 9,
              "os": "Android 14", "arch": "aarch64", "memory_bytes": None},
}
# (runtime, format, precision, file) combinations measured on every device.
CONFIGS = [("onnxruntime", "onnx", "fp32", "model.onnx"),
           ("litert", "tflite", "fp32", "model_fp32.tflite"),
           ("litert", "tflite", "fp16", "model_fp16.tflite")]
PARAMS = {"standard": 12000, "optimised": 11000, "efficient": 10000, "super": 10100}
FLOPS = {"standard": 800_000, "optimised": 640_000, "efficient": 480_000, "super": 520_000}
SCALE = {"standard": 1.0, "optimised": 0.9, "efficient": 0.62, "super": 0.71}
DEVICE_MS = {"laptop": 0.2, "pi5": 1.5, "pixel": 0.9}
RUNTIME_MS = {("onnxruntime", "fp32"): 1.0, ("litert", "fp32"): 0.8, ("litert", "fp16"): 0.85}


def p50_of(mech: str, device: str, runtime: str, precision: str) -> float:
    """The p50 the synthetic line gets; the mechanism factor also depends on the device."""
    tweak = {"laptop": 1.0, "pi5": 1.1, "pixel": 0.95}[device] if mech != "standard" else 1.0
    return round(DEVICE_MS[device] * RUNTIME_MS[(runtime, precision)] * SCALE[mech] * tweak, 4)


def line(mech: str, device: str, runtime: str, fmt: str, precision: str, file: str, *,
         task: str = "mnist-5k", preset: str = "mnist-tiny", minute: int = 0, p50: float | None = None,
         threads: int = 1) -> dict[str, Any]:
    p50 = p50_of(mech, device, runtime, precision) if p50 is None else p50
    size = {"fp32": 48_000, "fp16": 25_000}[precision] * PARAMS[mech] // 12000 + (900 if fmt == "onnx" else 0)
    return {
        "schema": "payattn.result/1", "timestamp": f"2025-01-02T10:{minute:02d}:00Z",
        "payattn_version": "0.1.0", "git_commit": "0123456789abcdef0123",
        "artifact": {"path": f"/art/{task}/{mech}/{file}", "file": file, "sha256": hashlib.sha256(f"{mech}{file}".encode()).hexdigest(),
                     "bytes": size, "format": fmt, "precision": precision},
        "mechanism": mech, "task": task, "preset": preset, "params": PARAMS[mech],
        "attention_params": PARAMS[mech] // 4, "flops": FLOPS[mech],
        "test_accuracy": 0.95 + 0.001 * MECHANISMS.index(mech) - (0.002 if precision == "fp16" else 0),
        "runtime": {"name": runtime, "version": "1.32.0" if runtime == "onnxruntime" else "2.3.0",
                    "graph_optimization": "all" if runtime == "onnxruntime" else None},
        "device": DEVICES[device], "threads": threads, "warmup_runs": 10, "runs": 200,
        "init_ms": 12.5, "first_inference_ms": 3.1,
        "latency_ms": {"mean": p50 * 1.02, "std": p50 * 0.05, "min": p50 * 0.9, "p10": p50 * 0.95,
                       "p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3, "max": p50 * 1.6},
        "peak_memory_bytes": 3_500_000 if device == "pi5" else None, "harness_overhead_ms": 0.004,
    }


def synthetic_lines() -> list[dict[str, Any]]:
    lines = [line(m, d, rt, fmt, prec, file, minute=i % 50)
             for i, (d, (rt, fmt, prec, file), m) in enumerate(
                 (d, c, m) for d in DEVICES for c in CONFIGS for m in MECHANISMS)]
    # A 4-thread laptop run: goes to the detail tables, not the headline.
    lines.append(line("standard", "laptop", "onnxruntime", "onnx", "fp32", "model.onnx", threads=4, p50=0.09))
    # Re-measurements of laptop/onnxruntime/efficient: the one with the latest timestamp wins,
    # even though it is not the last line of the file.
    lines.append(line("efficient", "laptop", "onnxruntime", "onnx", "fp32", "model.onnx", minute=58, p50=0.111))
    lines.append(line("efficient", "laptop", "onnxruntime", "onnx", "fp32", "model.onnx", minute=55, p50=9.99))
    return lines


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def table_rows(markdown: str, title: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table after `title`."""
    lines = markdown.split(title, 1)[1].splitlines()[1:]
    start = next(i for i, text in enumerate(lines) if text.startswith("|"))
    rows = []
    for text in lines[start:]:
        if not text.startswith("|"):
            break
        rows.append([c.strip() for c in text.strip("|").split(" | ")])
    return rows[0], rows[2:]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[report_mod.ReportPaths, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("report")
    lines = synthetic_lines()
    return report(write_jsonl(tmp / "results.jsonl", lines), tmp / "out"), lines


def test_headline_has_one_row_per_mechanism_with_measured_speedups(rendered) -> None:
    paths, _ = rendered
    md = paths.md.read_text(encoding="utf-8")
    header, rows = table_rows(md, "mnist-5k / mnist-tiny: fp32, 1 thread")
    assert [r[0] for r in rows] == list(MECHANISMS)
    latency_columns = [f"{d} · {rt}: p50 ms (speed-up)" for d in DEVICES for rt in ("onnxruntime", "litert")]
    assert header == ["mechanism", *latency_columns, "FLOP-model speed-up", "test accuracy (fp32)", "params",
                      "attention params"]  # latency first; sizes are in the artifacts table
    for mech, row in zip(MECHANISMS, rows):
        cells = dict(zip(header, row))
        assert cells["params"] == f"{PARAMS[mech]:,}"
        assert cells["FLOP-model speed-up"] == f"{FLOPS['standard'] / FLOPS[mech]:.2f}×"
        for device in DEVICES:
            for runtime in ("onnxruntime", "litert"):
                p50 = p50_of(mech, device, runtime, "fp32")
                std = p50_of("standard", device, runtime, "fp32")
                if (mech, device, runtime) == ("efficient", "laptop", "onnxruntime"):
                    p50 = 0.111  # the latest of three measurements
                cell = cells[f"{device} · {runtime}: p50 ms (speed-up)"]
                assert cell.endswith(f"({std / p50:.2f}×)"), (mech, device, runtime, cell)


def test_report_leads_with_a_verdict_and_sizes_in_binary_units(rendered) -> None:
    paths, _ = rendered
    md = paths.md.read_text(encoding="utf-8")
    lead = md.split("\n\n")[1]
    ratios = [p50_of("standard", d, rt, "fp32") / p50_of("efficient", d, rt, "fp32")
              for d in DEVICES for rt in ("onnxruntime", "litert")]
    ratios[0] = p50_of("standard", "laptop", "onnxruntime", "fp32") / 0.111  # the latest line
    assert lead == (f"**On mnist-5k / mnist-tiny at fp32, 1 thread, efficient is the fastest mechanism, "
                    f"{min(ratios):.2f}–{max(ratios):.2f}× as fast as standard (p50) on 6 device × runtime "
                    f"pairs, at test accuracy 95.20% against standard's 95.00%.**")
    assert '<p class="lead">On mnist-5k' in paths.html.read_text(encoding="utf-8")
    header, rows = table_rows(md, "mnist-5k / mnist-tiny: artifacts")
    sizes = {(r[0], r[2], r[1]): r[header.index("size")] for r in rows}
    assert sizes["super", "fp16", "tflite"] == f"{(25_000 * PARAMS['super'] // 12000) / 1024:.1f} KiB"
    assert " kB" not in md and " MB" not in md and " GB" not in md


def test_latest_measurement_is_used_and_said(rendered) -> None:
    paths, lines = rendered
    md = paths.md.read_text(encoding="utf-8")
    assert f"{len(lines)} result lines, {len(lines) - 2} used" in md
    assert "9.99" not in md and "0.111" in md
    assert "latest line (by timestamp)" in md


def test_detail_tables_cover_other_precisions_and_threads(rendered) -> None:
    paths, _ = rendered
    md = paths.md.read_text(encoding="utf-8")
    header, rows = table_rows(md, "mnist-5k / mnist-tiny on laptop (local): all configurations")
    assert len(rows) == len(CONFIGS) * len(MECHANISMS) + 1
    four = [dict(zip(header, r)) for r in rows if r[header.index("threads")] == "4"]
    assert [(c["mechanism"], c["p50 ms"], c["speed-up"]) for c in four] == [("standard", "0.0900", "1.00×")]
    assert header[4:9] == ["p50 ms", "p10–p90 ms", "p99 ms", "speed-up", "peak memory"]
    assert four[0]["p99 ms"] == "0.117" and four[0]["peak memory"] == "—"  # this line measured no memory
    fp16 = {r[3]: dict(zip(header, r)) for r in rows if r[1] == "fp16"}
    expected = p50_of("standard", "laptop", "litert", "fp16") / p50_of("super", "laptop", "litert", "fp16")
    assert fp16["super"]["speed-up"] == f"{expected:.2f}×"
    header, rows = table_rows(md, "mnist-5k / mnist-tiny on pi5 (ssh): all configurations")
    assert {r[header.index("peak memory")] for r in rows} == {"3.34 MiB"}


def test_csv_has_one_row_per_line_in_a_stable_order(rendered) -> None:
    paths, lines = rendered
    with paths.csv.open(newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0] == CSV_COLUMNS
    assert len(table) - 1 == len(lines)
    rows = [dict(zip(table[0], r)) for r in table[1:]]
    assert [r["line"] for r in rows] == [str(i) for i in range(1, len(lines) + 1)]
    assert sum(r["used_in_tables"] == "0" for r in rows) == 2
    assert rows[0]["latency_ms_p50"] == str(lines[0]["latency_ms"]["p50"])
    assert rows[0]["device_name"] == "laptop" and rows[0]["peak_memory_bytes"] == ""


def test_html_stands_alone_with_tables_and_images(rendered) -> None:
    paths, _ = rendered
    page = paths.html.read_text(encoding="utf-8")
    assert page.count("<table>") == paths.md.read_text(encoding="utf-8").count("\n|---")
    assert "mnist-5k / mnist-tiny: fp32, 1 thread" in page and "Measurement conditions" in page
    assert page.count('src="data:image/png;base64,') == len(paths.plots) == 2
    assert 'src="plots/' not in page and "<style>" in page


def test_plots_are_valid_pngs(rendered) -> None:
    paths, _ = rendered
    for plot in paths.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(plot) as image:
            image.verify()
        assert f"]({plot.parent.name}/{plot.name})" in paths.md.read_text(encoding="utf-8")


def test_measurement_conditions_per_device(rendered) -> None:
    paths, _ = rendered
    header, rows = table_rows(paths.md.read_text(encoding="utf-8"), "## Measurement conditions")
    assert header[1:] == list(DEVICES)
    fields = {r[0]: r[1:] for r in rows}
    assert fields["CPU"] == [d["cpu"] for d in DEVICES.values()]
    assert fields["runtimes"][1] == "onnxruntime 1.32.0 (graph optimisation all), litert 2.3.0"
    assert fields["threads"] == ["1, 4", "1", "1"]
    assert fields["memory"][2] == "—"
    assert fields["git commit"][0] == "0123456789ab"


def test_missing_standard_and_several_tasks(tmp_path: Path) -> None:
    lines = synthetic_lines()
    lines += [line(m, "pi5", "litert", "tflite", "fp32", "model_fp32.tflite", task="movie-reviews",
                   preset="text-tiny") for m in ("efficient", "super")]
    text = headline_table(lines)
    assert text.count("### ") == 2
    _, rows = table_rows(text, "movie-reviews / text-tiny: fp32, 1 thread")
    assert [r[0] for r in rows] == ["efficient", "super"]
    assert all(r[1].endswith("(—)") and r[2] == "—" for r in rows)
    tables = headline_tables(write_jsonl(tmp_path / "r.jsonl", lines))
    md = report(tmp_path / "r.jsonl", tmp_path / "out").md.read_text(encoding="utf-8")
    assert ("**On movie-reviews / text-tiny at fp32, 1 thread, no mechanism was measured beside standard, "
            "so there is no speed-up to report.**") in md
    assert [t.title for t in tables] == ["mnist-5k / mnist-tiny: fp32, 1 thread",
                                         "movie-reviews / text-tiny: fp32, 1 thread"]


def test_headline_prefers_most_common_config_without_fp32_single_thread() -> None:
    lines = [line(m, "pi5", "litert", "tflite", "fp16", "model_fp16.tflite", threads=4) for m in MECHANISMS]
    lines.append(line("standard", "pi5", "litert", "tflite", "fp16", "model_fp16.tflite", threads=2))
    (table,) = headline_tables(lines)
    assert table.title == "mnist-5k / mnist-tiny: fp16, 4 threads"


def _broken(key: str, value: Any) -> dict[str, Any]:
    record = copy.deepcopy(line("standard", "laptop", "onnxruntime", "onnx", "fp32", "model.onnx"))
    *parents, last = key.split(".")
    target = record
    for part in parents:
        target = target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return record


@pytest.mark.parametrize("second, message", [
    ("{not json", "results.jsonl:3: not valid JSON"),
    ('{"a": 1', "results.jsonl:3: not valid JSON"),
    ("[1, 2]", "results.jsonl:3: the document must be object, got array [1, 2]"),
    (json.dumps(_broken("schema", "payattn.result/0")), "results.jsonl:3: schema is 'payattn.result/0'"),
    (json.dumps(_broken("latency_ms.p50", KeyError)), "results.jsonl:3: key 'latency_ms.p50' is missing"),
    (json.dumps(_broken("threads", "1")), "results.jsonl:3: key 'threads' must be integer, got string '1'"),
    (json.dumps(_broken("latency_ms.p90", -1.0)), "results.jsonl:3: key 'latency_ms.p90' must be ≥ 0, got -1.0"),
    (json.dumps(_broken("artifact.precision", "fp8")), "results.jsonl:3: key 'artifact.precision' must be one of fp32"),
    (json.dumps(_broken("mechanism", "linear")), "results.jsonl:3: mechanism is 'linear'"),
    (json.dumps(_broken("timestamp", "yesterday")), "results.jsonl:3: key 'timestamp' must be an ISO 8601 date-time, got 'yesterday'"),
])
def test_bad_lines_name_file_and_line(tmp_path: Path, second: str, message: str) -> None:
    good = json.dumps(line("standard", "laptop", "onnxruntime", "onnx", "fp32", "model.onnx"))
    path = tmp_path / "results.jsonl"
    path.write_text(f"{good}\n\n{second}\n", encoding="utf-8")
    with pytest.raises(PayattnError, match=message.replace("(", r"\(").replace("[", r"\[")):
        report(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_or_empty_results_file_or_bad_folder(tmp_path: Path) -> None:
    with pytest.raises(PayattnError, match="results file .*nowhere.jsonl not found"):
        report(tmp_path / "nowhere.jsonl", tmp_path / "out")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(PayattnError, match="empty.jsonl holds no result lines"):
        report(empty, tmp_path / "out")
    good = write_jsonl(tmp_path / "good.jsonl", synthetic_lines()[:4])
    with pytest.raises(PayattnError, match="report folder .*empty.jsonl is a file"):
        report(good, empty)


def test_failure_while_rendering_leaves_previous_report_untouched(tmp_path: Path, monkeypatch) -> None:
    results = write_jsonl(tmp_path / "results.jsonl", synthetic_lines()[:8])
    first = report(results, tmp_path / "out")
    before = {p: p.read_bytes() for p in (first.md, first.csv, first.html, *first.plots)}

    def broken_plot(*args: Any) -> None:
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report_mod, "size_plot", broken_plot)
    write_jsonl(results, synthetic_lines())
    with pytest.raises(RuntimeError, match="plot failed"):
        report(results, tmp_path / "out", force=True)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plots", "report.csv", "report.html", "report.md"]


# ---- lines from Android's benchmark_model: no percentiles, sometimes a median ---------------

ADB_MEANS = {"standard": 2.0, "optimised": 1.8, "efficient": 1.0, "super": 1.6}


def adb_line(mech: str, median: float | None = None) -> dict[str, Any]:
    """A line as payattn.devices.adb writes it: mean/std/min/max only, p50 only if printed."""
    record = line(mech, "pixel", "benchmark_model", "tflite", "fp32", "model_fp32.tflite", p50=1.0)
    mean = ADB_MEANS[mech]
    record["runtime"] = {"name": "benchmark_model", "version": "2.16.1", "graph_optimization": None}
    record["latency_ms"] = {"mean": mean, "std": 0.1, "min": mean * 0.8, "p10": None, "p50": median,
                            "p90": None, "p99": None, "max": mean * 1.5}
    record["harness_overhead_ms"] = None
    return record


def adb_lines() -> list[dict[str, Any]]:
    # efficient's run printed a median (0.5, far from its mean): the speed-up must still use means,
    # because standard's run printed none.
    return synthetic_lines() + [adb_line(m, median=0.5 if m == "efficient" else None) for m in MECHANISMS]


@pytest.fixture(scope="module")
def adb_rendered(tmp_path_factory: pytest.TempPathFactory) -> report_mod.ReportPaths:
    tmp = tmp_path_factory.mktemp("adb-report")
    return report(write_jsonl(tmp / "results.jsonl", adb_lines()), tmp / "out")


def test_headline_marks_means_and_compares_means(adb_rendered) -> None:
    md = adb_rendered.md.read_text(encoding="utf-8")
    header, rows = table_rows(md, "mnist-5k / mnist-tiny: fp32, 1 thread")
    column = header.index("pixel · benchmark_model: p50 ms (speed-up)")
    cells = {r[0]: r[column] for r in rows}
    assert cells == {"standard": "2.00ᵃ (1.00×)", "optimised": "1.80ᵃ (1.11×)",
                     "efficient": "1.00ᵃ (2.00×)", "super": "1.60ᵃ (1.25×)"}
    # Cells of runtimes that report percentiles stay p50 and unmarked.
    laptop = header.index("laptop · litert: p50 ms (speed-up)")
    assert all("ᵃ" not in r[laptop] for r in rows)
    headline_part = md.split("mnist-5k / mnist-tiny: fp32, 1 thread", 1)[1].split("###", 1)[0]
    assert "ᵃ mean: benchmark_model prints no median" in headline_part


def test_detail_table_shows_no_spread_for_missing_percentiles(adb_rendered) -> None:
    md = adb_rendered.md.read_text(encoding="utf-8")
    title = "mnist-5k / mnist-tiny on pixel (adb): all configurations"
    header, rows = table_rows(md, title)
    bm = {r[3]: dict(zip(header, r)) for r in rows if r[0] == "benchmark_model"}
    assert [(c["p50 ms"], c["p10–p90 ms"], c["speed-up"]) for c in bm.values()] == [
        ("2.00ᵃ", "—", "1.00×ᵃ"), ("1.80ᵃ", "—", "1.11×ᵃ"), ("0.500", "—", "2.00×ᵃ"), ("1.60ᵃ", "—", "1.25×ᵃ")]
    others = [dict(zip(header, r)) for r in rows if r[0] != "benchmark_model"]
    assert others and all("ᵃ" not in c["p50 ms"] + c["speed-up"] and c["p10–p90 ms"] != "—" for c in others)
    assert "ᵃ mean: benchmark_model prints no median" in md.split(title, 1)[1]
    # A device whose lines all have percentiles gets no such note.
    laptop = md.split("on laptop (local): all configurations", 1)[1].split("**", 1)[0]
    assert "benchmark_model prints no median" not in laptop
    page = adb_rendered.html.read_text(encoding="utf-8")
    assert "1.00ᵃ (2.00×)" in page and "ᵃ mean: benchmark_model prints no median" in page


def test_null_percentiles_go_to_the_csv_as_empty_cells(adb_rendered) -> None:
    with adb_rendered.csv.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["runtime_name"] == "benchmark_model"]
    assert len(rows) == len(MECHANISMS)
    assert all(r["latency_ms_p10"] == r["latency_ms_p90"] == r["harness_overhead_ms"] == "" for r in rows)
    assert {r["mechanism"]: r["latency_ms_p50"] for r in rows}["efficient"] == "0.5"


def test_plot_draws_no_whisker_without_percentiles(tmp_path: Path, monkeypatch) -> None:
    from matplotlib.container import BarContainer, ErrorbarContainer

    from payattn.report import plots
    from payattn.report.results import as_results, latest

    figures = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figures.append(fig))
    results = latest(as_results(adb_lines()))
    plots.latency_plot(results, tmp_path / "latency.png")
    axes = {ax.get_title(): ax for ax in figures[0].axes}
    pixel, laptop = axes["pixel (adb)"], axes["laptop (local)"]
    bars = [c for c in pixel.containers if isinstance(c, BarContainer)]
    hatched = [c for c in bars if c.patches[0].get_hatch()]
    assert len(bars) == len(CONFIGS) * len(MECHANISMS) + len(MECHANISMS)
    # Hatched mean bars for the lines without a median; efficient's printed median is a plain bar.
    assert sorted(c.patches[0].get_height() for c in hatched) == sorted(
        m for k, m in ADB_MEANS.items() if k != "efficient")
    assert any(c.patches[0].get_height() == 0.5 and not c.patches[0].get_hatch() for c in bars)
    whiskers = [c for c in pixel.containers if isinstance(c, ErrorbarContainer)]
    assert len(whiskers) == len(CONFIGS) * len(MECHANISMS)
    assert len([c for c in laptop.containers if isinstance(c, ErrorbarContainer)]) == len(
        [c for c in laptop.containers if isinstance(c, BarContainer)])


def test_mean_and_max_stay_required() -> None:
    record = adb_line("standard")
    record["latency_ms"]["mean"] = None
    with pytest.raises(PayattnError, match=r"results:1: key 'latency_ms.mean' must be number, got null None"):
        headline_tables([record])


def test_sweeps_with_the_same_folder_name_get_their_own_pareto_plots(tmp_path: Path) -> None:
    from test_claims import make_sweep

    # Both sweeps' manifests record the same sha256s, so one set of bench lines ties to both.
    results = write_jsonl(tmp_path / "results.jsonl", make_sweep(tmp_path / "a" / "out"))
    make_sweep(tmp_path / "b" / "out")
    paths = report(results, tmp_path / "report", sweeps=[tmp_path / "a" / "out", tmp_path / "b" / "out"])
    pareto = sorted(p.name for p in paths.plots if p.name.startswith("pareto-"))
    assert pareto == ["pareto-out-laptop-2.png", "pareto-out-laptop.png", "pareto-out-pi5-2.png", "pareto-out-pi5.png"]
    assert all(p.is_file() for p in paths.plots)
    md = paths.md.read_text()
    assert all(f"(plots/{name})" in md for name in pareto)


def test_every_road_is_a_row_and_the_fastest_verified_road_is_named(tmp_path: Path) -> None:
    lines = []
    for mech in MECHANISMS:
        lines.append(line(mech, "laptop", "onnxruntime", "onnx", "fp32", "model.onnx"))
        lines.append(line(mech, "laptop", "litert", "tflite", "fp32", "model_fp32.tflite"))
        lt = line(mech, "laptop", "litert", "tflite", "fp32", "model_litert-torch_fp32.tflite",
                  p50=0.05 if mech == "efficient" else 0.5, minute=1)
        lt["artifact"].update(converter="litert-torch", parity={"max_abs_diff": 1.9e-6, "top1_agreement": 1.0})
        lines.append(lt)
    paths = report(write_jsonl(tmp_path / "results.jsonl", lines), tmp_path / "out")
    md = paths.md.read_text(encoding="utf-8")
    header, _ = table_rows(md, "mnist-5k / mnist-tiny: fp32, 1 thread")
    assert "laptop · onnx2tf → litert: p50 ms (speed-up)" in header  # both TFLite roads, not one
    assert "laptop · litert-torch → litert: p50 ms (speed-up)" in header
    header, rows = table_rows(md, "mnist-5k / mnist-tiny on laptop: every road, 1 thread")
    assert header[:3] == ["mechanism", "road (converter → runtime)", "precision"]
    assert len(rows) == 12 and {r[1] for r in rows} == {"onnx2tf → litert", "litert-torch → litert",
                                                        "torch.onnx → onnxruntime"}
    efficient = {r[1]: r for r in rows if r[0] == "efficient"}
    assert efficient["litert-torch → litert"][6] == "1.00×"  # its own fastest road
    assert efficient["litert-torch → litert"][5] == "10.00×"  # standard's 0.5 over 0.05, same road
    assert efficient["litert-torch → litert"][7] == "1.9e-06 · 100.0%"
    assert efficient["onnx2tf → litert"][7] == "—"  # a line from before results carried parity
    fastest = md.split("Fastest verified road: ", 1)[1].split(". ", 1)[0]
    assert "efficient: litert-torch → litert fp32 (0.0500 ms)" in fastest


# ---- the phone's GPU beside its CPU -------------------------------------------------------------

def gpu_line(mech: str, mean: float, partial: bool) -> dict[str, Any]:
    """A GPU-delegate line as payattn.devices.adb writes it (partial: the delegate took 63 of 64)."""
    record = adb_line(mech)
    record["accelerator"] = "gpu"
    record["latency_ms"] = {**record["latency_ms"], "mean": mean, "min": mean * 0.8, "max": mean * 1.5}
    nodes = 63 if partial else 64
    record["delegation"] = {"status": "partial" if partial else "full", "nodes_delegated": nodes, "nodes_total": 64,
                            "partitions": 2 if partial else 1, "unsupported": ["GATHER: Operation is not supported."]
                            if partial else [], "evidence": f"Replacing {nodes} out of 64 node(s) with delegate"}
    return record


def test_gpu_is_a_column_beside_the_cpu_and_partial_cells_say_so(tmp_path: Path) -> None:
    from payattn.report.results import as_results
    from payattn.report.tables import latency_tables

    cpu = [{**adb_line(m), "accelerator": "cpu"} for m in MECHANISMS]
    gpu = [gpu_line(m, ADB_MEANS[m] / 4, partial=m == "efficient") for m in MECHANISMS]
    table = headline_tables(synthetic_lines() + cpu + gpu)[0]
    columns = [c for c in table.columns if c.startswith("pixel · benchmark_model")]
    assert columns == ["pixel · benchmark_model: p50 ms (speed-up)", "pixel · benchmark_model gpu: p50 ms (speed-up)"]
    assert table.columns.index(columns[1]) == table.columns.index(columns[0]) + 1  # side by side
    cells = {row[0]: row[table.columns.index(columns[1])] for row in table.rows}
    assert cells == {"standard": "0.500ᵃ (1.00×)", "optimised": "0.450ᵃ (1.11×)", "efficient": "0.250ᵃᵖ (2.00×)",
                     "super": "0.400ᵃ (1.25×)"}
    assert {row[0]: row[table.columns.index(columns[0])] for row in table.rows}["standard"] == "2.00ᵃ (1.00×)"
    assert "ᵖ partial: benchmark_model's GPU delegate took only part of the graph" in table.note
    detail = next(t for t in latency_tables(as_results(synthetic_lines() + cpu + gpu)) if "on pixel" in t.title)
    assert [row[0] for row in detail.rows if "benchmark_model" in row[0]] == \
        ["benchmark_model"] * 4 + ["benchmark_model gpu"] * 4
    assert "ᵖ partial" in detail.note
    # a CPU-only table gets no such note
    assert "ᵖ" not in headline_tables(synthetic_lines() + cpu)[0].note


def test_csv_carries_accelerator_delegation_and_binary(tmp_path: Path) -> None:
    lines = synthetic_lines() + [{**gpu_line("standard", 0.5, partial=True),
                                  "runtime": {"name": "benchmark_model", "version": "litert-2.3.0",
                                              "graph_optimization": None, "sha256": "ab" * 32}}]
    paths = report(write_jsonl(tmp_path / "results.jsonl", lines), tmp_path / "out")
    with paths.csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["accelerator"] == "" and rows[-1]["accelerator"] == "gpu"  # older lines: absent, i.e. cpu
    assert rows[-1]["delegation_status"] == "partial" and rows[-1]["runtime_sha256"] == "ab" * 32
    assert json.loads(rows[-1]["delegation_unsupported"]) == ["GATHER: Operation is not supported."]
    assert "benchmark_model gpu litert-2.3.0 (sha256 abababababab)" in paths.md.read_text(encoding="utf-8")
