"""Capturing one layer's output during a forward: the hook the engine and dissection share.

The hook belongs to the thread that installed it: a forward that another thread runs through
the same model passes untouched, so two threads explaining one shared model each see only
their own activations. It is removed when the block ends, also when the forward raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, Self

import torch
from torch import nn

from vlx.errors import InputError
from vlx.layers import spatial_output

Mode = Literal["leaf", "stop", "record", "edit"]


class LayerReached(Exception):
    """Raised by a ``stop`` capture once its layer has run: the rest of the forward is waste."""


class LayerCapture:
    """Context manager that captures ``module``'s output in forwards run by this thread.

    ``on_output()`` runs when the layer has produced its output (the engine starts measuring
    the graph there).

    Modes:
        ``leaf``: the output is replaced by a copy of a detached leaf that requires grad, so
            a backward stops at the layer (the Grad-CAM engine); ``outputs`` holds the leaves.
        ``stop``: the output is recorded detached and the forward is cut short by raising
            ``LayerReached`` (reading a layer for dissection).
        ``record``: the output is recorded detached and the forward goes on.
        ``edit``: the output is replaced by ``edit(output)`` (ablating channels), unrecorded.
    """

    def __init__(
        self, module: nn.Module, name: str, mode: Mode = "record",
        on_output: Callable[[], object] | None = None,
        edit: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if (mode == "edit") != (edit is not None):
            raise ValueError("an edit function goes with mode 'edit', and only with it")
        self.module, self.name, self.mode, self.on_output = module, name, mode, on_output
        self.edit = edit
        self.outputs: list[torch.Tensor] = []
        self._thread = threading.get_ident()
        self._handle: Any = None

    def __enter__(self) -> Self:
        # First of the module's hooks: the others (transformers records hidden states by
        # hooks) see the output this one puts in the graph.
        self._handle = self.module.register_forward_hook(self._hook, prepend=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.remove()

    def _hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        if threading.get_ident() != self._thread:
            return None
        tensor = spatial_output(output)
        if tensor is None:
            raise InputError(
                f"layer {self.name!r} returns a {type(output).__name__}, not a tensor; "
                "name a layer whose output is a feature map"
            )
        if self.on_output is not None:
            self.on_output()
        if self.mode == "edit":
            replacement = self.edit(tensor)
        elif self.mode != "leaf":
            self.outputs.append(tensor.detach())
            if self.mode == "stop":
                raise LayerReached
            return None
        else:
            leaf = tensor.detach().requires_grad_(True)
            self.outputs.append(leaf)
            # A clone, so in-place ops after the layer (ReLU(inplace=True)) leave A intact.
            replacement = leaf.clone()
        if isinstance(output, torch.Tensor):
            return replacement
        return type(output)([replacement, *output[1:]])

    def single(self) -> torch.Tensor:
        """The one output a forward produced; a layer that ran twice or never is an error."""
        if len(self.outputs) != 1:
            ran = "did not run" if not self.outputs else f"ran {len(self.outputs)} times"
            raise InputError(
                f"layer {self.name!r} {ran} in one forward; explain a layer that runs exactly "
                "once per forward"
            )
        return self.outputs[0]


def read_layer(
    module: nn.Module, name: str, forward: Callable[[], Any]
) -> torch.Tensor:
    """The detached output of ``module`` when ``forward()`` runs, stopping the forward there."""
    with LayerCapture(module, name, "stop") as capture, torch.no_grad():
        try:
            forward()
        except LayerReached:
            pass
    return capture.single()
