"""Sanity checks (Adebayo et al., NeurIPS 2018): does a map change when the model does?

A method whose map barely changes when the model's weights are replaced by random ones (the
model-parameter randomization test), or when the model was trained on shuffled labels (the
data randomization test), shows the input more than it explains the model. Randomization
runs on the model in place, block by block from the output down (cascading) or one block at
a time (independent), and every parameter is put back afterwards, also when an exception flies.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

Mode = Literal["cascading", "independent"]
MODES: tuple[str, ...] = ("cascading", "independent")
PASS_BELOW = 0.5
"""A method passes a randomization test when its maps' mean absolute rank correlation with the
trained model's maps falls below this: the map follows the model, not the input alone."""
VERDICTS = {True: "passed", False: "FAILED", None: "undefined"}
"""How a verdict reads; undefined: a step had no rank correlation (every map constant)."""
NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
BLOCKS = 5
"""At least this many blocks, where the model's naming allows: the steps of the cascade."""


def parameter_blocks(model: nn.Module, at_least: int = BLOCKS) -> list[tuple[str, list[str]]]:
    """The model's parametrised modules grouped into blocks, from the output down.

    A block is the modules sharing their first ``d`` name components, with the smallest ``d``
    that gives ``at_least`` blocks (or the modules themselves where none does); the order is
    the reverse of registration, which for the models here is the reverse of the forward.
    """
    owners = [name for name, module in model.named_modules()
              if name and any(True for _ in module.parameters(recurse=False))]
    if not owners:
        raise ValueError(f"{type(model).__name__} has no parameters to randomize")
    deepest = max(name.count(".") + 1 for name in owners)
    for depth in range(1, deepest + 1):
        blocks: dict[str, list[str]] = {}
        for name in owners:
            blocks.setdefault(".".join(name.split(".")[:depth]), []).append(name)
        if len(blocks) >= at_least or depth == deepest:
            return list(reversed(blocks.items()))
    raise AssertionError("unreachable: the deepest grouping is returned")


def randomize_(module: nn.Module, generator: torch.Generator) -> None:
    """Replace the module's own parameters by what initialization gives: the module's
    ``reset_parameters`` under the generator's seed where it has one (convolutions, linear
    layers, embeddings), a norm layer's scale 1 and shift 0 (its running statistics are
    buffers, not parameters, and stay), else a normal draw with each parameter's own mean and
    spread."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    if isinstance(module, NORMS):
        with torch.no_grad():
            for name, parameter in module.named_parameters(recurse=False):
                parameter.fill_(1.0 if name == "weight" else 0.0)
        return
    if hasattr(module, "reset_parameters"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module.reset_parameters()
        return
    local = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters(recurse=False):
            spread = parameter.float().std() if parameter.numel() > 1 else torch.tensor(0.0)
            draw = torch.randn(parameter.shape, generator=local) * spread + parameter.float().mean()
            parameter.copy_(draw.to(parameter))


@contextmanager
def randomized(model: nn.Module, modules: Sequence[str], seed: int = 0) -> Iterator[None]:
    """Inside the block, the named modules of ``model`` have random parameters; afterwards
    every one of their parameters and buffers is what it was."""
    kept = {name: {k: v.detach().clone() for k, v in model.get_submodule(name).state_dict().items()}
            for name in modules}
    try:
        for name in modules:
            # Seeded by the module's name: a cascade's step k redraws exactly the weights the
            # earlier steps drew, and adds its own block's.
            key = zlib.crc32(f"{seed}|{name}".encode())
            randomize_(model.get_submodule(name), torch.Generator().manual_seed(key))
        yield
    finally:
        for name, state in kept.items():
            model.get_submodule(name).load_state_dict(state)


def randomization_steps(model: nn.Module, mode: Mode, at_least: int = BLOCKS
                        ) -> list[tuple[str, list[str]]]:
    """(label, modules randomized) per step: cascading adds one block per step from the
    output down, so the last step randomizes every parameter; independent takes each
    block alone."""
    if mode not in MODES:
        raise ValueError(f"unknown randomization {mode!r}; valid: {', '.join(MODES)}")
    blocks = parameter_blocks(model, at_least)
    if mode == "independent":
        return blocks
    steps, done = [], []
    for label, names in blocks:
        done = [*done, *names]
        steps.append((label, done))
    return steps


def passed(ranks: Sequence[float]) -> bool | None:
    """Whether the mean absolute rank correlations of the steps are all below ``PASS_BELOW``;
    ``None`` where a step has none (every map it compared was constant, as an all-zero map is)."""
    if not ranks or any(math.isnan(r) for r in ranks):
        return None
    return all(r < PASS_BELOW for r in ranks)
