"""What every training command shares: the options, the learning-rate schedule, the loop.

Checkpoints and their metadata are written by ``vlx.checkpoints``.
"""

from __future__ import annotations

import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from vlx.checkpoints import command_line, load_checkpoint, save_checkpoint
from vlx.errors import InputError
from vlx.files import check_output_file


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
    force: bool = False
    device: str = "cpu"


class Recipe(ABC):
    """What one kind of model brings to the shared loop: its model and training-only parts,
    one step's loss, its held-out evaluation and what its checkpoint holds.

    A recipe is built after the seed is set, from the options and, when a run resumes, the
    saved checkpoint; ``train`` does everything else (resumption, checkpoints, metadata).
    """

    name: ClassVar[str]
    """The model's name in the metadata (``show_and_tell``, ``vqa_coattention``, ...)."""
    warmup: int = 100

    def __init__(self, options: Any, saved: dict[str, Any] | None) -> None:
        self.options = options
        self.heads: dict[str, torch.nn.Module] = {}

    model: torch.nn.Module

    def add_head(self, name: str, head: torch.nn.Module, saved: dict[str, Any] | None) -> None:
        """A training-only module (an auxiliary loss's head): optimised with the model, kept
        in unfinished checkpoints under ``name``, restored from ``saved``."""
        if saved and name in saved:
            head.load_state_dict(saved[name])
        self.heads[name] = head

    @classmethod
    @abstractmethod
    def check_resumed(cls, saved: dict[str, Any], path: Path) -> dict[str, Any]:
        """``saved`` if a run of this recipe can continue it, else an ``InputError``."""

    @property
    @abstractmethod
    def description(self) -> str:
        """The progress bar's label."""

    @property
    @abstractmethod
    def data(self) -> Any:
        """What the metadata says the model was trained on."""

    def parameters(self) -> list[torch.nn.Parameter]:
        """Everything the optimizer updates: the model and its training-only heads."""
        return [*self.model.parameters(),
                *(p for head in self.heads.values() for p in head.parameters())]

    def clipped(self) -> list[torch.nn.Parameter] | None:
        """Parameters whose gradient norm is clipped to 5 (none by default)."""
        return None

    def optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.options.lr)

    @abstractmethod
    def step_loss(self, step: int) -> torch.Tensor:
        """The loss of training step ``step``: a pure function of (seed, step) and the weights."""

    @abstractmethod
    def evaluate(self) -> dict[str, Any]:
        """Held-out metrics of the trained model (in eval mode)."""

    @abstractmethod
    def payload(self) -> dict[str, Any]:
        """The model's checkpoint: everything loading it needs."""

    def training_state(self) -> dict[str, Any]:
        """Training-only state an unfinished checkpoint keeps for resumption: the heads."""
        return {name: head.state_dict() for name, head in self.heads.items()}

    def metadata(self) -> dict[str, Any]:
        """What the metadata adds for this model (its config, where it started from, ...)."""
        return {}


@dataclass(frozen=True)
class Trained:
    model: torch.nn.Module
    metrics: dict[str, Any]


def train(recipe: type[Recipe], options: TrainingOptions) -> Trained:
    """Train (or resume) a ``recipe`` and write ``options.out`` with its metadata.

    Checked before any step: the options, where the checkpoint goes, and that an existing
    file is only continued with ``resume`` or replaced with ``force``. A resumed run sees
    exactly the data, dropout and learning rates the uninterrupted run would have.
    """
    _check_options(options)
    out = check_output_file(options.out)
    saved = _saved_run(recipe, options, out)
    start = int(saved.get("step", 0)) if saved else 0
    began = time.monotonic()
    seconds = float(saved.get("seconds", 0.0)) if saved else 0.0
    torch.manual_seed(options.seed)
    run = recipe(options, saved)
    optimizer = run.optimizer()
    state = saved.get("optimizer") if saved else None
    if state is not None:
        optimizer.load_state_dict(state)
    elif start:
        warnings.warn("the checkpoint has no optimizer state; resuming with a fresh optimizer",
                      stacklevel=2)

    def save(step: int, metrics: dict[str, Any]) -> None:
        elapsed = seconds + time.monotonic() - began
        payload = {**run.payload(), "step": step, "seconds": elapsed}
        if step < options.steps:
            payload["optimizer"] = optimizer.state_dict()
            payload.update(run.training_state())
        metadata = {
            "model": run.name,
            "data": run.data,
            "seed": options.seed,
            "steps": step,
            "batch": options.batch,
            "lr": options.lr,
            "images_seen": step * options.batch,
            "train_seconds": round(elapsed, 1),
            "options": {k: str(v) for k, v in asdict(options).items()},
            "metrics": metrics,
            "command": command_line(),
            **run.metadata(),
        }
        save_checkpoint(out, payload, metadata)

    loss = optimise(
        optimizer, options.steps, options.lr, run.step_loss, run.description, start=start,
        warmup=run.warmup, clipped=run.clipped(),
        checkpoint=lambda done, loss: save(done, {"loss": loss}),
        checkpoint_every=options.checkpoint_every,
    )
    run.model.eval()
    metrics = {"loss": loss} if options.steps > start else {}
    metrics.update(run.evaluate())
    save(options.steps, metrics)
    return Trained(run.model, metrics)


def _check_options(options: TrainingOptions) -> None:
    for name in ("batch", "checkpoint_every", "eval_images"):
        value = getattr(options, name)
        if value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if options.steps < 0:
        raise InputError(f"--steps must be at least 0, got {options.steps}")
    if not (math.isfinite(options.lr) and options.lr > 0):
        raise InputError(f"--lr must be a positive number, got {options.lr}")
    if options.resume and options.force:
        raise InputError("--resume continues --out and --force replaces it: give one of them")


def _saved_run(recipe: type[Recipe], options: TrainingOptions, out: Path) -> dict | None:
    """The checkpoint a run continues, or ``None`` for a new run (refusing to replace an
    existing file unless asked to)."""
    if not out.exists():
        if options.resume:
            warnings.warn(f"--resume: {str(out)!r} does not exist yet; starting a new run",
                          stacklevel=3)
        return None
    if not options.resume:
        if options.force:
            return None
        raise InputError(
            f"--out {str(out)!r} already exists; --resume continues it, --force replaces it"
        )
    saved = recipe.check_resumed(load_checkpoint(out, what="--out checkpoint"), out)
    done = int(saved.get("step", 0))
    if options.steps < done:
        raise InputError(
            f"--steps {options.steps}: {str(out)!r} has trained {done} steps already; "
            f"--resume continues to a larger --steps (at least {done})"
        )
    return saved


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
