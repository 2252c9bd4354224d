"""Dissection memory does not grow with the probe: peak memory for 4x the images vs 1x.

Each size runs in a fresh process (peak RSS is a high-water mark) that loads a model, opens
the probe, then dissects it. Reported per size:
  peak RSS         - the process's high-water mark (includes torch, the model, buffers);
  dissection RSS   - that peak minus the RSS just before dissecting: the working memory of
                     the dissection itself (batches, upsampled masks, accumulators);
  Python peak      - tracemalloc's peak during the dissection (NumPy arrays, PIL, lists);
Goal: every ratio 4x / 1x at most 1.1.

    python benchmarks/bench_dissect_memory.py [--images 100] [--model captioner]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

PAGE = os.sysconf("SC_PAGE_SIZE")


def current_rss() -> int:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * PAGE


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(model_name: str, images: int) -> dict[str, float]:
    """Dissect ``images`` probe images in this process; the probe is already cached."""
    import torch

    from vlx.commands.dissect import dissection_subject
    from vlx.dissect import dissect, load_probe

    subject = dissection_subject(model_name, None, torch.device("cpu"))
    probe = load_probe("shapes", images)
    before = current_rss()
    tracemalloc.start()
    start = time.perf_counter()
    result = dissect(subject.model, subject.layer, probe, subject.prepare,
                     forward=subject.forward, to_grid=subject.to_grid, progress=False)
    seconds = time.perf_counter() - start
    python_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "images": images,
        "units": len(result.units),
        "seconds": seconds,
        "peak_rss": peak_rss(),
        "dissection_rss": peak_rss() - before,
        "python_peak": python_peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="1x probe size (100)")
    parser.add_argument("--model", default="captioner", help="as `vlx dissect --model`")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.child)))
        return
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "VLX_CACHE": cache, "OMP_NUM_THREADS": "1"}
        rows = []
        for images in (args.images, 4 * args.images):
            # write the probe first, in its own process, so the measured one only reads it
            subprocess.run(
                [sys.executable, "-c",
                 f"from vlx.dissect import load_probe; load_probe('shapes', {images})"],
                env=env, check=True,
            )
            done = subprocess.run(
                [sys.executable, __file__, "--model", args.model, "--child", str(images)],
                env=env, check=True, capture_output=True, text=True,
            )
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    mib = 1 << 20
    print(f"{'images':>7} {'units':>6} {'seconds':>8} {'peak RSS':>10} "
          f"{'dissection RSS':>15} {'Python peak':>12}")
    for row in rows:
        print(f"{row['images']:>7} {row['units']:>6} {row['seconds']:>8.1f} "
              f"{row['peak_rss'] / mib:>8.1f} M {row['dissection_rss'] / mib:>13.1f} M "
              f"{row['python_peak'] / mib:>10.2f} M")
    one, four = rows
    for key in ("peak_rss", "dissection_rss", "python_peak"):
        print(f"ratio 4x/1x {key}: {four[key] / max(one[key], 1):.3f}")


if __name__ == "__main__":
    main()
