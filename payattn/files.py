"""Writing outputs safely: temp dirs beside the target, an atomic swap, ownership, leftovers.

Every dir payattn writes (a run dir, an artifact dir) is built in a temp dir beside its target
and swapped into place in one step, so a kill at any instant leaves the old or the new dir
under the target name, never neither. `--force` replaces a dir only when everything in it is
something payattn writes there: a regular file (no folder, no symbolic link) with a name and
content payattn writes (`owned`), never judged by the name alone. Files are written through a
fresh temp file and one rename (results files, appended to, have their own opener in
payattn.runtime.results, which follows no symbolic link either). Temp dirs carry the
writing process's id, so a later run recognises those of a killed process and removes them.
`pause_point` lets the fault tests stop a process at a named step (PAYATTN_PAUSE_AT) to kill it
there, deterministically.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from payattn.errors import PayattnError

TEMP_TAG = "payattn"
_TEMP_NAME = re.compile(rf"^\..+\.{TEMP_TAG}-(\d+)-[^/]+$")
_RENAME_EXCHANGE = 2  # linux/fs.h


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still runs (ours counts as alive; a zombie, dead but not yet
    reaped by its parent, does not: it holds no files and no locks)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


def temp_dir_beside(target: Path) -> Path:
    """A new hidden dir next to `target` (same filesystem, so the swap is one rename),
    named `.NAME.payattn-PID-XXXX` so a later run can tell a killed writer's leftover."""
    path = Path(tempfile.mkdtemp(prefix=f".{target.name}.{TEMP_TAG}-{os.getpid()}-", dir=target.parent))
    path.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would become the final dir's mode
    return path


def write_file_atomic(path: Path, data: str | bytes) -> Path:
    """Write `path` through a new hidden temp file beside it (created exclusively, so no link
    planted there is followed) and one rename, so a reader (or a kill) never sees half a file.
    A symbolic link at `path` is refused rather than replaced: payattn did not make it."""
    path = Path(path)
    if path.is_symlink():
        raise PayattnError(f"{path} is a symbolic link, which payattn did not create; remove the "
                           f"link or write somewhere else")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


# ---- owned: a regular file payattn could have written, by its name and its content ----------

_JSON_LIMIT = 256 << 20  # a JSON file payattn writes is far below this; larger is not ours


def _json_object(check: Callable[[dict], bool]) -> Callable[[bytes], bool]:
    """A recogniser for a JSON object file that `check` accepts."""
    def recognise(data: bytes) -> bool:
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return False
        return isinstance(value, dict) and check(value)
    return recognise


def _text(data: bytes) -> bool:
    """UTF-8 text without NUL bytes."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in data


def _schema(prefix: str) -> Callable[[dict], bool]:
    return lambda value: str(value.get("schema", "")).startswith(prefix)


# (name pattern, bytes to read (None: the whole file), recogniser), first match wins.
CONTENT: list[tuple[str, int | None, Callable[[bytes], bool]]] = [
    ("model.pt", 512, lambda b: b.startswith(b"PK\x03\x04") and b"/data.pkl" in b),  # torch.save
    ("*.onnx", 1, lambda b: b == b"\x08"),  # ModelProto's first field: ir_version
    ("*.tflite", 8, lambda b: b[4:8] == b"TFL3"),
    ("*.pte", 8, lambda b: b[4:6] == b"ET"),
    ("*.npy", 6, lambda b: b == b"\x93NUMPY"),
    ("*.png", 8, lambda b: b == b"\x89PNG\r\n\x1a\n"),
    ("manifest.json", None, _json_object(_schema("payattn.manifest/"))),
    ("tokenizer.json", None, _json_object(_schema("payattn.tokenizer/"))),
    ("config.json", None, _json_object(lambda v: {"task", "mechanism", "model"} <= v.keys())),
    ("metrics.json", None, _json_object(lambda v: "test_accuracy" in v)),
    ("labels.txt", None, _text),
    ("USAGE.md", 8, lambda b: b == b"# Using "),
    ("report.md", 16, lambda b: b == b"# payattn report"),
    ("report.csv", 20, lambda b: b == b"line,used_in_tables,"),
    ("report.html", 1024, lambda b: b.startswith(b"<!doctype html>")
     and b"<title>payattn report</title>" in b),
]


def owned(path: Path) -> bool:
    """Whether `path` is a regular file (not a link, not a folder) whose name and content are
    those of a file payattn writes (CONTENT): what `--force` may replace."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except OSError:
        return False
    rule = next((r for r in CONTENT if fnmatch.fnmatchcase(path.name, r[0])), None)
    if rule is None or not stat.S_ISREG(info.st_mode):
        return False
    size = rule[1] if rule[1] is not None else info.st_size
    if size > _JSON_LIMIT:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return rule[2](os.pread(fd, size, 0))
    finally:
        os.close(fd)


