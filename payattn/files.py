"""Writing outputs safely: temp dirs beside the target, an atomic swap, ownership, leftovers.

Every dir payattn writes (a run dir, an artifact dir) is built in a temp dir beside its target
and swapped into place in one step, so a kill at any instant leaves the old or the new dir
under the target name, never neither. `--force` replaces a dir only when everything in it is
something payattn writes there. Temp dirs carry the writing process's id, so a later run
recognises those of a killed process and removes them. `pause_point` lets the fault tests stop
a process at a named step (PAYATTN_PAUSE_AT) to kill it there, deterministically.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
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
    """Whether process `pid` still exists (ours counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_dir_beside(target: Path) -> Path:
    """A new hidden dir next to `target` (same filesystem, so the swap is one rename),
    named `.NAME.payattn-PID-XXXX` so a later run can tell a killed writer's leftover."""
    path = Path(tempfile.mkdtemp(prefix=f".{target.name}.{TEMP_TAG}-{os.getpid()}-", dir=target.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    path.chmod(0o777 & ~umask)  # mkdtemp's 0700 would become the final dir's mode
    return path


def write_file_atomic(path: Path, data: str | bytes) -> Path:
    """Write `path` through a hidden temp file beside it and one rename, so a reader (or a
    kill) never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


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
    `what` holding only the names payattn writes there (`ours`)."""
    if not target.exists() and not target.is_symlink():
        return
    if not force:
        raise PayattnError(f"{what} {target} already exists; pass --force to replace it, or choose another --out")
    check_replaceable(target, ours, what, "choose another --out")


def check_replaceable(target: Path, ours: Iterable[str], what: str, fix: str) -> None:
    """Refuse to replace `target` unless it is a dir holding only names payattn writes there."""
    if not target.is_dir() or target.is_symlink():
        raise PayattnError(f"{target} exists and is not a {what}; {fix}")
    foreign = sorted(entry.name for entry in target.iterdir() if entry.name not in set(ours))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
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
    """If PAYATTN_PAUSE_AT names this point, write PAYATTN_PAUSE_FILE and wait to be killed:
    the fault tests use it to kill a process at an exact step instead of after a sleep."""
    if os.environ.get("PAYATTN_PAUSE_AT") != name:
        return
    marker = os.environ.get("PAYATTN_PAUSE_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {name}\n")
    deadline = time.monotonic() + 600  # a forgotten pause ends rather than hangs forever
    while time.monotonic() < deadline:
        time.sleep(0.05)
    raise PayattnError(f"paused at {name} for 600 s and was not killed (PAYATTN_PAUSE_AT is set)")
