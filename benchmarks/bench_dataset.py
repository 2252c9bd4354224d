"""Dataset runs against the engine alone, in one run (CPU).

(a) `vlx explain --data` over 1,000 images (224 px, EfficientNet-Lite0, batch 32) against the
engine alone (`vlx.explain`) on the same images already decoded and preprocessed in memory:
throughput ratio (goal >= 0.85x). (b) Peak RSS of the dataset run for 4x the images (goal
<= 1.1x). (c) `torchrun` with 2 processes of 1 thread each against 1 process of 1 thread
(goal >= 1.7x the throughput). (d) Every word of 256 ShapesWorld captions, `vlx caption --data
shapes:256`, against 256 single-scene `vlx caption` explanations in one process.

    python benchmarks/bench_dataset.py [--images 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ASSETS = Path(__file__).resolve().parents[1] / "vlx" / "assets"


def photos(folder: Path, count: int) -> Path:
    """``count`` distinct 224 x 224 JPEGs: crops of the bundled photos, shifted and flipped."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [Image.open(ASSETS / name).convert("RGB") for name in ("chelsea.jpg", "coffee.jpg")]
    for i in range(count):
        image = sources[i % 2]
        x, y = (i * 7) % (image.width - 224), (i * 3) % (image.height - 224)
        crop = image.crop((x, y, x + 224, y + 224))
        if i % 4 >= 2:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop.save(folder / f"{i:05d}.jpg", quality=92)
    return folder


def timed(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak RSS MB of the largest process) of one command."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def engine_alone(folder: Path, batch: int) -> float:
    """Images per second of `vlx.explain` on tensors prepared beforehand (model loaded)."""
    import vlx
    from vlx.images import load_image
    from vlx.task import Example
    from vlx.tasks.loading import load_task

    task = load_task("classify")
    files = sorted(folder.glob("*.jpg"))
    inputs = [task.prepare([Example(load_image(f)) for f in files[i : i + batch]]).inputs
              for i in range(0, len(files), batch)]
    start = time.perf_counter()
    for x in inputs:
        vlx.explain(task.model, x, method="gradcam", layer=task.layer)
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    folder = photos(work / "images", args.images)
    vlx = [sys.executable, "-m", "vlx"]
    run = [*vlx, "explain", "--data", str(folder), "--batch-size", "32", "--workers", "2"]

    engine = engine_alone(folder, 32)
    seconds, _ = timed([*run, "--out", str(work / "a")])
    load_seconds, _ = timed([*vlx, "explain", "--list-classes"])  # start-up and model load
    dataset = args.images / (seconds - load_seconds)
    print(f"(a) dataset run {dataset:.1f} images/s (start-up {load_seconds:.1f} s left out), "
          f"engine alone {engine:.1f} images/s: {dataset / engine:.2f}x (goal >= 0.85x)")

    small = photos(work / "small", args.images // 4)
    _, small_rss = timed([*run[:5], str(small), *run[6:], "--out", str(work / "b1")])
    _, big_rss = timed([*run, "--out", str(work / "b4")])
    print(f"(b) peak RSS {small_rss:.0f} MB for {args.images // 4} images, {big_rss:.0f} MB for "
          f"{args.images}: {big_rss / small_rss:.2f}x (goal <= 1.1x)")

    one_thread = {"OMP_NUM_THREADS": "1"}
    few = photos(work / "few", max(64, args.images // 4))
    base = [*vlx[1:], "explain", "--data", str(few), "--batch-size", "16", "--workers", "0"]
    single, _ = timed([sys.executable, *base, "--out", str(work / "c1")], one_thread)
    double, _ = timed([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                       *base, "--out", str(work / "c2")], one_thread)
    print(f"(c) torchrun 2 x 1 thread {double:.1f} s, 1 x 1 thread {single:.1f} s: "
          f"{single / double:.2f}x the throughput (goal >= 1.7x)")

    batched, _ = timed([*vlx, "caption", "--data", "shapes:256", "--out", str(work / "d"),
                        "--workers", "1"])
    loop = [sys.executable, "-c", (
            "from PIL import Image; from vlx.task import Example; "
            "from vlx.tasks.loading import load_task; "
            "from vlx.data.shapes import SPLITS, ShapesWorld; "
            "c = load_task('caption'); w = ShapesWorld(seed=0)\n"
            "for i in range(256):\n"
            "    b = c.prepare([Example(Image.fromarray(w.scene(SPLITS['test'][0] + i).image))])\n"
            "    c.explain(b, c.targets(b))")]
    looped, _ = timed(loop)
    print(f"(d) all words of 256 captions: --data shapes:256 {batched:.1f} s, 256 single-scene "
          f"calls {looped:.1f} s: {looped / batched:.2f}x")
    print(f"threads: {torch.get_num_threads()}, cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
