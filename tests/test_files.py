"""Writing files: all or nothing, modes from the umask, and what killed runs left swept away."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import pytest

from vlx.files import (
    TEMPORARY_MARK,
    sweep_temporaries,
    temporary_path,
    write_atomic,
    write_folder_atomic,
    write_text_atomic,
)


@pytest.fixture
def umask_002():
    """Run under umask 002, restored after (``vlx.files`` reads the umask once)."""
    import vlx.files

    old = os.umask(0o002)
    vlx.files._umask = None
    yield
    os.umask(old)
    vlx.files._umask = None


def test_files_and_folders_get_the_modes_the_umask_allows(tmp_path, umask_002) -> None:
    text = write_text_atomic(tmp_path / "a" / "t.txt", "hello")
    assert stat.S_IMODE(text.stat().st_mode) == 0o664 and text.read_text() == "hello"
    folder = write_folder_atomic(tmp_path / "probe", lambda work: (work / "x").write_text("1"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o775 and (folder / "x").read_text() == "1"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = write_text_atomic(tmp_path / "t.txt", "old")

    def half(stream) -> None:
        stream.write(b"new, half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(path, half)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["t.txt"]
    def fill(work) -> None:
        with open(work / "x", "wb") as stream:
            half(stream)

    with pytest.raises(RuntimeError):
        write_folder_atomic(tmp_path / "f", fill)
    assert os.listdir(tmp_path) == ["t.txt"]


def test_sweep_removes_what_dead_processes_left_and_keeps_the_living(tmp_path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()
    left = tmp_path / f".x.png{TEMPORARY_MARK}{host}-{dead}-ab12"
    left.write_bytes(b"half a png")
    folder = tmp_path / f".probe{TEMPORARY_MARK}{host}-{dead}-cd34"
    folder.mkdir()
    (folder / "index.csv").write_text("image\n")
    mine = temporary_path(tmp_path / "y.png")
    mine.write_bytes(b"being written")
    other_host = tmp_path / f".z.png{TEMPORARY_MARK}elsewhere-{dead}-ef56"
    other_host.write_bytes(b"not ours to judge")
    user = tmp_path / "results.png"
    user.write_bytes(b"a user's file")
    assert set(sweep_temporaries(tmp_path)) == {left, folder}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, other_host.name, user.name])
