"""Speed of vlx's Grad-CAM engine against its peers and against the cheapest possible backward.

Measured on torchvision ResNet-50 (random weights, eval mode), explained at ``layer4``:

(a) ``--batch`` images, one target each (a different class per image):
    vlx ``GradCAM`` | pytorch-grad-cam ``GradCAM`` + ``ClassifierOutputTarget`` per image |
    Captum ``LayerGradCam`` (``target=`` class tensor, ``relu_attributions=True``) |
    LIMIT: one forward with a hook on the layer + one ``torch.autograd.grad`` of the summed
    selected logits to the layer's output.
(b) one image, ``--targets`` classes:
    vlx with ``targets=[[c0, ..., cT-1]]`` (one forward, one batched backward) |
    T pytorch-grad-cam calls | T Captum calls |
    LIMIT: one forward + ``torch.autograd.grad(..., is_grads_batched=True)`` to the layer.
(c) CUDA only: ``--gpu-batch`` images, one target each: vlx | a plain forward under
    ``torch.no_grad`` | Captum | pytorch-grad-cam.

Every method runs ``--warmup`` times, then ``--repeats`` rounds (methods interleaved within a
round, so load drift hits all alike); the median wall time (``time.perf_counter``, with
``torch.cuda.synchronize`` on CUDA) is reported with the ratios peer / vlx and vlx / limit,
next to the goals of the issue (PASS / MISS). Before timing, vlx's maps are checked against
Captum's (same definition: max abs difference) and pytorch-grad-cam's (which normalises and
upsamples: its own 7x7 map, normalised, and the correlation of the 224 px outputs).

The peers are optional (``pip install -e ".[bench]"``); a missing one is skipped.

Run:
    python benchmarks/bench_engine.py                       # CPU, defaults
    python benchmarks/bench_engine.py --repeats 3 --markdown
    python benchmarks/bench_engine.py --device cuda --gpu-batch 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
import torchvision
from torch import nn

import vlx
from vlx.explanation import normalize, upsample

LAYER = "layer4"
VLX = "vlx"
PGC = "pytorch-grad-cam"
CAPTUM = "captum"
LIMIT = "LIMIT"
FORWARD = "forward"
INSTALL_HINT = 'pip install -e ".[bench]"'


# --------------------------------------------------------------------------- optional peers


def optional_import(name: str, package: str) -> ModuleType | None:
    """The module, or None with a note on what provides it."""
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        print(f"[skip] {package} is not installed ({INSTALL_HINT} provides it)")
        return None


@dataclass
class Peers:
    pgc: ModuleType | None  # pytorch_grad_cam
    pgc_targets: ModuleType | None  # pytorch_grad_cam.utils.model_targets
    captum: ModuleType | None  # captum.attr

    @classmethod
    def load(cls) -> Peers:
        pgc = optional_import("pytorch_grad_cam", "grad-cam (pytorch-grad-cam)")
        targets = optional_import("pytorch_grad_cam.utils.model_targets", "grad-cam") if pgc else None
        return cls(pgc=pgc, pgc_targets=targets, captum=optional_import("captum.attr", "captum"))


# --------------------------------------------------------------------------- methods


def run_vlx(model: nn.Module, x: torch.Tensor, classes: list[list[int]]) -> torch.Tensor:
    """vlx maps (N, T, h, w): one forward, one (batched) backward to the layer."""
    with vlx.GradCAM(model, LAYER) as cam:
        return cam(x, targets=classes).maps


def run_pgc(peers: Peers, model: nn.Module, x: torch.Tensor, classes: list[int]) -> np.ndarray:
    """pytorch-grad-cam maps (N, H, W): one call, one target per image (its only mode)."""
    targets = [peers.pgc_targets.ClassifierOutputTarget(c) for c in classes]
    with peers.pgc.GradCAM(model=model, target_layers=[model.layer4]) as cam:
        maps = cam(input_tensor=x, targets=targets)
    model.zero_grad(set_to_none=True)  # it backpropagates into every parameter's .grad
    return maps


def run_captum(peers: Peers, model: nn.Module, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Captum LayerGradCam maps (N, 1, h, w) with the ReLU on, not upsampled."""
    target = torch.tensor(classes, device=x.device)
    attr = peers.captum.LayerGradCam(model, model.layer4)
    return attr.attribute(x, target=target, relu_attributions=True)


