"""Writing files so that nothing is half-written and nothing is lost.

Every file vlx writes goes to a temporary sibling first and is renamed into place, so a reader
sees the old file or the new one, never a part. Temporary names carry the writing process's
host and id: an interrupted process removes its own on the way out, and one killed outright
(SIGKILL, a power cut) leaves names that ``sweep_temporaries`` recognises as stale and removes
on the next run. Files and folders get the modes the umask allows, as ``open`` would give them.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vlx.errors import InputError

TEMPORARY_MARK = ".vlx-tmp-"
_TEMPORARY = re.compile(rf"^\..+{re.escape(TEMPORARY_MARK)}(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]+$")
_umask: int | None = None
_umask_lock = threading.Lock()


def umask() -> int:
    """The process's umask (read once: reading it means setting it for an instant)."""
    global _umask
    with _umask_lock:
        if _umask is None:
            _umask = os.umask(0o022)
            os.umask(_umask)
        return _umask


def file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode ``mkdir`` would give a new folder."""
    return 0o777 & ~umask()


def temporary_path(path: Path) -> Path:
    """A hidden sibling of ``path`` that names this host and process."""
    token = secrets.token_hex(4)
    return path.parent / f".{path.name}{TEMPORARY_MARK}{socket.gethostname()}-{os.getpid()}-{token}"


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` through ``write(stream)``: all of it, or (on any error or signal) none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        with open(temporary, "xb") as stream:
            write(stream)
        os.chmod(temporary, file_mode())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file (a table, a report, JSON) so a crash never leaves half of it."""
    return write_atomic(path, lambda stream: stream.write(text.encode()))


def write_folder_atomic(target: str | Path, fill: Callable[[Path], object]) -> Path:
    """Build a whole folder through ``fill(work)`` in a temporary sibling, then rename it to
    ``target``: a reader never sees a folder half filled."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = temporary_path(target)
    work.mkdir(mode=folder_mode())
    try:
        fill(work)
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def sweep_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` that a process of this host left
    when it was killed (its id no longer runs). Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    host, removed = socket.gethostname(), []
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match is None or match["host"] != host or _running(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def slug(text: str) -> str:
    """``text`` as a safe file-name part: lower-case letters and digits joined by hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "target"


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a folder files can be written into, checked before any work is done: it
    must be a folder or not exist yet, and its nearest existing parent must be writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {str(path)!r} is a file; give a folder (new or existing)")
    _check_writable(path if path.is_dir() else _existing_parent(path), option, path)
    return path


def check_output_file(path: str | Path, option: str = "--out", example: str = "model.pt") -> Path:
    """``path`` as a file that can be written, checked before any work: not a folder, and in
    a folder that exists or can be made and is writable (``example``: a name to suggest)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {str(path)!r} is a folder; give a file name, e.g. "
                         f"{str(path / example)!r}")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"{option} {str(path)!r}: {str(parent)!r} is a file, not a folder")
    _check_writable(parent if parent.is_dir() else _existing_parent(parent), option, path)
    return path


def _existing_parent(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot create {str(path)!r}: {str(parent)!r} is a file")
            return parent
    return Path("/")


def _check_writable(folder: Path, option: str, wanted: Path) -> None:
    """Create and remove a temporary file there: permission bits do not tell (root, read-only
    mounts, pseudo file systems), a real write does."""
    probe = temporary_path(folder / "probe")
    try:
        probe.touch(exist_ok=False)
    except OSError as err:
        raise InputError(
            f"{option} {str(wanted)!r}: cannot write in {str(folder)!r} ({err.strerror})"
        ) from None
    probe.unlink(missing_ok=True)
