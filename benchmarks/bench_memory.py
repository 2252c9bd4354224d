"""Memory and time follow what is shown, not the size of the input.

Runs the ``vlx`` command in fresh processes and reads each one's peak resident memory:
``vlx explain`` and ``vlx caption`` on a 24-megapixel photo (6000 x 4000) against the same
photo at 600 x 400, and ``vlx caption`` of a 200-word caption against a 20-word one. Before
pictures were drawn at a bounded size and targets taken in memory-bounded chunks, the photo
took 3.3 GB / 18 s (explain) and 4.5 GB / 64 s (caption), and memory grew with the square of
the caption's length.

    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ASSETS = Path(__file__).resolve().parents[1] / "vlx" / "assets"


def peak(argv: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one ``vlx`` run in a fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "vlx.cli", *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"vlx {' '.join(argv)} failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> None:
    work = Path(tempfile.mkdtemp())
    photo = Image.open(ASSETS / "coffee.jpg").convert("RGB")
    big, small = work / "big.jpg", work / "small.jpg"
    photo.resize((6000, 4000), Image.Resampling.BICUBIC).save(big, quality=90)
    photo.save(small, quality=90)
    words = ["a", "large", "red", "circle", "left", "of", "a", "small", "blue", "star", "on", "a", "plain", "background"]
    runs = {
        "explain 600 x 400": ["explain", str(small)],
        "explain 6000 x 4000 (24 MP)": ["explain", str(big)],
        "caption 600 x 400": ["caption", str(small)],
        "caption 6000 x 4000 (24 MP)": ["caption", str(big)],
        "caption, 20 words": ["caption", "--caption", " ".join((words * 20)[:20])],
        "caption, 200 words": ["caption", "--caption", " ".join((words * 20)[:200])],
    }
    results = {name: peak([*argv, "--out", str(work / "out")]) for name, argv in runs.items()}
    print("| run | peak RSS (MB) | seconds |")
    print("|---|---|---|")
    for name, (mb, seconds) in results.items():
        print(f"| {name} | {mb:.0f} | {seconds:.1f} |")
    for pair in (("explain 6000 x 4000 (24 MP)", "explain 600 x 400"),
                 ("caption 6000 x 4000 (24 MP)", "caption 600 x 400"),
                 ("caption, 200 words", "caption, 20 words")):
        ratio = results[pair[0]][0] / results[pair[1]][0]
        print(f"{pair[0]} / {pair[1]}: {ratio:.2f}x the memory (goal <= 1.5x: "
              f"{'PASS' if ratio <= 1.5 else 'MISS'})")


if __name__ == "__main__":
    main()
