"""Targeted PGD (paper Sec. 6.2): fool a classifier while Grad-CAM keeps seeing the object.

The attack lives in pixel space, the [0, 1] RGB image at the classifier's input size, and
normalises on the way into the model, so ``epsilon`` means what a person reads ("4/255 of
the pixel range") whatever mean and std the classifier's preprocessing uses, and every
adversarial image is a valid picture (inside the [0, 1] box).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vlx.targets import logits_of


def targeted_pgd(
    model: nn.Module,
    pixels: torch.Tensor,
    targets: Sequence[int] | torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    epsilon: float = 4 / 255,
    steps: int = 20,
    step_size: float | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Adversarial (N, 3, H, W) pixels in [0, 1] that push each image toward its target class.

    Projected gradient descent on the cross-entropy of the target class (L-inf ball of radius
    ``epsilon`` around ``pixels``, intersected with the [0, 1] box), starting from the clean
    image: each step moves every pixel by ``step_size`` (default ``2.5 * epsilon / steps``,
    Madry et al.) against the sign of the gradient. Only the perturbation gets gradients:
    the model's parameters get no ``.grad`` and its mode is left as it is.

    Args:
        model: maps normalised (N, 3, H, W) input to class scores (a tensor, HF output or tuple).
        pixels: clean images in [0, 1] at the model's input size.
        targets: one target class index per image.
        mean, std: the per-channel normalisation the model expects, ``(pixels - mean) / std``.
        epsilon: the largest change of any pixel value, in [0, 1] pixel units.
        steps: gradient steps.
        progress: show a progress bar.
    """
    if epsilon < 0 or steps < 0:
        raise ValueError(f"epsilon and steps must be non-negative, got {epsilon} and {steps}")
    if pixels.dim() != 4 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must be (N, 3, H, W), got shape {tuple(pixels.shape)}")
    clean = pixels.detach()
    if clean.min() < 0 or clean.max() > 1:
        raise ValueError("pixels must lie in [0, 1]; pass the image before normalisation")
    target = torch.as_tensor(targets, dtype=torch.long, device=clean.device).reshape(-1)
    if target.numel() != clean.shape[0]:
        raise ValueError(f"got {target.numel()} targets for {clean.shape[0]} images")
    shift = torch.as_tensor(mean, dtype=clean.dtype, device=clean.device).view(1, 3, 1, 1)
    scale = torch.as_tensor(std, dtype=clean.dtype, device=clean.device).view(1, 3, 1, 1)
    step = 2.5 * epsilon / max(steps, 1) if step_size is None else step_size
    low = (clean - epsilon).clamp_min(0.0)
    high = (clean + epsilon).clamp_max(1.0)
    adversarial = clean.clone()
    iterations: Sequence[int] = range(steps)
    if progress:
        from vlx.training import progress as progress_bar

        iterations = progress_bar(0, steps, "targeted PGD")
    for _ in iterations:
        adversarial.requires_grad_(True)
        logits = logits_of(model((adversarial - shift) / scale))
        loss = F.cross_entropy(logits.float(), target, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, adversarial)
        with torch.no_grad():
            adversarial = adversarial - step * gradient.sign()
            adversarial = torch.maximum(torch.minimum(adversarial, high), low)
    return adversarial.detach()
