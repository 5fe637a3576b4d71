"""The file formats against their published JSON Schema files: what payattn writes validates
with the independent `jsonschema` package, and payattn.runtime.formats judges documents as it does."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from schema_check import SCHEMAS, assert_valid, validator
from tiny_artifacts import copy_artifact_dirs

from payattn.bench import bench, build_job
from payattn.runtime import RuntimeJobError
from payattn.runtime.formats import JOB, MANIFEST, RESULT
from payattn.runtime.settings import BenchSettings

QUICK = {"settings": BenchSettings(runs=3, warmup_runs=1, min_seconds=0, warmup_seconds=0)}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A job, the result lines and the results file that bench writes for the tiny artifacts."""
    dirs = copy_artifact_dirs(tmp_path_factory.mktemp("formats"))
    results = tmp_path_factory.mktemp("results") / "results.jsonl"
    lines = bench(dirs.values(), results_path=results, **QUICK)
    return {"job": build_job(dirs.values(), **QUICK), "lines": lines, "file": results,
            "manifest": json.loads((dirs["vision"] / "manifest.json").read_text())}


def test_schema_files_are_valid_json_schema() -> None:
    assert {"common.schema.json", "result.schema.json", "manifest.schema.json", "job.schema.json"} <= set(SCHEMAS)
    for schema in SCHEMAS.values():
        Draft202012Validator.check_schema(schema)


def test_bench_writes_lines_and_jobs_that_validate(written) -> None:
    assert_valid(written["job"], "job")
    for text in written["file"].read_text().splitlines():
        assert_valid(json.loads(text), "result")
    assert len(written["lines"]) == 4


def _mutations(line: dict) -> list[tuple[str, object]]:
    return [("threads", "1"), ("threads", 0), ("runs", True), ("latency_ms.p50", -1.0), ("latency_ms.mean", None),
            ("device.kind", "usb"), ("runtime.name", "tvm"), ("schema", "payattn.result/2"),
            ("artifact.sha256", "abc"), ("artifact.precision", "fp8"), ("timestamp", "yesterday"),
            ("device", "laptop"), ("git_commit", 12), ("test_accuracy", 1.5), ("latency_ms.p90", None),
            ("runtime.name", "benchmark_model"), ("device.cores", None)]


def _set(document: dict, dotted: str, value: object) -> dict:
    document = copy.deepcopy(document)
    *parents, last = dotted.split(".")
    target = document
    for key in parents:
        target = target[key]
    target[last] = value
    return document


def test_runtime_validator_judges_as_jsonschema_does(written) -> None:
    line = written["lines"][0]
    reference = validator("result")
    for dotted, value in _mutations(line):
        changed = _set(line, dotted, value)
        expected_valid = reference.is_valid(changed)
        assert (RESULT.problem(changed) is None) == expected_valid, (dotted, value, RESULT.problem(changed))
    missing = copy.deepcopy(line)
    del missing["latency_ms"]["p99"]
    assert not reference.is_valid(missing) and RESULT.problem(missing) == "key 'latency_ms.p99' is missing"


def test_writers_are_strict_and_readers_tolerant(written) -> None:
    newer = _set(written["lines"][0], "device.npu", False)  # a key a later payattn may add
    assert not validator("result").is_valid(newer)
    assert RESULT.problem(newer, strict=False) is None
    with pytest.raises(RuntimeJobError, match=r"result line: key 'device.npu' is not in payattn.result/1"):
        RESULT.check(newer)
    manifest = _set(written["manifest"], "app", {"name": "x"})
    assert MANIFEST.problem(manifest, strict=False) is None
    assert MANIFEST.problem(manifest) == "key 'app' is not in payattn.manifest/1"
    assert JOB.problem(dict(written["job"], threads=[])) == "key 'threads' must have at least 1 item(s)"


def test_schema_files_travel_with_the_runtime_package() -> None:
    from payattn.devices.ssh import runtime_package_files

    sent = {remote for _, remote in runtime_package_files()}
    assert {f"pkg/payattn/runtime/schemas/{name}" for name in SCHEMAS} <= sent
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"payattn.runtime" = ["schemas/*.json"]' in pyproject