def run_limit(model: nn.Module, x: torch.Tensor, classes: list[list[int]]) -> torch.Tensor:
    """The cheapest way to dy/dA: hook the layer, one forward, one grad of the chosen logits."""
    captured: list[torch.Tensor] = []
    handle = model.layer4.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    index = torch.tensor(classes, device=x.device)
    scores = logits.gather(1, index)
    if scores.shape[1] == 1:
        (grad,) = torch.autograd.grad(scores.sum(), captured[0])
        return grad
    n, t = scores.shape
    eye = torch.eye(t, dtype=scores.dtype, device=scores.device)[:, None, :].expand(t, n, t)
    (grad,) = torch.autograd.grad(scores, captured[0], grad_outputs=eye, is_grads_batched=True)
    return grad


def run_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A plain inference forward: the floor any explanation pays."""
    with torch.no_grad():
        return model(x)


# --------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_methods(
    methods: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per method; methods interleave within each round."""
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


# --------------------------------------------------------------------------- agreement


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    return float((a @ b) / denom) if denom > 0 else float("nan")


def check_captum(peers: Peers, model: nn.Module, x: torch.Tensor, classes: list[int]) -> bool:
    """vlx vs Captum, image i with classes[i]: the same numbers up to float rounding."""
    ours = run_vlx(model, x, [[c] for c in classes])[:, 0]
    theirs = run_captum(peers, model, x, classes)[:, 0].detach()
    diff = float((ours - theirs).abs().max())
    scale = float(ours.abs().max())
    ok = diff <= 1e-4 * max(scale, 1.0)
    print(f"  vlx vs Captum ({len(classes)} maps): max |diff| = {diff:.2e} "
          f"(max map value {scale:.3g}) -> {'OK' if ok else 'MISMATCH'}")
    return ok


def check_captum_targets(
    peers: Peers, model: nn.Module, image: torch.Tensor, classes: list[int]
) -> bool:
    """vlx's T maps of one image (batched backward) vs T separate Captum calls."""
    ours = run_vlx(model, image, [classes])[0]
    theirs = torch.cat([run_captum(peers, model, image, [c])[0] for c in classes]).detach()
    diff = float((ours - theirs).abs().max())
    scale = float(ours.abs().max())
    ok = diff <= 1e-4 * max(scale, 1.0)
    print(f"  vlx ({len(classes)} targets, one image) vs {len(classes)} Captum calls: "
          f"max |diff| = {diff:.2e} (max map value {scale:.3g}) -> {'OK' if ok else 'MISMATCH'}")
    return ok


