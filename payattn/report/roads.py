"""The roads view: every way from PyTorch to a measured call, side by side, per device.

A road is converter → runtime (onnx2tf → litert, litert-torch → litert, torch.onnx →
onnxruntime, executorch → executorch). For one task × preset and device, each mechanism gets a
row per road and precision: file size, p50, the speed-up over standard on the same road, the
ratio to the mechanism's fastest verified road, and the export's parity with PyTorch. Only the
headline thread count is shown, so every ratio compares like with like.
"""

from __future__ import annotations

from payattn.mechanisms import MECHANISMS
from payattn.report.results import PRECISIONS, Result
from payattn.report.tables import (DASH, Table, devices, fmt_bytes, fmt_ms, fmt_ratio, headline_config,
                                   ordered, speedup, typical_ms)

ROAD_ORDER = ("onnx2tf → litert", "litert-torch → litert", "torch.onnx → onnxruntime",
              "executorch → executorch")


def roads(results: list[Result]) -> list[str]:
    return ordered((r.road for r in results), ROAD_ORDER)


def parity_cell(result: Result) -> str:
    parity = result.data["artifact"].get("parity")
    if not parity:
        return DASH
    return f"{parity['max_abs_diff']:.1e} · {parity['top1_agreement']:.1%}"


def fastest(rows: list[Result]) -> Result | None:
    """The line with the lowest typical latency (p50, or the mean where there is none). Every
    benched file is verified: export writes only files that passed its checks against PyTorch."""
    return min(rows, key=lambda r: typical_ms(r)[0]) if rows else None


def roads_table(results: list[Result], device: str) -> Table:
    """One task × preset on one device: mechanism × road × precision at the headline threads."""
    task, preset = results[0].group
    _, threads = headline_config(results)
    here = [r for r in results if r.device == device and r.threads == threads]
    rows, best = [], {}
    for m in ordered((r.mechanism for r in here), MECHANISMS):
        mine = [r for r in here if r.mechanism == m]
        best[m] = fastest(mine)
        for road in roads(mine):
            for precision in ordered((r.precision for r in mine if r.road == road), PRECISIONS):
                r = next(x for x in mine if (x.road, x.precision) == (road, precision))
                base = next((x for x in here if x.mechanism == "standard"
                             and (x.road, x.precision) == (road, precision)), None)
                ms, _ = typical_ms(r)
                rows.append([m, road, precision, fmt_bytes(r.data["artifact"]["bytes"]), fmt_ms(ms),
                             speedup(r, base)[0],
                             fmt_ratio(ms, typical_ms(best[m])[0]) if best[m] else DASH,
                             parity_cell(r)])
    plural = "s" if threads != 1 else ""
    return Table(
        title=f"{task} / {preset} on {device}: every road, {threads} thread{plural}",
        columns=["mechanism", "road (converter → runtime)", "precision", "size", "p50 ms",
                 "speed-up over standard (same road)", "× the fastest road", "parity (max |Δ| · top-1)"],
        rows=rows, left={0, 1, 2},
        note=f"Fastest verified road: {fastest_roads(best)}. " + ROADS_NOTE,
    )


ROADS_NOTE = ("p50 per inference (the mean where the tool gives no median); speed-up is standard's "
              "latency over the mechanism's on the same road and precision; × the fastest road is "
              "this line's latency over the mechanism's fastest verified line on this device; parity "
              "is the export's check against PyTorch (largest logit difference, top-1 agreement).")


def fastest_roads(best: dict[str, Result | None]) -> str:
    parts = [f"{m}: {r.road} {r.precision} ({fmt_ms(typical_ms(r)[0])} ms)"
             for m, r in best.items() if r is not None]
    return "; ".join(parts) or DASH


def roads_tables(results: list[Result]) -> list[Table]:
    """A roads table per device, for a task × preset measured along more than one road."""
    if len(roads(results)) < 2:
        return []
    return [roads_table(results, d) for d in devices(results)]
