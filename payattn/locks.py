"""One writer per output: an advisory lock (`fcntl.flock`) per output folder or file.

Each writing command holds, for as long as it writes, the lock of every output it may write:
beside a dir that is swapped in whole or a file that is appended to (`.NAME.payattn.lock` in
its parent folder), inside a folder that is filled in place (`FOLDER/.payattn.lock`). A
second writer fails at once with one line naming the holder's process id, or, with `--wait`,
says so and waits. The kernel releases a lock when its holder dies, so a killed writer's lock
is simply taken over. The lock file is removed on release, while still held; a writer that
locks a file already removed finds it gone and locks a new one, so two writers never both
believe they hold the lock, and a lock file that still names a process when it is taken was
left by a writer that died: the taker says so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from payattn.errors import PayattnError
from payattn.files import pause_point

LOCK_NAME = ".payattn.lock"
Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def lock_beside(target: Path) -> Path:
    """The lock of a dir swapped in whole or of a file appended to: beside it."""
    target = Path(target).absolute()
    return target.parent / f".{target.name}.payattn.lock"


def lock_inside(folder: Path) -> Path:
    """The lock of a folder filled in place: inside it."""
    return Path(folder).absolute() / LOCK_NAME


@contextlib.contextmanager
def locked(targets: Iterable[tuple[Path, Path]], *, wait: bool = False,
           log: Log = _stderr) -> Iterator[None]:
    """Hold the lock of every (lock file, output) pair for the block, taken in one order (so
    two waiting writers cannot deadlock) and released in reverse. Folders a lock needs are
    created, and removed again on release when they are still empty."""
    pairs = sorted(dict(targets).items())
    with contextlib.ExitStack() as stack:
        for lock_file, output in pairs:
            stack.enter_context(_one(lock_file, output, wait, log))
        pause_point("lock:held")
        yield


@contextlib.contextmanager
def _one(lock_file: Path, output: Path, wait: bool, log: Log) -> Iterator[None]:
    created = _make_parents(lock_file.parent, output)
    try:
        fd = _acquire(lock_file, output, wait, log)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_file)  # while still held: see the module's docstring
        os.close(fd)
        _remove_empty(created)


def _make_parents(folder: Path, output: Path) -> list[Path]:
    """Create `folder` and its missing parents; return those created (outermost first)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PayattnError(f"cannot create {folder} to write {output} ({exc.strerror}); choose a "
                           f"writable folder") from None
    return missing


def _remove_empty(created: list[Path]) -> None:
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _acquire(lock_file: Path, output: Path, wait: bool, log: Log) -> int:
    """Lock `lock_file` and write this process's id in it; return the descriptor."""
    announced = False
    while True:
        lock_file.parent.mkdir(parents=True, exist_ok=True)  # a releasing writer may remove it
        fd = _open(lock_file, output)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                os.close(fd)
                raise PayattnError(
                    f"{output} is being written by another payattn process ({holder}); wait for "
                    f"it to finish, or pass --wait to wait for it") from None
            if not announced:
                log(f"{output} is being written by another payattn process ({holder}); waiting "
                    f"for it to finish (--wait)")
                announced = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        if _same_file(fd, lock_file):
            break
        os.close(fd)  # locked a file its holder removed on release: lock the current one
    previous = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    if previous and previous[0].isdigit():  # a writer that ends removes its lock file: this one died
        log(f"took over the lock of {output} from process {previous[0]}, which ended without "
            f"releasing it")
    with contextlib.suppress(OSError):  # the id is for messages: a full disk still locks
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0)
    return fd


def _open(lock_file: Path, output: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(lock_file, flags, 0o644)
    except OSError as exc:
        why = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be opened ({exc.strerror})"
        raise PayattnError(f"lock file {lock_file} {why}; remove it, or write {output} in a "
                           f"folder of your own") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PayattnError(f"lock file {lock_file} is not a regular file; remove it, or write "
                           f"{output} in a folder of your own")
    return fd


def _holder(fd: int) -> str:
    """The holder's process id as its lock file says (it may not have written it yet)."""
    words = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    if words and words[0].isdigit():
        since = f", since {words[1].replace('T', ' ')}" if len(words) > 1 else ""
        return f"PID {words[0]}{since}"
    return "PID not yet recorded"


def _same_file(fd: int, lock_file: Path) -> bool:
    try:
        now = os.lstat(lock_file)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def results_lock(results_file: Path | None, *, wait: bool = False,
                 log: Log | None = None) -> contextlib.AbstractContextManager[None]:
    """The lock of a results file that lines are appended to (none when there is no file)."""
    if results_file is None:
        return contextlib.nullcontext()
    return locked([(lock_beside(results_file), Path(results_file))], wait=wait, log=log or _stderr)