def foreign_reason(path: Path) -> str:
    """Why `path` is not payattn's, in a few words for an error message."""
    if path.is_symlink():
        return "a symbolic link"
    if path.is_dir():
        return "a folder"
    if not path.is_file():
        return "not a regular file"
    return "not payattn's content"


def clean_leftovers(folder: Path) -> list[Path]:
    """Remove the temp dirs in `folder` that a payattn process left when it was killed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            match = _TEMP_NAME.match(entry.name)
            if match and entry.is_dir() and not entry.is_symlink() and not pid_alive(int(match[1])):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def clean_temp_leftovers(prefix: str, stop: Callable[[Path], None] | None = None,
                         folder: Path | None = None) -> list[Path]:
    """Remove the temp dirs named PREFIX-PID-… (in `folder`, default the system's) of payattn
    processes that are gone, after `stop(dir)` has ended what may still use one."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    removed = []
    with contextlib.suppress(OSError):
        for entry in (folder or Path(tempfile.gettempdir())).iterdir():
            match = pattern.match(entry.name)
            if match and entry.is_dir() and not entry.is_symlink() and not pid_alive(int(match[1])):
                if stop is not None:
                    with contextlib.suppress(Exception):
                        stop(entry)
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_dir(tmp: Path, target: Path, pause_prefix: str) -> None:
    """Move the finished `tmp` to `target`. An existing `target` is swapped with `tmp` in one
    atomic step and then removed, so the target name always holds a whole dir."""
    pause_point(f"{pause_prefix}:swap")
    if not target.exists():
        os.replace(tmp, target)
        return
    if not _exchange(tmp, target):  # two renames: not atomic, but the old dir is kept aside
        old = temp_dir_beside(target)
        os.replace(target, old / target.name)
        try:
            os.replace(tmp, target)
        except OSError:
            os.replace(old / target.name, target)
            raise
        tmp.rmdir()
        tmp = old
    pause_point(f"{pause_prefix}:swapped")
    shutil.rmtree(tmp, ignore_errors=True)


def check_target(target: Path, force: bool, ours: Iterable[str], what: str) -> None:
    """Refuse to overwrite an existing `target` without `force`, and with it anything but a
    `what` holding only files payattn writes there (names in `ours`, checked by `owned`)."""
    if not target.exists() and not target.is_symlink():
        return
    if not force:
        raise PayattnError(f"{what} {target} already exists; pass --force to replace it, or choose another --out")
    check_replaceable(target, ours, what, "choose another --out")


def check_replaceable(target: Path, ours: Iterable[str], what: str, fix: str) -> None:
    """Refuse to replace `target` unless it is a real dir (not a link) holding only files
    payattn writes there: a name in `ours` and, by type and content, `owned`."""
    if not target.is_dir() or target.is_symlink():
        raise PayattnError(f"{target} exists and is not a {what}; {fix}")
    names = set(ours)
    foreign = sorted(entry for entry in target.iterdir() if entry.name not in names or not owned(entry))
    if foreign:
        shown = ", ".join(e.name if e.name not in names else f"{e.name}: {foreign_reason(e)}"
                          for e in foreign[:3]) + (", …" if len(foreign) > 3 else "")
        raise PayattnError(f"{target} holds files payattn did not write ({shown}); --force replaces "
                           f"only a {what}: move those files away or {fix}")


def check_writable(folder: Path, option: str) -> None:
    """Refuse, before any work, a folder that cannot be created or written in (read-only
    folder or disk, a file where a folder is needed)."""
    path = Path(folder).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise PayattnError(f"{folder}: {existing} is a file, not a folder; choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PayattnError(f"{existing} is not writable (read-only file, folder or disk); "
                           f"choose a writable {option}")


def check_not_precious(path: Path, option: str) -> None:
    """Refuse the current dir, the home dir, the root or any parent of the current dir as a
    folder payattn fills and replaces in: those hold the user's own files."""
    resolved = Path(path).expanduser().resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if resolved in (cwd, home, Path(resolved.anchor)) or resolved in cwd.parents:
        raise PayattnError(f"{option} {path} is {resolved}, which holds your own files; "
                           f"give a dedicated folder such as {option} demo-out")


def pause_point(name: str) -> None:
    """If PAYATTN_PAUSE_AT names this point, write PAYATTN_PAUSE_FILE and wait there until
    killed, or until that file is removed (then go on): the fault and lock tests use it to act
    at an exact step instead of after a sleep."""
    if os.environ.get("PAYATTN_PAUSE_AT") != name:
        return
    marker = os.environ.get("PAYATTN_PAUSE_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {name}\n")
    deadline = time.monotonic() + 600  # a forgotten pause ends rather than hangs forever
    while time.monotonic() < deadline:
        if marker and not Path(marker).exists():
            return
        time.sleep(0.05)
    raise PayattnError(f"paused at {name} for 600 s and was not killed (PAYATTN_PAUSE_AT is set)")
