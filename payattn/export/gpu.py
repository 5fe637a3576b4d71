"""GPU-delegate compatibility of a .tflite, as LiteRT's own model analyzer reports it.

The analyzer (the one behind TensorFlow's `tf.lite.experimental.Analyzer.analyze(...,
gpu_compatibility=True)`, shipped in ai_edge_litert without TensorFlow) checks each operator
against the GPU delegate's rules and prints a report: a "GPU COMPATIBILITY WARNING" line per
issue, or that the model "looks compatible". It is a static check; no GPU runs the file.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

COMPATIBLE = "looks compatible with GPU delegate"
ISSUE = "GPU COMPATIBILITY WARNING"


def report(path: Path) -> dict[str, Any]:
    """The manifest's `gpu` entry of one .tflite file."""
    from ai_edge_litert import _pywrap_analyzer_wrapper as analyzer

    text = analyzer.ModelAnalyzer(str(path), True, True)  # a file path; with GPU checks
    return parse(text)


def parse(text: str) -> dict[str, Any]:
    """Whether the analyzer found the model compatible, and each issue it names."""
    issues = [line.split(ISSUE, 1)[1].lstrip(": ").strip() for line in text.splitlines() if ISSUE in line]
    return {"compatible": COMPATIBLE in text and not issues, "issues": issues,
            "analyzer": f"LiteRT ModelAnalyzer (ai-edge-litert {metadata.version('ai-edge-litert')})"}