def check_pgc(peers: Peers, model: nn.Module, x: torch.Tensor, classes: list[int]) -> bool:
    """vlx vs pytorch-grad-cam, which returns (N, H, W) maps normalised to [0, 1] and resized.

    Compares (1) its own 7x7 map (recomputed from the activations and gradients its hooks
    stored, then normalised) with vlx's normalised map, and (2) its 224 px output with vlx's
    map bilinearly upsampled and normalised (correlation and peak location).
    """
    targets = [peers.pgc_targets.ClassifierOutputTarget(c) for c in classes]
    with peers.pgc.GradCAM(model=model, target_layers=[model.layer4]) as cam:
        full = torch.from_numpy(cam(input_tensor=x, targets=targets))
        store = cam.activations_and_grads
        raw = cam.get_cam_image(x, model.layer4, targets, store.activations[0].numpy(),
                                store.gradients[0].numpy())
    model.zero_grad(set_to_none=True)
    ours = run_vlx(model, x, [[c] for c in classes]).cpu()
    small = normalize(torch.from_numpy(np.maximum(raw, 0)).float()[:, None])[:, 0]
    diff_small = float((normalize(ours)[:, 0] - small).abs().max())
    big = normalize(upsample(ours, tuple(full.shape[-2:])))[:, 0]
    corr = min(correlation(big[i], full[i]) for i in range(len(classes)))
    peaks_equal = bool((big.flatten(1).argmax(1) == full.flatten(1).argmax(1)).all())
    ok = diff_small <= 1e-3 and corr >= 0.99
    print(f"  vlx vs pytorch-grad-cam ({len(classes)} maps): normalised 7x7 max |diff| = "
          f"{diff_small:.2e}; {tuple(full.shape[-2:])} outputs: min correlation {corr:.5f}, "
          f"same peak pixel: {peaks_equal} -> {'OK' if ok else 'MISMATCH'}")
    return ok


# --------------------------------------------------------------------------- cases


@dataclass
class Goal:
    label: str
    value: float | None  # None: a method was skipped
    target: float
    at_least: bool  # value >= target passes; otherwise value <= target passes

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "SKIP"
        ok = self.value >= self.target if self.at_least else self.value <= self.target
        return "PASS" if ok else "MISS"


@dataclass
class Case:
    name: str
    medians: dict[str, float]
    goals: list[Goal]


def ratio(medians: dict[str, float], num: str, den: str) -> float | None:
    if num not in medians or den not in medians:
        return None
    return medians[num] / medians[den]


def peer_methods(
    peers: Peers, model: nn.Module, x: torch.Tensor, classes: list[int]
) -> dict[str, Callable[[], object]]:
    """The peers' calls for one target per image (one call for the whole batch)."""
    methods: dict[str, Callable[[], object]] = {}
    if peers.pgc is not None:
        methods[PGC] = lambda: run_pgc(peers, model, x, classes)
    if peers.captum is not None:
        methods[CAPTUM] = lambda: run_captum(peers, model, x, classes)
    return methods


def case_batch(args: argparse.Namespace, peers: Peers, model: nn.Module, x: torch.Tensor,
               classes: list[int], device: torch.device) -> Case:
    """(a) N images, one target each."""
    per_image = [[c] for c in classes]
    methods: dict[str, Callable[[], object]] = {
        VLX: lambda: run_vlx(model, x, per_image),
        **peer_methods(peers, model, x, classes),
        LIMIT: lambda: run_limit(model, x, per_image),
    }
    medians = time_methods(methods, args.repeats, args.warmup, device)
    goals = [
        Goal(f"(a) {PGC} / vlx", ratio(medians, PGC, VLX), 2.5, at_least=True),
        Goal(f"(a) {CAPTUM} / vlx", ratio(medians, CAPTUM, VLX), 1.0, at_least=True),
        Goal("(a) vlx / LIMIT", ratio(medians, VLX, LIMIT), 1.25, at_least=False),
    ]
    return Case(f"(a) {len(classes)} images x 1 target", medians, goals)


def case_targets(args: argparse.Namespace, peers: Peers, model: nn.Module, image: torch.Tensor,
                 classes: list[int], device: torch.device) -> Case:
    """(b) one image, T targets: vlx and LIMIT in one backward, the peers in T calls."""
    t = len(classes)
    methods: dict[str, Callable[[], object]] = {VLX: lambda: run_vlx(model, image, [classes])}
    if peers.pgc is not None:
        methods[f"{PGC} x{t}"] = lambda: [run_pgc(peers, model, image, [c]) for c in classes]
    if peers.captum is not None:
        methods[f"{CAPTUM} x{t}"] = lambda: [run_captum(peers, model, image, [c]) for c in classes]
    methods[LIMIT] = lambda: run_limit(model, image, [classes])
    medians = time_methods(methods, args.repeats, args.warmup, device)
    goals = [
        Goal(f"(b) {PGC} x{t} / vlx", ratio(medians, f"{PGC} x{t}", VLX), 40.0, at_least=True),
        Goal(f"(b) {CAPTUM} x{t} / vlx", ratio(medians, f"{CAPTUM} x{t}", VLX), 15.0,
             at_least=True),
        Goal("(b) vlx / LIMIT", ratio(medians, VLX, LIMIT), 1.25, at_least=False),
    ]
    return Case(f"(b) 1 image x {t} targets", medians, goals)


