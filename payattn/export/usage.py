"""USAGE.md of an artifact dir: how to load and run its .tflite files in an app, filled in with
this artifact's names, shapes and preprocessing.

The Python snippets are complete programs that define `classify(...)`; the tests run them
as they are written here (tests/test_apps.py), so the text cannot drift from what
works. Each snippet has a title the tests find it by.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from payattn.files import write_file_atomic

FILE = "USAGE.md"
TITLES = {"litert": "Python: LiteRT CompiledModel, by signature",
          "mediapipe": "Python: MediaPipe Tasks"}


def write(directory: Path, manifest: dict[str, Any]) -> Path | None:
    """USAGE.md for an artifact dir with a .tflite; none for one with only .pte programs."""
    entry = app_artifact(manifest)
    if entry is None:
        return None
    return write_file_atomic(Path(directory) / FILE, render(manifest, entry))


def app_artifact(manifest: dict[str, Any], precision: str = "fp32") -> dict[str, Any] | None:
    """The .tflite an app should take, at `precision` when the dir has it: a vision model's
    app form (RGB pixels in), a text model's only form. None when the dir has no .tflite."""
    tflite = [a for a in manifest["artifacts"] if a["format"] == "tflite"]
    tflite.sort(key=lambda a: (a["precision"] != precision, a.get("variant") != "app"))
    return tflite[0] if tflite else None


def snippets(manifest: dict[str, Any], file: str) -> dict[str, str]:
    """Title -> Python source, for the .tflite `file` of this artifact dir."""
    entry = next(a for a in manifest["artifacts"] if a["file"] == file)
    (spec,), (out,) = entry["inputs"], entry["outputs"]
    sig = entry["signature"]
    classes = out["shape"][-1]
    if manifest["kind"] == "vision":
        h, w, c = spec["shape"][1:]
        feed = (f"def classify(image):\n"
                f"    \"\"\"image: uint8 [{h}, {w}, {c}] RGB, already {h}x{w}; normalised in the graph.\"\"\"\n"
                f"    inputs.write(image.astype(np.float32)[None])  # [1, {h}, {w}, {c}] NHWC, 0-255\n")
        constants = ""
        mp_task = (
            "from mediapipe.tasks.python import BaseOptions, vision\n\n"
            f"classifier = vision.ImageClassifier.create_from_options(vision.ImageClassifierOptions(\n"
            f"    base_options=BaseOptions(model_asset_path=\"{file}\"), max_results=-1))\n\n\n"
            "def classify(image):\n"
            f"    \"\"\"image: uint8 [H, W, 3] RGB; MediaPipe resizes it to {h}x{w}.\"\"\"\n"
            "    frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))\n"
            "    top = classifier.classify(frame).classifications[0].categories[0]\n"
            "    return top.category_name, top.score  # score: the raw logit\n")
    else:
        length = spec["shape"][1]
        feed = (f"def classify(text):\n"
                f"    \"\"\"text: one str, tokenised as tokenizer.json says ({length} ids).\"\"\"\n"
                f"    inputs.write(encode(text)[None])  # [1, {length}] int32\n")
        constants = (
            "TOKENIZER = json.load(open(\"tokenizer.json\"))\n"
            "LOOKUP = {}\n"
            "for rank, word in enumerate(TOKENIZER[\"vocab\"]):\n"
            "    LOOKUP.setdefault(word, rank)\n"
            "for form in (lambda w: w[:1].upper() + w[1:], str.upper):  # Capitalised, UPPER\n"
            "    for rank, word in enumerate(TOKENIZER[\"vocab\"][2:], start=2):\n"
            "        LOOKUP.setdefault(form(word), rank)\n\n\n"
            "def encode(text):\n"
            "    words = [w for w in re.split(TOKENIZER[\"delimiter\"], text.split(\"\\0\")[0]) if w]\n"
            "    ids = [LOOKUP.get(w, TOKENIZER[\"unk_id\"]) for w in words][: TOKENIZER[\"max_length\"]]\n"
            "    return np.array(ids + [TOKENIZER[\"pad_id\"]] * (TOKENIZER[\"max_length\"] - len(ids)), np.int32)\n")
        mp_task = (
            "from mediapipe.tasks.python import BaseOptions, text\n\n"
            f"classifier = text.TextClassifier.create_from_options(text.TextClassifierOptions(\n"
            f"    base_options=BaseOptions(model_asset_path=\"{file}\"), max_results=-1))\n\n\n"
            "def classify(sentence):\n"
            "    \"\"\"sentence: one str; the tokenizer and vocabulary come from the file's metadata.\"\"\"\n"
            "    top = classifier.classify(sentence).classifications[0].categories[0]\n"
            "    return top.category_name, top.score  # score: the raw logit\n")
    litert = (
        ("import json\nimport re\n\n" if manifest["kind"] == "text" else "") + "import numpy as np\n"
        "from ai_edge_litert.compiled_model import CompiledModel\n\n"
        f"model = CompiledModel.from_file(\"{file}\")\n"
        f"inputs = model.create_input_buffer_by_name(\"{sig['key']}\", \"{sig['inputs'][0]}\")\n"
        f"outputs = model.create_output_buffer_by_name(\"{sig['key']}\", \"{sig['outputs'][0]}\")\n"
        "LABELS = open(\"labels.txt\").read().splitlines()\n"
        f"{constants}\n\n{feed}"
        f"    model.run_by_name(\"{sig['key']}\", {{\"{sig['inputs'][0]}\": inputs}}, {{\"{sig['outputs'][0]}\": outputs}})\n"
        f"    logits = outputs.read({classes}, np.float32)  # raw logits; softmax for probabilities\n"
        "    return LABELS[int(np.argmax(logits))], logits\n")
    code = {TITLES["litert"]: litert}
    if manifest["kind"] == "text" or entry.get("variant") == "app":
        code[TITLES["mediapipe"]] = "import mediapipe as mp\nimport numpy as np\n" + mp_task
    return code


