"""Per-word captioning explanations: all words in one pass vs one word vs one pass per word.

Measures, on the shipped Show-and-Tell checkpoint and a 12-word caption:
  all words  - vlx: one forward and one batched backward for every word of the caption;
  one word   - vlx: the same call for a single word (the last) of the same caption;
  loop (vlx) - one vlx call per word (one forward and backward each);
  loop (pytorch-grad-cam) - one pytorch-grad-cam call per word, the way its users write
               it: the caption fixed inside a wrapper module, a target function per word.
Goals: all words / one word <= 1.5x; the loops cost about T times one word.

    python benchmarks/bench_caption.py [--repeats 10] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from PIL import Image
from torch import nn

from vlx.data.shapes import SPLITS, ShapesWorld
from vlx.task import Example
from vlx.tasks.captioning import ShowAndTellCaptioner

WORDS = 12


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


class FixedCaption(nn.Module):
    """What a pytorch-grad-cam user writes: a single-input model with the caption baked in."""

    def __init__(self, captioner: ShowAndTellCaptioner, words: list[str]) -> None:
        super().__init__()
        self.model = captioner.model
        vocabulary = captioner.vocabulary
        self.tokens = torch.tensor([[vocabulary.start, *vocabulary.encode(words)]],
                                   device=captioner.device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images, self.tokens.expand(images.shape[0], -1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    captioner = ShowAndTellCaptioner.load(device=device)
    world = ShapesWorld(seed=0)
    scene = next(
        world.scene(i) for i in range(SPLITS["test"][0], SPLITS["test"][0] + 1000)
        if len(world.scene(i).caption().split()) >= WORDS
    )
    words = scene.caption().split()[:WORDS]
    batch = captioner.prepare([Example(Image.fromarray(scene.image), " ".join(words))])
    inputs = batch.inputs
    every, last = captioner.targets(batch), captioner.targets(batch, [WORDS - 1])
    alone = [captioner.targets(batch, [t]) for t in range(WORDS)]

    rows = {
        "all 12 words (vlx)": median_ms(lambda: captioner.explain(batch, every), args.repeats,
                                        device),
        "one word (vlx)": median_ms(lambda: captioner.explain(batch, last), args.repeats, device),
    }
    rows["loop of 12 (vlx, one word per call)"] = median_ms(
        lambda: [captioner.explain(batch, targets) for targets in alone],
        max(1, args.repeats // 3), device,
    )
    try:
        from pytorch_grad_cam import GradCAM as PeerGradCAM
    except ImportError:
        print('pytorch-grad-cam is missing: pip install -e ".[bench]" to compare against it')
    else:
        wrapper = FixedCaption(captioner, words).eval()
        ids = captioner.vocabulary.encode(words)

        def peer_loop() -> None:
            with PeerGradCAM(wrapper, target_layers=[captioner.model.encoder.stages[2]]) as cam:
                for t in range(WORDS):
                    def target(logits: torch.Tensor, t: int = t) -> torch.Tensor:
                        return logits[t].log_softmax(-1)[ids[t]]

                    with torch.backends.mkldnn.flags(enabled=False):
                        cam(input_tensor=inputs, targets=[target])
            wrapper.zero_grad(set_to_none=True)

        rows["loop of 12 (pytorch-grad-cam)"] = median_ms(peer_loop, max(1, args.repeats // 3), device)

    one = rows["one word (vlx)"]
    print(f"caption: {' '.join(words)}  (device {device}, torch threads {torch.get_num_threads()})")
    print("| measurement | median ms | / one word |")
    print("|---|---|---|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.1f} | {ms / one:.2f}x |")
    ratio = rows["all 12 words (vlx)"] / one
    print(f"goal all words / one word <= 1.5x: {ratio:.2f}x {'PASS' if ratio <= 1.5 else 'MISS'}")


if __name__ == "__main__":
    main()
