"""Make a converted .tflite app-ready, and read back what an app runtime will see in it.

`finish(path, spec)` rewrites the converter's file once, with:
- tensor names: the converter's internal scopes dropped (debugging text that makes up
  several percent of a small model), the input kept, the output named as in ONNX;
- a `serving_default` SignatureDef (input name -> output name), which LiteRT's
  `CompiledModel` and `Interpreter.get_signature_runner()` run by;
- TFLite Metadata (schema `metadata_schema.fbs`, built with the generated Python code that
  MediaPipe ships): name, description, version, licence, the input's normalisation and
  colour space or its regex tokenizer and vocabulary, the class labels as
  TENSOR_AXIS_LABELS and the output as raw logits; the minimum metadata parser version is
  computed here by the rules of MediaPipe's metadata_version.cc;
- the associated files (labels.txt, vocab.txt) appended as an uncompressed zip archive, as
  the metadata format specifies, so the file stays one flatbuffer followed by a zip;
- every constant buffer aligned to 64 bytes, so a runtime can use a memory-mapped file in
  place instead of copying unaligned weights.
The operators and weights are untouched: the caller checks that outputs stay bit-identical.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from payattn.errors import PayattnError
from payattn.files import write_file_atomic
from payattn.runtime.flatbuffer import Malformed, check
from payattn.runtime.readers import check_tflite

SIGNATURE_KEY = "serving_default"
METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
BUFFER_ALIGNMENT = 64  # LiteRT's host-memory alignment; XNNPACK needs 16
LABELS_FILE, VOCAB_FILE = "labels.txt", "vocab.txt"
INSPECT_FIX = "pass a .tflite file from an artifact dir, or export it again with `payattn export`"


@cache
def metadata_schema() -> ModuleType:
    """MediaPipe's generated metadata schema module, loaded from its file on its own.

    Importing it through the `mediapipe` package would import all of MediaPipe Tasks (and
    TensorFlow with it) for one flatbuffers module that needs only `flatbuffers`.
    """
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise PayattnError("writing TFLite Metadata needs the mediapipe package; "
                           "reinstall payattn (pip install -e .)")
    path = Path(spec.submodule_search_locations[0]) / "tasks" / "metadata" / "metadata_schema_py_generated.py"
    loader = importlib.util.spec_from_file_location("payattn._metadata_schema", path)
    if loader is None or not path.is_file():
        raise PayattnError(f"mediapipe has no metadata schema at {path}; install mediapipe>=0.10.21")
    module = importlib.util.module_from_spec(loader)
    sys.modules[loader.name] = module
    loader.loader.exec_module(module)
    return module


@dataclass
class AppSpec:
    """What the metadata states. Vision: `mean`/`std` per input channel on the 0-255 pixel
    scale an app's camera frame has. Text: the vocabulary file and the delimiter regex."""

    name: str
    description: str
    version: str
    license: str
    input_name: str
    output_name: str
    labels: list[str]
    color_space: str | None = None  # "RGB" or "GRAYSCALE"
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    vocab_file: str | None = None
    delimiter_re2: str | None = None


def finish(path: Path, spec: AppSpec) -> None:
    """Rewrite `path` in place (atomically) as described in the module docstring."""
    path = Path(path)
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    main = model.subgraphs[0]  # the entry point; others would be control-flow bodies
    if len(main.inputs) != 1 or len(main.outputs) != 1:
        raise PayattnError(f"{path.name} has {len(main.inputs)} inputs and {len(main.outputs)} "
                           "outputs; payattn's models have one of each")
    for graph in model.subgraphs:
        for index, tensor in enumerate(graph.tensors):
            if index not in graph.inputs:
                tensor.name = None
    main.tensors[main.inputs[0]].name = spec.input_name.encode()
    main.tensors[main.outputs[0]].name = spec.output_name.encode()
    model.signatureDefs = [schema.SignatureDefT(
        inputs=[schema.TensorMapT(spec.input_name, main.inputs[0])],
        outputs=[schema.TensorMapT(spec.output_name, main.outputs[0])],
        signatureKey=SIGNATURE_KEY, subgraphIndex=0,
    )]
    model.buffers.append(schema.BufferT(data=build_metadata(spec)))
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()]
    model.metadata.append(schema.MetadataT(METADATA_NAME, len(model.buffers) - 1))
    files = {LABELS_FILE: "".join(f"{label}\n" for label in spec.labels)}
    if spec.vocab_file is not None:
        files[VOCAB_FILE] = spec.vocab_file
    archive = io.BytesIO()
    archive.write(_pack_aligned(model))
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_STORED) as zf:
        for name, text in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), text.encode())
    write_file_atomic(path, archive.getvalue())