def case_gpu_batch(args: argparse.Namespace, peers: Peers, model: nn.Module,
                   device: torch.device) -> Case:
    """(c) CUDA: a large batch, one target each, against a plain forward."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(args.gpu_batch, 3, args.size, args.size, generator=generator).to(device)
    classes = torch.randint(0, 1000, (args.gpu_batch,), generator=generator).tolist()
    methods: dict[str, Callable[[], object]] = {
        VLX: lambda: run_vlx(model, x, [[c] for c in classes]),
        FORWARD: lambda: run_forward(model, x),
        **peer_methods(peers, model, x, classes),
    }
    medians = time_methods(methods, args.repeats, args.warmup, device)
    goals = [Goal("(c) vlx / forward", ratio(medians, VLX, FORWARD), 1.2, at_least=False)]
    return Case(f"(c) {args.gpu_batch} images x 1 target (GPU)", medians, goals)


# --------------------------------------------------------------------------- report


def table_rows(cases: list[Case]) -> list[list[str]]:
    rows = []
    for case in cases:
        vlx_time = case.medians[VLX]
        for name, seconds in case.medians.items():
            if name == VLX:
                note = ""
            elif name in (LIMIT, FORWARD):
                note = f"vlx / {name} = {vlx_time / seconds:.2f}x"
            else:
                note = f"{name} / vlx = {seconds / vlx_time:.1f}x"
            rows.append([case.name, name, f"{seconds * 1e3:.1f}", note])
    return rows


def goal_rows(cases: list[Case]) -> list[list[str]]:
    rows = []
    for case in cases:
        for goal in case.goals:
            value = "-" if goal.value is None else f"{goal.value:.2f}x"
            target = f"{'>=' if goal.at_least else '<='} {goal.target:g}x"
            rows.append([goal.label, value, target, goal.verdict])
    return rows


def print_table(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="images in case (a)")
    parser.add_argument("--targets", type=int, default=20, help="targets in case (b)")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--gpu-batch", type=int, default=64, help="images in case (c), cuda only")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    return parser.parse_args(argv)


def build_model(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).eval().to(device)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peers = Peers.load()
    model = build_model(device)

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=generator).to(device)
    picks = torch.randperm(1000, generator=generator)
    batch_classes = picks[: args.batch].tolist()
    target_classes = picks[: args.targets].tolist()
    image = x[:1]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {name}, {torch.get_num_threads()} threads, resnet50 "
          f"{LAYER}, {args.size}px, repeats {args.repeats}, warmup {args.warmup}")

    print("agreement (checked once, before timing):")
    ok = True
    if peers.captum is not None:
        ok &= check_captum(peers, model, x, batch_classes)
        ok &= check_captum_targets(peers, model, image, target_classes)
    if peers.pgc is not None:
        ok &= check_pgc(peers, model, x, batch_classes)
    if not ok:
        print("maps disagree: timings of different answers are meaningless; stopping",
              file=sys.stderr)
        return 1

    cases = [
        case_batch(args, peers, model, x, batch_classes, device),
        case_targets(args, peers, model, image, target_classes, device),
    ]
    if device.type == "cuda":
        cases.append(case_gpu_batch(args, peers, model, device))

    print()
    print_table(["case", "method", "median ms", "ratio"], table_rows(cases), args.markdown)
    print()
    print_table(["goal", "measured", "target", "result"], goal_rows(cases), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
