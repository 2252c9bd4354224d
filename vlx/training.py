"""What every training command shares: atomic, resumable checkpoints with metadata beside them.

A checkpoint holds only tensors and plain containers, so it loads with
``torch.load(weights_only=True)``; ``<name>.json`` next to it says how it was made (seed, data,
steps, metrics, command) so a shipped checkpoint can be reproduced and judged.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: str | Path, payload: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write ``payload`` and ``<path>.json`` atomically: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic(path, lambda stream: torch.save(payload, stream))
    info = {
        **metadata,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    write_text_atomic(metadata_path(path), text)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file (a results table, a report) so a crash never leaves half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic(path, lambda stream: stream.write(text.encode()))
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` (tensors only: ``weights_only``)."""
    return torch.load(Path(path), map_location=device, weights_only=True)


def read_metadata(path: str | Path) -> dict[str, Any]:
    meta = metadata_path(Path(path))
    return json.loads(meta.read_text()) if meta.is_file() else {}


def metadata_path(path: Path) -> Path:
    return path.with_suffix(".json")


def command_line() -> str:
    """The command that is running, for the metadata (program name without its folder)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def cosine_lr(step: int, steps: int, peak: float, warmup: int = 100, floor: float = 0.05) -> float:
    """Linear warm-up, then cosine decay to ``floor * peak``; a pure function of ``step`` so a
    resumed run follows the same schedule."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainingOptions:
    """What every ``vlx train MODEL`` command takes."""

    out: Path
    data: str = "shapes"
    steps: int = 4000
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0
    checkpoint_every: int = 500
    eval_images: int = 300
    resume: bool = False
    device: str = "cpu"


def resumed_adam(
    parameters: list[torch.nn.Parameter], lr: float, state: dict | None, start: int
) -> torch.optim.Adam:
    """Adam over ``parameters``, with the saved state of a resumed run where there is one."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    if state is not None:
        optimizer.load_state_dict(state)
    elif start:
        warnings.warn(
            "the checkpoint has no optimizer state; resuming with a fresh optimizer", stacklevel=3
        )
    return optimizer


def optimise(
    optimizer: torch.optim.Optimizer,
    steps: int,
    lr: float,
    step_loss: Callable[[int], torch.Tensor],
    description: str,
    *,
    start: int = 0,
    warmup: int = 100,
    clipped: list[torch.nn.Parameter] | None = None,
    checkpoint: Callable[[int, float], None] | None = None,
    checkpoint_every: int = 0,
) -> float:
    """Steps ``start..steps-1`` of the cosine schedule with a progress bar: ``step_loss(step)``
    gives the loss; gradients of ``clipped`` (if given) are clipped to norm 5; and
    ``checkpoint(done, loss)`` runs every ``checkpoint_every`` steps before the last (the
    caller saves the final state). Returns the mean of the last 100 losses."""
    losses: list[float] = []
    for step in progress(start, steps, description):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup=warmup)
        loss = step_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clipped is not None:
            torch.nn.utils.clip_grad_norm_(clipped, 5.0)
        optimizer.step()
        losses.append(loss.item())
        done = step + 1
        if checkpoint is not None and done % checkpoint_every == 0 and done < steps:
            checkpoint(done, recent_mean(losses))
    return recent_mean(losses)


def recent_mean(values: list[float], last: int = 100) -> float:
    """Mean of the last ``last`` values (NaN for none): the loss a checkpoint reports."""
    tail = values[-last:]
    return sum(tail) / len(tail) if tail else float("nan")


def progress(start: int, steps: int, description: str) -> Iterator[int]:
    """Steps ``start..steps-1`` with a tqdm progress bar."""
    from tqdm.auto import tqdm

    return iter(tqdm(range(start, steps), initial=start, total=steps, desc=description))


def _atomic(path: Path, write: Callable[[Any], Any]) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
