"""The roads from a trained model to a device file: one table entry per converter.

onnx2tf converts model.onnx (and a vision model's app form) to TFLite; litert-torch converts the
PyTorch module itself, through torch.export; ExecuTorch lowers it, through torch.export too, to
a .pte program on XNNPACK (the model as trained only: the app form is a TFLite file's). Each road's module has one `convert` that writes
one file per precision into the export's temp dir and returns them by precision, a precision it
could not make as the reason instead of a path. Everything after conversion (operators,
metadata, verification, manifest) is the same for every road.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from payattn.config import ModelConfig
from payattn.errors import PayattnError
from payattn.export.appform import Variant
from payattn.export.onnx_graph import AppVisionGraph, example_input
from payattn.export.tflite import TFLITE_FILES
from payattn.mechanisms import parse_converters
from payattn.runtime.runners import quiet_library_logs

Made = dict[str, "Path | str"]  # precision -> its file, or why the road left it out


@dataclass(frozen=True)
class Road:
    """One converter: the module whose `convert` makes its files, what it converts ("onnx":
    the ONNX graph; "torch": the PyTorch module) and the tag its file names carry."""

    converter: str  # as manifests and result lines name it
    module: str  # payattn.export.<module>, imported when the road is taken
    source: str
    tag: str = ""  # model_<tag>_fp32.tflite; none keeps the first road's names
    suffix: str = ".tflite"
    app_form: bool = True  # also converts a vision model's app form (RGB pixels in)

    def prefix(self, graph: str) -> str:
        """File-name prefix of this road's files for a graph ("model" or "model_app")."""
        return f"{graph}_{self.tag}" if self.tag else graph


ROADS = {road.converter: road for road in (
    Road("onnx2tf", "tflite", "onnx"),
    Road("litert-torch", "litert_road", "torch", "litert-torch"),
    Road("executorch", "executorch_road", "torch", suffix=".pte", app_form=False),
)}


def choose_roads(converters: str | Iterable[str]) -> list[str]:
    """The roads to take, checked: "all" is every road this payattn has."""
    if isinstance(converters, str) and converters.strip().lower() == "all":
        return list(ROADS)
    names = parse_converters(converters)
    missing = [name for name in names if name not in ROADS]
    if missing:
        raise PayattnError(f"--converter {missing[0]}: this payattn has no {missing[0]} road yet; "
                           f"choose {', '.join(ROADS)} or all")
    return names


def file_name(prefix: str, precision: str, suffix: str = ".tflite") -> str:
    """e.g. model_litert-torch_dynamic_int8.tflite: precisions spelled as in onnx2tf's names."""
    return TFLITE_FILES[precision].replace("model", prefix, 1).removesuffix(".tflite") + suffix


def file_names() -> list[str]:
    """Every file name a road can write, as trained and in the app form."""
    return [file_name(road.prefix(graph), precision, road.suffix) for road in ROADS.values()
            for graph in ("model", "model_app")[:2 if road.app_form else 1] for precision in TFLITE_FILES]


def make(road: Road, model: nn.Module, cfg: ModelConfig, variant: Variant, out_dir: Path,
         precisions: list[str], calibration: np.ndarray | None) -> Made:
    """Convert one graph by `road` into `out_dir`; every precision asked for gets its file or
    the reason it has none."""
    quiet_library_logs()
    module = importlib.import_module(f"payattn.export.{road.module}")
    prefix, inputs = road.prefix(variant.prefix), variant.inputs(calibration)
    if road.source == "onnx":
        made = module.convert(variant.onnx, out_dir, precisions, inputs, name_prefix=prefix)
    else:
        with warnings.catch_warnings():  # the converters' own use of an API torch deprecates
            warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
            made = module.convert(torch_graph(model, variant), example_input(cfg, variant.app),
                                  out_dir, precisions, inputs, prefix)
    reasons = module.left_out(precisions) if hasattr(module, "left_out") else {}
    return {p: made.get(p, reasons.get(p, f"{road.converter} made no file for it")) for p in precisions}


def torch_graph(model: nn.Module, variant: Variant) -> nn.Module:
    """The PyTorch module a torch road converts: the model as trained, or its app form with the
    same in-graph normalisation as the ONNX app form."""
    if not variant.app:
        return model.eval()
    return AppVisionGraph(model, variant.mean, variant.std, unbatched=False).eval()
