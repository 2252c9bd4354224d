"""Dataset runs against the engine alone, in one run (CPU).

(a) `vlx explain --data` over 1,000 images (224 px, EfficientNet-Lite0, batch 32) against the
engine alone (`vlx.explain`) on the same images already decoded and preprocessed in memory:
throughput ratio (goal >= 0.85x). (b) Peak RSS of the dataset run for 4x the images (goal
<= 1.1x). (c) `torchrun` with 2 processes of 1 thread each against 1 process of 1 thread
(goal >= 1.7x the throughput). (d) Every word of 256 ShapesWorld captions, `vlx caption --data
shapes:256`, against 256 single-scene `vlx caption` explanations in one process.

Throughputs are the runs' own (`summary.json`'s seconds, from the first batch to the last part
written): the model's load and the interpreter's start-up, paid once per run whatever its size,
are left out on both sides. Each run uses its default loader workers (none on the CPU).

    python benchmarks/bench_dataset.py [--images 1000]
"""

from __future__ import annotations

import argparse
import json
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
    """(seconds of the run, from its summary.json, peak RSS MB of the largest process) of one
    dataset run; argv ends with its --out folder."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed")
    summary = json.loads((Path(argv[-1]) / "summary.json").read_text())
    return summary["seconds"], usage.ru_maxrss / 1024


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


def single_captions(count: int) -> float:
    """Seconds of ``count`` single-scene caption explanations, every word, after the load."""
    from vlx.data.shapes import SPLITS, ShapesWorld
    from vlx.task import Example
    from vlx.tasks.loading import load_task

    task, world = load_task("caption"), ShapesWorld(seed=0)
    start = time.perf_counter()
    for i in range(count):
        scene = world.scene(SPLITS["test"][0] + i)
        batch = task.prepare([Example(Image.fromarray(scene.image))])
        task.explain(batch, task.targets(batch))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    folder = photos(work / "images", args.images)
    vlx = [sys.executable, "-m", "vlx"]
    run = [*vlx, "explain", "--data", str(folder), "--batch-size", "32"]

    engine = engine_alone(folder, 32)
    seconds, _ = timed([*run, "--out", str(work / "a")])
    dataset = args.images / seconds
    print(f"(a) dataset run {dataset:.1f} images/s, engine alone {engine:.1f} images/s: "
          f"{dataset / engine:.2f}x (goal >= 0.85x)")

    small = photos(work / "small", args.images // 4)
    _, small_rss = timed([*run[:5], str(small), *run[6:], "--out", str(work / "b1")])
    _, big_rss = timed([*run, "--out", str(work / "b4")])
    print(f"(b) peak RSS {small_rss:.0f} MB for {args.images // 4} images, {big_rss:.0f} MB for "
          f"{args.images}: {big_rss / small_rss:.2f}x (goal <= 1.1x)")

    one_thread = {"OMP_NUM_THREADS": "1"}
    few = photos(work / "few", max(64, args.images // 4))
    base = [*vlx[1:], "explain", "--data", str(few), "--batch-size", "16"]
    single, _ = timed([sys.executable, *base, "--out", str(work / "c1")], one_thread)
    double, _ = timed([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                       *base, "--out", str(work / "c2")], one_thread)
    print(f"(c) torchrun 2 x 1 thread {double:.1f} s, 1 x 1 thread {single:.1f} s: "
          f"{single / double:.2f}x the throughput (goal >= 1.7x)")

    batched, _ = timed([*vlx, "caption", "--data", "shapes:256", "--out", str(work / "d")])
    looped = single_captions(256)
    print(f"(d) all words of 256 captions: --data shapes:256 {batched:.1f} s, 256 single-scene "
          f"calls {looped:.1f} s: {looped / batched:.2f}x")
    print(f"threads: {torch.get_num_threads()}, cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
