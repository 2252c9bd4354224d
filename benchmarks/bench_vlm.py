"""A generative VLM at real size on the CPU: every word of a 12-word answer in one call.

An Idefics3 model with SmolVLM-256M's layer sizes (SigLIP-B/16 at 512 px, 12 blocks; a
30-block SmolLM2-135M-sized language model; pixel shuffle 4: 64 tokens a view), random
weights, one 512 x 512 photo (split as SmolVLM splits it: 4 x 4 tiles and the whole image),
a question and a 12-word answer. Three cases, each in its own process so that each peak RSS
is its own: (1) one plain forward over prompt + answer, no gradients; (2) vlx: Grad-CAM of
every word of the answer in one call (one forward, one batched backward); (3) the same words
explained one call each. Prints times and peak RSS with the ratios.

    python benchmarks/bench_vlm.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "what is in the image?"
ANSWER = "a red circle left of a blue square and a green star"  # 12 words
SMOLVLM_256M = {
    "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
               "num_attention_heads": 12},
    "lm": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
           "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
           "vocab_size": 49280, "max_position_embeddings": 8192},
}


def case(name: str) -> dict:
    """Seconds and peak RSS (MB) of one case, after the model is built."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from PIL import Image
    from vlm_tiny import idefics3_parts

    from vlx.task import Example
    from vlx.tasks.hf_vlm import VLMCaptioner

    model, processor = idefics3_parts(tile=512, longest=2048, patch=16, scale=4,
                                      **SMOLVLM_256M)
    task = VLMCaptioner(model, processor, prompt=QUESTION)
    photo = Image.open(ROOT / "vlx" / "assets" / "chelsea.jpg").convert("RGB").resize((512, 512))
    batch = task.prepare([Example(photo, ANSWER)])
    targets = task.targets(batch)
    assert len(targets.rows[0]) == 12
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    if name == "forward":
        problem = task.problem(batch, targets)
        with torch.no_grad():
            problem.model(*problem.inputs, **problem.model_kwargs)
    elif name == "batched":
        task.explain(batch, targets)
    else:
        for t in range(12):
            task.explain(batch, task.targets(batch, [t]))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "model_rss": before, "views": len(batch.state["views"][0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("forward", "batched", "loop"))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(args.case)))
        return
    results = {}
    for name in ("forward", "batched", "loop"):
        out = subprocess.run([sys.executable, __file__, "--case", name], check=True,
                             capture_output=True, text=True, env=os.environ).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    forward, batched, loop = results["forward"], results["batched"], results["loop"]
    print(f"Idefics3 at SmolVLM-256M's sizes, one 512 x 512 photo ({batched['views']} views), "
          f"12 words; model alone {batched['model_rss']:.0f} MB")
    print(f"plain forward      {forward['seconds']:6.2f} s  peak RSS {forward['rss']:6.0f} MB")
    print(f"vlx, one call      {batched['seconds']:6.2f} s  peak RSS {batched['rss']:6.0f} MB  "
          f"{batched['seconds'] / forward['seconds']:.2f}x the forward, "
          f"{batched['rss'] / forward['rss']:.2f}x its RSS")
    print(f"one call per word  {loop['seconds']:6.2f} s  peak RSS {loop['rss']:6.0f} MB  "
          f"vlx is {loop['seconds'] / batched['seconds']:.1f}x faster")


if __name__ == "__main__":
    main()
