"""Seeded mutations of valid files, and the rule every reader of them must keep: a mutated
file is either read (exit 0) or refused with exactly one `error:` line (exit != 0); never a
traceback, a hang or a native crash.

Run as `python tests/fuzzing.py CASES_DIR`, it checks every *.tflite in CASES_DIR the way
`payattn inspect` and bench's LiteRT runner read it, one JSON line per case on stdout: the
parent test sees a native crash as this process dying by a signal after "start" of a case.
"""

from __future__ import annotations

import json
import random
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from typer.testing import CliRunner

CASE_SECONDS = 20  # one case's bound: more is a hang
SWAPS = [0, -1, 2**63, 1e308, "", "x" * 300, [], {}, None, True, [1, "a"], {"k": []}]


def bit_flips(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncation(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))]


def insertion(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[i:]


def overwrite_word(data: bytes, rng: random.Random) -> bytes:
    """A 32-bit offset or length replaced: the corruption a flatbuffer or header fears most."""
    out = bytearray(data)
    i = rng.randrange(max(1, len(out) - 4))
    out[i:i + 4] = rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(2**32)]).to_bytes(4, "little")
    return bytes(out)


def type_swap(data: bytes, rng: random.Random) -> bytes:
    """One value somewhere in a JSON document replaced by a value of another type."""
    document = json.loads(data)
    paths: list[list[Any]] = []

    def walk(value: Any, path: list[Any]) -> None:
        paths.append(path)
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            walk(item, [*path, key])

    walk(document, [])
    path = rng.choice(paths)
    swap = rng.choice(SWAPS)
    if not path:
        return json.dumps(swap).encode()
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = swap
    return json.dumps(document).encode()


BINARY = [bit_flips, truncation, insertion, overwrite_word]
TEXT = [*BINARY, type_swap]


def mutations(data: bytes, count: int, seed: int, kinds: list[Callable]) -> list[tuple[str, bytes]]:
    """`count` (kind, mutated bytes) pairs, the same for the same seed, each differing from `data`."""
    rng = random.Random(seed)
    found = []
    while len(found) < count:
        kind = kinds[len(found) % len(kinds)]
        mutated = kind(data, rng)
        if mutated != data:
            found.append((kind.__name__, mutated))
    return found


def outcome(result: Any) -> str:
    """'succeeded', 'refused' (one error line, exit != 0) or what broke the rule."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"traceback: {type(result.exception).__name__}: {result.exception}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.exit_code == 0:
        return "succeeded"
    if len(lines) == 1 and lines[0].startswith("error: "):
        return "refused"
    return f"exit {result.exit_code} with stderr {lines[:3]}"


class CaseTimeout(Exception):
    pass


def bounded(call: Callable[[], str]) -> str:
    """`call` within CASE_SECONDS, or 'hang'."""
    def expire(*_: Any) -> None:
        raise CaseTimeout

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(CASE_SECONDS)
    try:
        return call()
    except CaseTimeout:
        return "hang"
    finally:
        signal.alarm(0)


def tally(outcomes: list[str]) -> Counter:
    return Counter(o if o in ("succeeded", "refused") else "broken" for o in outcomes)


def runner_outcome(path: Path, specs: list[dict[str, Any]]) -> str:
    """bench's LiteRT runner on the file: loaded, or one RuntimeJobError; then its first
    inference, whose failure the harness reports as one error (job._open_and_run_once)."""
    from payattn.runtime.errors import RuntimeJobError
    from payattn.runtime.runners import open_runner

    try:
        runner = open_runner("litert", path, specs)
    except RuntimeJobError:
        return "refused"
    except Exception as exc:  # noqa: BLE001 — the rule broken: report it, keep going
        return f"traceback: {type(exc).__name__}: {exc}"
    try:
        runner.run()
    except Exception:  # noqa: BLE001
        return "refused"
    return "succeeded"


def main(cases: Path) -> None:
    from payattn.cli import app

    specs = json.loads((cases / "specs.json").read_text())
    runner = CliRunner()
    for path in sorted(cases.glob("*.tflite")):
        print(json.dumps({"start": path.name}), flush=True)
        inspect = bounded(lambda: outcome(runner.invoke(app, ["inspect", str(path)])))
        bench = bounded(lambda: runner_outcome(path, specs))
        print(json.dumps({"case": path.name, "inspect": inspect, "runner": bench}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
