"""Ctrl-C and SIGTERM: one line, the conventional status, and nothing half-written left."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.parametrize(("sent", "status", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                      (signal.SIGTERM, 143, "terminated")])
def test_a_signal_ends_a_run_cleanly(sent, status, word, tmp_path) -> None:
    out = tmp_path / "out"
    # occlusion on both photos runs for many seconds: long enough to be stopped mid-way
    process = subprocess.Popen(
        [sys.executable, "-m", "vlx.cli", "explain", "--demo", "--method", "occlusion",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(6)
    process.send_signal(sent)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert err.strip().splitlines()[-1] == f"vlx explain: {word}"
    assert "Traceback" not in err
    assert not out.exists() or not [p for p in out.rglob("*") if p.name.startswith(".")]