def build_metadata(spec: AppSpec) -> bytes:
    """The ModelMetadata flatbuffer (file identifier M001) for one model."""
    md = metadata_schema()
    if spec.vocab_file is not None:
        tokenizer = md.ProcessUnitT()
        tokenizer.optionsType = md.ProcessUnitOptions.RegexTokenizerOptions
        tokenizer.options = md.RegexTokenizerOptionsT()
        tokenizer.options.delimRegexPattern = spec.delimiter_re2
        tokenizer.options.vocabFile = [md.AssociatedFileT(
            VOCAB_FILE, "one 'spelling id' pair per line", md.AssociatedFileType.VOCABULARY)]
        tensor_in = md.TensorMetadataT(
            name=spec.input_name, description="token ids of one text, padded with <PAD> (0)",
            content=_content(md, md.FeaturePropertiesT()), processUnits=[tokenizer])
    else:
        image = md.ImagePropertiesT()
        image.colorSpace = getattr(md.ColorSpaceType, spec.color_space)
        normalization = md.ProcessUnitT()
        normalization.optionsType = md.ProcessUnitOptions.NormalizationOptions
        normalization.options = md.NormalizationOptionsT()
        normalization.options.mean, normalization.options.std = list(spec.mean), list(spec.std)
        stats = md.StatsT()
        stats.min = [(0 - m) / s for m, s in zip(spec.mean, spec.std)]
        stats.max = [(255 - m) / s for m, s in zip(spec.mean, spec.std)]
        tensor_in = md.TensorMetadataT(
            name=spec.input_name,
            description="one image, pixels normalised as (pixel - mean) / std on the 0-255 scale",
            content=_content(md, image), processUnits=[normalization], stats=stats)
    tensor_out = md.TensorMetadataT(
        name=spec.output_name,
        description="raw logits, one per class (not probabilities: apply softmax for those)",
        content=_content(md, md.FeaturePropertiesT()),
        associatedFiles=[md.AssociatedFileT(
            LABELS_FILE, "class names, one per line, in logit order",
            md.AssociatedFileType.TENSOR_AXIS_LABELS)])
    model = md.ModelMetadataT(
        name=spec.name, description=spec.description, version=spec.version,
        subgraphMetadata=[md.SubGraphMetadataT(inputTensorMetadata=[tensor_in],
                                               outputTensorMetadata=[tensor_out])],
        author="payattn", license=spec.license)
    model.minParserVersion = min_parser_version(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


def _content(md: ModuleType, properties: Any) -> Any:
    content = md.ContentT()
    content.contentProperties = properties
    content.contentPropertiesType = getattr(md.ContentProperties, type(properties).__name__[:-1])
    return content


def min_parser_version(model: Any) -> str:
    """The oldest metadata parser that reads every field `model` (a ModelMetadataT) uses.

    Each member added to the schema after 1.0.0 raises the minimum to the version that
    introduced it (MediaPipe's metadata_version.cc, GetMemberVersion).
    """
    md = metadata_schema()
    units = {md.ProcessUnitOptions.BertTokenizerOptions: (1, 1, 0),
             md.ProcessUnitOptions.SentencePieceTokenizerOptions: (1, 1, 0),
             md.ProcessUnitOptions.RegexTokenizerOptions: (1, 2, 1)}
    found = [(1, 0, 0)]

    def files(items: list[Any] | None) -> None:
        for f in items or []:
            found.append((1, 0, 1) if f.type == md.AssociatedFileType.VOCABULARY else (1, 0, 0))
            if f.type == md.AssociatedFileType.SCANN_INDEX_FILE:
                found.append((1, 4, 0))
            if getattr(f, "version", None) is not None:
                found.append((1, 4, 1))

    def process_units(items: list[Any] | None) -> None:
        for unit in items or []:
            found.append(units.get(unit.optionsType, (1, 0, 0)))

    files(model.associatedFiles)
    for graph in model.subgraphMetadata or []:
        for tensor in (graph.inputTensorMetadata or []) + (graph.outputTensorMetadata or []):
            files(tensor.associatedFiles)
            process_units(tensor.processUnits)
            if tensor.content and tensor.content.contentPropertiesType == md.ContentProperties.AudioProperties:
                found.append((1, 3, 0))
        files(graph.associatedFiles)
        for units_field in (graph.inputProcessUnits, graph.outputProcessUnits):
            if units_field is not None:
                found.append((1, 1, 0))
                process_units(units_field)
        if graph.inputTensorGroups is not None or graph.outputTensorGroups is not None:
            found.append((1, 2, 0))
        if graph.customMetadata is not None:
            found.append((1, 5, 0))
    return ".".join(map(str, max(found)))


def _pack_aligned(model: Any) -> bytes:
    """Serialise a ModelT with each buffer's bytes starting on a BUFFER_ALIGNMENT boundary.

    The generated `BufferT.Pack` aligns data to 1 byte only; here the buffer tables are
    built first, by hand, and handed to `ModelT.Pack` as ready-made offsets.
    """
    builder = flatbuffers.Builder(sum(len(b.data) for b in model.buffers if b.data is not None) + 4096)
    offsets = []
    for buffer in model.buffers:
        data = None
        if buffer.data is not None and len(buffer.data):
            raw = bytes(buffer.data)  # a numpy uint8 array when read back, bytes when added
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head -= len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data = builder.EndVector()  # StartVector recorded the length
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        offsets.append(schema.BufferEnd(builder))
    model.buffers = [_Packed(offset) for offset in offsets]
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@dataclass
class _Packed:
    """A table already in the builder: `ModelT.Pack` asks each buffer for its offset."""

    offset: int

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 (flatbuffers' name)
        return self.offset


# ---- reading -------------------------------------------------------------------------------


@dataclass
class AppView:
    """What an app runtime finds in a .tflite besides its operators."""

    signatures: dict[str, dict[str, list[str]]]
    metadata: Any  # ModelMetadataT, or None
    files: dict[str, bytes]  # associated files by name
    min_unaligned_buffer: int | None  # offset of the first constant buffer off the alignment


def read(path: Path) -> AppView:
    """Signatures, metadata and associated files of a .tflite file."""
    data = check_tflite(path, INSPECT_FIX)
    model = schema.Model.GetRootAs(data, 0)
    signatures = {}
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        signatures[_text(sig.SignatureKey())] = {
            "inputs": [_text(sig.Inputs(j).Name()) for j in range(sig.InputsLength())],
            "outputs": [_text(sig.Outputs(j).Name()) for j in range(sig.OutputsLength())],
        }
    metadata, unaligned = None, None
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            raw = raw.tobytes() if isinstance(raw, np.ndarray) else b""
            try:
                check(raw, metadata_schema(), "ModelMetadata", METADATA_IDENTIFIER)
            except Malformed as exc:
                raise PayattnError(f"{path}: its {METADATA_NAME} is not sound TFLite Metadata ({exc}); "
                                   f"{INSPECT_FIX}") from None
            metadata = metadata_schema().ModelMetadataT.InitFromPackedBuf(bytearray(raw), 0)
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            start = buffer._tab.Vector(buffer._tab.Offset(4))  # where the bytes begin in the file
            if start % BUFFER_ALIGNMENT and unaligned is None:
                unaligned = start
    return AppView(signatures, metadata, associated_files(path, data), unaligned)


def associated_files(path: Path, data: bytes) -> dict[str, bytes]:
    """The files of the zip archive after the flatbuffer (payattn stores them uncompressed, so
    none may claim to be larger than the whole file)."""
    try:
        if not zipfile.is_zipfile(io.BytesIO(data)):
            return {}
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if any(info.file_size > len(data) for info in zf.infolist()):
                raise zipfile.BadZipFile("an entry claims more bytes than the file has")
            return {name: zf.read(name) for name in zf.namelist()}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError,
            OSError) as exc:
        raise PayattnError(f"{path}: its associated files (the zip archive at its end) are damaged "
                           f"({' '.join(str(exc).split())[:120]}); {INSPECT_FIX}") from None


def _text(value: bytes | None) -> str:
    return value.decode(errors="replace") if value else ""


def delegation(path: Path) -> dict[str, Any]:
    """Whether LiteRT's CPU accelerator (XNNPACK) takes the whole graph, and which operators
    it leaves to LiteRT's own kernels.

    Read from a loaded interpreter: XNNPACK replaces each run of nodes it takes with one
    DELEGATE node. A tensor that a DELEGATE node (or the graph's output) needs but that no
    DELEGATE node writes comes from a node left outside; so do that node's own inputs.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    writer = {t: n for n in nodes if n["op_name"] != "DELEGATE" for t in n["outputs"]}
    delegated = {t for n in delegates for t in n["outputs"]}
    wanted = [t for n in delegates for t in n["inputs"]]
    wanted += [d["index"] for d in interpreter.get_output_details()]
    outside: dict[int, str] = {}
    while wanted:
        tensor = wanted.pop()
        node = writer.get(tensor)
        if tensor in delegated or node is None or node["index"] in outside:
            continue
        outside[node["index"]] = node["op_name"]
        wanted += list(node["inputs"])
    ops = Counter(outside.values())
    return {"accelerator": "XNNPACK", "fully_delegated": bool(delegates) and not outside,
            "partitions": len(delegates), "nodes": len(writer),
            "outside": dict(sorted(ops.items()))}


def describe(path: Path) -> dict[str, Any]:
    """Everything `payattn inspect` shows about one .tflite, as plain data."""
    from ai_edge_litert.interpreter import Interpreter

    from payattn.export.ops import operator_counts, read_operators
    from payattn.runtime.runners import load_error, quiet_native_stderr

    path = Path(path)
    view = read(path)  # checks the flatbuffer before LiteRT reads it
    try:
        with quiet_native_stderr():  # LiteRT announces its CPU delegate on stderr, unasked
            interpreter = Interpreter(model_path=str(path), num_threads=1)
            xnnpack = delegation(path)
    except Exception as exc:  # LiteRT raises ValueError and RuntimeError for a model it refuses
        raise load_error(path, "litert", exc) from None

    def tensors(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": d["dtype"].__name__}
                for d in details]

    info = {"file": path.name, "bytes": path.stat().st_size, "signatures": view.signatures,
            "inputs": tensors(interpreter.get_input_details()),
            "outputs": tensors(interpreter.get_output_details()),
            "metadata": _metadata_summary(view), "associated_files": sorted(view.files),
            "aligned": view.min_unaligned_buffer is None,
            "operators": operator_counts(read_operators(path)), "xnnpack": xnnpack,
            "gpu": recorded_gpu(path)}
    return info


def recorded_gpu(path: Path) -> dict[str, Any] | None:
    """The GPU-delegate report the export recorded for this file, when its manifest sits beside
    it (None otherwise): read, not recomputed, so inspecting stays light."""
    from payattn.runtime.artifacts import FILE, load_manifest
    from payattn.runtime.errors import RuntimeJobError

    try:
        manifest = load_manifest(path.parent / FILE)
    except RuntimeJobError:
        return None
    return next((e.get("gpu") for e in manifest["artifacts"] if e.get("file") == path.name), None)


def _metadata_summary(view: AppView) -> dict[str, Any] | None:
    md = view.metadata
    if md is None:
        return None
    text = lambda value: value.decode(errors="replace") if isinstance(value, bytes) else value  # noqa: E731
    summary: dict[str, Any] = {key: text(getattr(md, key)) for key in
                               ("name", "description", "version", "author", "license", "minParserVersion")}
    graph = (md.subgraphMetadata or [None])[0]
    roles = (("input", graph.inputTensorMetadata), ("output", graph.outputTensorMetadata)) if graph else ()
    for role, tensors in roles:
        if not tensors:
            continue
        tensor = tensors[0]
        item: dict[str, Any] = {"name": text(tensor.name), "description": text(tensor.description)}
        for unit in tensor.processUnits or []:
            options = unit.options
            if hasattr(options, "mean"):
                item["normalization"] = {key: [] if getattr(options, key) is None else
                                         [float(v) for v in getattr(options, key)] for key in ("mean", "std")}
            if hasattr(options, "delimRegexPattern"):
                vocab = text(options.vocabFile[0].name) if options.vocabFile else None
                item["tokenizer"] = {"regex": text(options.delimRegexPattern), "vocab_file": vocab,
                                     "entries": len(view.files.get(vocab, b"").splitlines())}
        properties = tensor.content.contentProperties if tensor.content else None
        if hasattr(properties, "colorSpace"):
            spaces = {v: k for k, v in vars(metadata_schema().ColorSpaceType).items() if not k.startswith("_")}
            item["color_space"] = spaces.get(properties.colorSpace)
        for file in tensor.associatedFiles or []:
            labels = view.files.get(text(file.name), b"").decode(errors="replace").splitlines()
            item["labels"] = {"file": text(file.name), "count": len(labels), "first": labels[:5]}
        summary[role] = item
    return summary