def render(manifest: dict[str, Any], entry: dict[str, Any]) -> str:
    """The whole USAGE.md, built around `entry`, the .tflite an app should take."""
    file, (spec,), (out,) = entry["file"], entry["inputs"], entry["outputs"]
    lines = [
        f"# Using {manifest['mechanism']} · {manifest['task']} in an app", "",
        f"Take `{file}` (or the same name at another precision: "
        + ", ".join(f"`{a['file']}`" for a in manifest["artifacts"]
                    if a["format"] == "tflite" and a.get("variant") == entry.get("variant"))
        + "). It carries a `serving_default` signature "
        f"(`{spec['name']}` → `{out['name']}`) and TFLite Metadata (normalisation or tokenizer, "
        "labels), so MediaPipe Tasks and Android Studio's ML Model Binding read it from the file alone.",
        "",
        f"- input `{spec['name']}`: {spec['dtype']} {spec['shape']} ({spec['layout']})",
    ]
    if manifest["kind"] == "vision":
        lines += [f"- colour: {spec['color_space']}" + (" (turned to grayscale inside the graph)"
                                                       if spec.get("to_grayscale") else ""),
                  f"- values: {spec['values']}", f"- resize: {spec['resize']}"]
        lines += [f"- polarity: {spec['polarity']}"] if "polarity" in spec else []
    else:
        p = manifest["preprocessing"]
        lines += [f"- tokenizer: `{p['tokenizer']}`; split at the regex `{p['delimiter']}` "
                  f"(RE2: `{p['delimiter_re2']}`), look each word up as written ({p['case']} forms "
                  f"of the vocabulary), unknown → {p['unk_id']}, pad with {p['pad_id']} at the end "
                  f"to {p['max_length']} ids"]
    lines += [f"- output `{out['name']}`: {out['dtype']} {out['shape']}, raw logits in the order of "
              "`labels.txt` (apply softmax for probabilities)", ""]
    for title, code in snippets(manifest, file).items():
        lines += [f"## {title}", "", "```python", code.rstrip(), "```", ""]
    lines += ["## Android (Kotlin)", "", "```kotlin", _kotlin(manifest, entry).rstrip(), "```", ""]
    return "\n".join(lines)


def _kotlin(manifest: dict[str, Any], entry: dict[str, Any]) -> str:
    file = entry["file"]
    if manifest["kind"] == "text":
        return (
            "// build.gradle: implementation(\"com.google.mediapipe:tasks-text:latest.release\")\n"
            "import com.google.mediapipe.tasks.core.BaseOptions\n"
            "import com.google.mediapipe.tasks.text.textclassifier.TextClassifier\n\n"
            "val classifier = TextClassifier.createFromOptions(context,\n"
            "    TextClassifier.TextClassifierOptions.builder()\n"
            f"        .setBaseOptions(BaseOptions.builder().setModelAssetPath(\"{file}\").build())\n"
            "        .build())\n"
            "val top = classifier.classify(sentence).classificationResult()\n"
            "    .classifications()[0].categories()[0]  // top.categoryName(); score = raw logit\n")
    return (
        "// build.gradle: implementation(\"com.google.mediapipe:tasks-vision:latest.release\")\n"
        "import com.google.mediapipe.framework.image.BitmapImageBuilder\n"
        "import com.google.mediapipe.tasks.core.BaseOptions\n"
        "import com.google.mediapipe.tasks.vision.imageclassifier.ImageClassifier\n\n"
        "val classifier = ImageClassifier.createFromOptions(context,\n"
        "    ImageClassifier.ImageClassifierOptions.builder()\n"
        f"        .setBaseOptions(BaseOptions.builder().setModelAssetPath(\"{file}\").build())\n"
        "        .build())\n"
        "val top = classifier.classify(BitmapImageBuilder(bitmap).build())\n"
        "    .classificationResult().classifications()[0].categories()[0]  // score = raw logit\n")
