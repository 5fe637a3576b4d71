"""The report's tables, built once as plain rows of strings and rendered to Markdown or HTML.

Speed-ups are standard's p50 over the mechanism's p50 on the same task, preset, device,
runtime, precision and thread count. Where either side has no median (benchmark_model prints
none), both sides use the mean instead and the cell is marked, so a ratio never mixes
statistics; anything not measured prints as "—".
"""

from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from payattn.mechanisms import MECHANISMS
from payattn.report.results import DEVICE_KINDS, FORMATS, PRECISIONS, RUNTIMES, Result
from payattn.runtime.formats import CONVERTERS

DASH = "—"
MEAN_MARK = "ᵃ"
HARNESS_NOTE = ("harness p50 ms: the same call on a do-nothing model with the same inputs in the same "
                "runtime, the binding's own share of every p50.")
PARTIAL_MARK = "ᵖ"
PARTIAL_NOTE = (f"{PARTIAL_MARK} partial: benchmark_model's GPU delegate took only part of the graph and "
                "the rest ran on the CPU; the result line's delegation names the refused operators.")
MEAN_NOTE = (f"{MEAN_MARK} mean: benchmark_model prints no median, so the mean stands in for p50 and "
             "a marked speed-up compares means on both sides.")


@dataclass(frozen=True)
class Table:
    """A titled grid of strings: Markdown, HTML and a rich.Table can all be made from it."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    left: set[int] = field(default_factory=lambda: {0})  # left-aligned columns; others right

    def to_markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        rule = ["---" if i in self.left else "--:" for i in range(len(self.columns))]
        body = [line(self.columns), "|" + "|".join(rule) + "|", *(line(r) for r in self.rows)]
        return "\n".join(body)

    def to_html(self) -> str:
        def cells(tag: str, values: Sequence[str]) -> str:
            return "".join(f'<{tag} class="{"l" if i in self.left else "r"}">{html.escape(v)}</{tag}>'
                           for i, v in enumerate(values))

        rows = "".join(f"<tr>{cells('td', r)}</tr>" for r in self.rows)
        return f"<table><thead><tr>{cells('th', self.columns)}</tr></thead><tbody>{rows}</tbody></table>"


# ---- formatting -------------------------------------------------------------------------

def fmt_ms(x: float) -> str:
    """Three significant digits without exponent: 0.0523, 1.23, 12.3, 123, 1234."""
    if x <= 0:
        return "0"
    return f"{x:.{max(0, 2 - math.floor(math.log10(x)))}f}"


def fmt_bytes(n: int) -> str:
    """Binary units, as everywhere payattn prints a size: B, KiB, MiB, GiB."""
    if n < 2**10:
        return f"{n} B"
    if n < 2**20:
        return f"{n / 2**10:.1f} KiB"
    return f"{n / 2**20:.2f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def fmt_ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return DASH
    return f"{numerator / denominator:.2f}×"


def fmt_accuracy(values: Iterable[float | None]) -> str:
    known = sorted({v for v in values if v is not None})
    if not known:
        return DASH
    return f"{known[0]:.2%}" if len(known) == 1 else f"{known[0]:.2%}–{known[-1]:.2%}"


# ---- ordering ---------------------------------------------------------------------------

def ordered(values: Iterable[str], known: Sequence[str]) -> list[str]:
    """Distinct values, known ones in their canonical order first, the rest alphabetically."""
    return sorted(set(values), key=lambda v: (known.index(v) if v in known else len(known), v))


def groups(results: list[Result]) -> list[tuple[str, str]]:
    """Task × preset pairs in the order they first appear."""
    return list(dict.fromkeys(r.group for r in results))


def devices(results: list[Result]) -> list[str]:
    """Device names, local first, then ssh, then adb, each kind in order of appearance."""
    kinds = {r.device: r.data["device"]["kind"] for r in results}
    names = list(dict.fromkeys(r.device for r in results))
    return sorted(names, key=lambda d: (DEVICE_KINDS.index(kinds[d]), names.index(d)))


def emulated_by(results: list[Result]) -> dict[str, str]:
    """Device name -> what emulated it (result lines' device.emulated), for emulated devices only."""
    return {r.device: r.data["device"]["emulated"] for r in results if r.data["device"].get("emulated")}


def device_label(device: str, emulated: dict[str, str]) -> str:
    return f"{device} (emulated)" if device in emulated else device


EMULATED_NOTE = ("Devices marked (emulated) ran under an emulator: their latencies are the emulator's, "
                 "never the board's.")


def artifact_kinds(results: list[Result]) -> list[tuple[str, str]]:
    return sorted({(r.file_format, r.precision) for r in results},
                  key=lambda k: (FORMATS.index(k[0]), PRECISIONS.index(k[1])))


def headline_config(results: list[Result]) -> tuple[str, int]:
    """fp32 with one thread if it was measured, else the most measured precision × threads."""
    counts = Counter((r.precision, r.threads) for r in results)
    if ("fp32", 1) in counts:
        return "fp32", 1
    return min(counts, key=lambda k: (-counts[k], PRECISIONS.index(k[0]), k[1]))


def _pick(results: Iterable[Result], pred: Callable[[Result], bool]) -> Result | None:
    """The latest of the results matching pred (inputs are already one line per configuration)."""
    found = [r for r in results if pred(r)]
    return max(found, key=lambda r: (r.when, r.line)) if found else None


def _at(results: list[Result], mechanism: str, config: tuple[str, str, str, int, str]) -> Result | None:
    return _pick(results, lambda r: r.mechanism == mechanism and r.config == config)


def typical_ms(result: Result) -> tuple[float, bool]:
    """The line's p50, or its mean where no median was reported (then True: mark it)."""
    p50 = result.latency("p50")
    return (p50, False) if p50 is not None else (float(result.data["latency_ms"]["mean"]), True)


def partial_mark(result: Result) -> str:
    """ᵖ where the GPU delegate took only part of the graph, so no such cell passes for all-GPU."""
    return PARTIAL_MARK if result.get("delegation.status") == "partial" else ""


def ratio_stat(*results: Result | None) -> str:
    """The statistic both sides of a ratio use: p50, or the mean where any line (None: absent) has
    no median, so a ratio never mixes statistics."""
    return "mean" if any(r is not None and r.latency("p50") is None for r in results) else "p50"


def speedup(result: Result, base: Result | None) -> tuple[str, bool]:
    """Standard's latency over the mechanism's in the statistic ratio_stat picks (True: means, mark it)."""
    stat = ratio_stat(result, base)
    return fmt_ratio(base.latency(stat) if base else None, result.latency(stat)), stat == "mean"


# ---- tables -----------------------------------------------------------------------------

def headline(results: list[Result]) -> Table:
    """Table 5 of the paper for one task × preset: one row per mechanism, the common configuration;
    latency and speed-up first, then the FLOP model, accuracy and parameters (sizes: artifact_table)."""
    task, preset = results[0].group
    precision, threads = headline_config(results)
    mechs = ordered((r.mechanism for r in results), MECHANISMS)
    at_config = [r for r in results if (r.precision, r.threads) == (precision, threads)]
    columns = headline_columns(at_config)
    # Parameters and FLOPs belong to the model, so any line of the mechanism (the newest) has them.
    newest = {m: max((r for r in results if r.mechanism == m), key=lambda r: (r.when, r.line)) for m in mechs}
    standard = newest.get("standard")
    rows, marked, partial = [], False, False
    for m in mechs:
        row = [m]
        for device, runtime, converter in columns:
            config = (device, runtime, precision, threads, converter)
            r, base = _at(at_config, m, config), _at(at_config, "standard", config)
            if r is None:
                row.append(DASH)
                continue
            ratio, means = speedup(r, base)
            marked |= means
            shown = float(r.data["latency_ms"]["mean" if means else "p50"])
            partial |= bool(partial_mark(r))
            row.append(f"{fmt_ms(shown)}{MEAN_MARK if means else ''}{partial_mark(r)} ({ratio})")
        row += [fmt_ratio(standard.data["flops"] if standard else None, newest[m].data["flops"]),
                fmt_accuracy(r.data["test_accuracy"] for r in at_config if r.mechanism == m),
                f"{newest[m].data['params']:,}", f"{newest[m].data['attention_params']:,}"]
        rows.append(row)
    emulated = emulated_by(at_config)
    header = (["mechanism"] + [f"{device_label(d, emulated)} · {runtime_label(rt, c, at_config)}: p50 ms "
                               "(speed-up)" for d, rt, c in columns]
              + ["FLOP-model speed-up", f"test accuracy ({precision})", "params", "attention params"])
    plural = "s" if threads != 1 else ""
    return Table(
        title=f"{task} / {preset}: {precision}, {threads} thread{plural}",
        columns=header, rows=rows,
        note=(f"p50 latency in ms per inference at {precision} with {threads} thread{plural}; in "
              "brackets the measured speed-up versus standard on the same device and runtime. "
              "FLOP-model speed-up: standard's FLOPs over the mechanism's (payattn.cost). File sizes "
              "are in the artifacts table; other precisions and thread counts, p99 and peak memory "
              "in the detail tables."
              + (f" {MEAN_NOTE}" if marked else "") + (f" {PARTIAL_NOTE}" if partial else "")
              + (f" {EMULATED_NOTE}" if emulated else "")),
    )


def headline_columns(at_config: list[Result]) -> list[tuple[str, str, str]]:
    """The (device, runtime, converter) triples measured at the headline configuration, in
    report order (converters in the order of their roads)."""
    return [(d, rt, c) for d in devices(at_config)
            for rt in ordered((r.runtime for r in at_config if r.device == d), RUNTIMES)
            for c in ordered((r.converter for r in at_config if (r.device, r.runtime) == (d, rt)),
                             CONVERTERS)]


def runtime_label(runtime: str, converter: str, results: list[Result]) -> str:
    """The runtime, or the whole road where files of several converters ran on that runtime."""
    several = len({r.converter for r in results if r.runtime == runtime}) > 1
    return f"{converter} → {runtime}" if several else runtime


def verdict(results: list[Result]) -> str:
    """One sentence for one task × preset: which mechanism was fastest against standard, by how
    much and where, at the headline configuration, and what it gives up in accuracy."""
    task, preset = results[0].group
    precision, threads = headline_config(results)
    at_config = [r for r in results if (r.precision, r.threads) == (precision, threads)]
    where = f"{task} / {preset} at {precision}, {threads} thread{'s' if threads != 1 else ''}"
    ratios: dict[str, list[float]] = {}
    for device, runtime, converter in headline_columns(at_config):
        config = (device, runtime, precision, threads, converter)
        base = _at(at_config, "standard", config)
        for m in MECHANISMS[1:]:
            r = _at(at_config, m, config)
            if r is not None and base is not None:
                stat = ratio_stat(r, base)
                ratios.setdefault(m, []).append(base.latency(stat) / r.latency(stat))
    if not ratios:
        return f"On {where}, no mechanism was measured beside standard, so there is no speed-up to report."
    best = max(ratios, key=lambda m: math.prod(ratios[m]) ** (1 / len(ratios[m])))
    low, high = min(ratios[best]), max(ratios[best])
    span = f"{low:.2f}×" if round(low, 2) == round(high, 2) else f"{low:.2f}–{high:.2f}×"
    pairs = len(ratios[best])
    accuracy = {m: fmt_accuracy(r.data["test_accuracy"] for r in at_config if r.mechanism == m)
                for m in (best, "standard")}
    return (f"On {where}, {best} is the fastest mechanism, {span} as fast as standard (p50) on "
            f"{pairs} device × runtime pair{'s' if pairs != 1 else ''}, at test accuracy "
            f"{accuracy[best]} against standard's {accuracy['standard']}.")


def latency_tables(results: list[Result]) -> list[Table]:
    """Every measured configuration of one task × preset, one table per device."""
    task, preset = results[0].group
    tables = []
    emulated = emulated_by(results)
    for device in devices(results):
        on_device = [r for r in results if r.device == device]
        kind = on_device[0].data["device"]["kind"]
        rows, marked, partial = [], False, False
        for r in sorted(on_device, key=lambda r: (
                RUNTIMES.index(r.runtime) if r.runtime in RUNTIMES else len(RUNTIMES), r.runtime,
                PRECISIONS.index(r.precision), r.threads, MECHANISMS.index(r.mechanism))):
            typical, typical_is_mean = typical_ms(r)
            ratio, ratio_is_mean = speedup(r, _at(on_device, "standard", r.config))
            p10, p90 = r.latency("p10"), r.latency("p90")
            marked |= typical_is_mean or ratio_is_mean
            partial |= bool(partial_mark(r))
            p99, peak, harness = r.latency("p99"), r.data["peak_memory_bytes"], r.get("harness_ms.p50")
            rows.append([runtime_label(r.runtime, r.converter, on_device), r.precision, str(r.threads), r.mechanism,
                         fmt_ms(typical) + (MEAN_MARK if typical_is_mean else "") + partial_mark(r),
                         DASH if p10 is None or p90 is None else f"{fmt_ms(p10)}–{fmt_ms(p90)}",
                         DASH if p99 is None else fmt_ms(p99),
                         ratio + (MEAN_MARK if ratio_is_mean and ratio != DASH else ""),
                         DASH if peak is None else fmt_bytes(peak),
                         DASH if harness is None else fmt_ms(harness),
                         fmt_ms(r.data["init_ms"]), str(r.data["runs"]), r.when.strftime("%Y-%m-%d %H:%M")])
        where = f"{kind}, emulated by {emulated[device]}" if device in emulated else kind
        tables.append(Table(
            title=f"{task} / {preset} on {device} ({where}): all configurations",
            columns=["runtime", "precision", "threads", "mechanism", "p50 ms", "p10–p90 ms", "p99 ms",
                     "speed-up", "peak memory", "harness p50 ms", "init ms", "runs", "measured (UTC)"],
            rows=rows, note=" ".join(n for n in (MEAN_NOTE if marked else "", PARTIAL_NOTE if partial else "",
                                                  HARNESS_NOTE,
                                                  EMULATED_NOTE if device in emulated else "") if n),
            left={0, 1, 3}))
    return tables


def artifact_table(results: list[Result]) -> Table:
    """Size and accuracy of each artifact of one task × preset, size relative to standard's."""
    task, preset = results[0].group
    rows = []
    for m in ordered((r.mechanism for r in results), MECHANISMS):
        for kind in artifact_kinds(results):  # (file format, precision)
            art = _pick(results, lambda r: r.mechanism == m and (r.file_format, r.precision) == kind)
            if art is None:
                continue
            std = _pick(results, lambda r: r.mechanism == "standard" and (r.file_format, r.precision) == kind)
            size = art.data["artifact"]["bytes"]
            rows.append([m, *kind, art.data["artifact"]["file"], fmt_bytes(size),
                         fmt_ratio(size, std.data["artifact"]["bytes"] if std else None),
                         fmt_accuracy([art.data["test_accuracy"]]), art.data["artifact"]["sha256"][:12]])
    return Table(title=f"{task} / {preset}: artifacts",
                 columns=["mechanism", "format", "precision", "file", "size", "size vs standard",
                          "test accuracy", "sha256"],
                 rows=rows, left={0, 1, 2, 3, 7})


def profile_table(results: list[Result], top: int = 4) -> Table | None:
    """Per artifact and runtime measured with `bench --profile`: the operator types that took most
    of the time, and the attention layers' share of it. None when no line has a profile."""
    rows = []
    for r in sorted((r for r in results if r.data.get("profile")),
                    key=lambda r: (MECHANISMS.index(r.mechanism) if r.mechanism in MECHANISMS else 99,
                                   r.device, r.runtime, r.precision, r.threads)):
        profile = r.data["profile"]
        if profile["source"] is None:
            ops, share = f"none: {profile['note']}", DASH
        else:
            ops = ", ".join(f"{o['op']} {o['share']:.0%}" for o in profile["operators"][:top])
            share = DASH if profile["attention_share"] is None else f"{profile['attention_share']:.0%}"
        rows.append([r.mechanism, r.device, r.runtime, r.precision, str(r.threads), share, ops])
    if not rows:
        return None
    task, preset = results[0].group
    return Table(title=f"{task} / {preset}: time per operator",
                 columns=["mechanism", "device", "runtime", "precision", "threads", "attention share",
                          f"top {top} operator types (share of operator time)"],
                 rows=rows, left={0, 1, 2, 3, 6},
                 note="From a profiling pass after the timed runs (bench --profile): each node's median "
                      "over the profiled runs. ONNX Runtime times nodes in whole µs, so on small models "
                      "every short node weighs about the same.")


def _distinct(values: Iterable[object]) -> str:
    shown = list(dict.fromkeys(str(v) for v in values if v is not None))
    return ", ".join(shown) if shown else DASH


def _span(values: Sequence[Any], fmt: Callable[[Any], str]) -> str:
    if not values:
        return DASH
    low, high = min(values), max(values)
    return fmt(low) if low == high else f"{fmt(low)}–{fmt(high)}"


def conditions_table(results: list[Result]) -> Table:
    """Where and how each device measured: hardware, software, run counts, time span."""
    names = devices(results)
    fields: list[tuple[str, Callable[[list[Result]], str]]] = [
        ("kind", lambda rs: _distinct(r.data["device"]["kind"] for r in rs)),
        ("CPU", lambda rs: _distinct(r.data["device"]["cpu"] for r in rs)),
        ("cores", lambda rs: _distinct(r.data["device"]["cores"] for r in rs)),
        ("OS", lambda rs: _distinct(r.data["device"]["os"] for r in rs)),
        ("arch", lambda rs: _distinct(r.data["device"]["arch"] for r in rs)),
        ("emulated", lambda rs: _distinct(
            f"yes: {r.data['device']['emulated']} (not the board's latency)" if r.data["device"].get("emulated")
            else "no" for r in rs)),
        ("memory", lambda rs: _distinct(fmt_bytes(r.data["device"]["memory_bytes"]) for r in rs
                                        if r.data["device"]["memory_bytes"] is not None)),
        ("runtimes", lambda rs: _distinct(
            f"{r.runtime} {r.data['runtime']['version']}"
            + (f" (graph optimisation {r.data['runtime']['graph_optimization']})"
               if r.data["runtime"]["graph_optimization"] else "")
            + (f" (sha256 {r.data['runtime']['sha256'][:12]})" if r.get("runtime.sha256") else "")
            for r in rs)),
        ("threads", lambda rs: _distinct(sorted({r.threads for r in rs}))),
        ("warm-up runs", lambda rs: _span([r.data["warmup_runs"] for r in rs], str)),
        ("measured runs", lambda rs: _span([r.data["runs"] for r in rs], str)),
        ("harness overhead ms", lambda rs: _span(
            [r.data["harness_overhead_ms"] for r in rs if r.data["harness_overhead_ms"] is not None], fmt_ms)),
        ("payattn", lambda rs: _distinct(r.data["payattn_version"] for r in rs)),
        ("git commit", lambda rs: _distinct(
            r.data["git_commit"][:12] if r.data["git_commit"] else None for r in rs)),
        ("measured (UTC)", lambda rs: _span([r.when for r in rs], lambda t: t.strftime("%Y-%m-%d %H:%M"))),
        ("result lines used", lambda rs: str(len(rs))),
    ]
    per_device = {d: [r for r in results if r.device == d] for d in names}
    rows = [[label, *(get(per_device[d]) for d in names)] for label, get in fields]
    return Table(title="", columns=["", *names], rows=rows,
                 left=set(range(len(names) + 1)))
