"""Recurrent layers under attribution: run them on the plain kernels.

The oneDNN (CPU) and cuDNN (GPU) LSTM kernels have no vmap batching rule, so a batched
backward over T targets silently loops op by op and is slower than an explicit loop; cuDNN
also refuses an RNN backward in eval mode. While the engine runs, each recurrent module's
forward runs with both backends off; convolutions elsewhere keep their fast kernels.

The two switches are process-wide, so threads that attribute at once share them: the first
recurrent forward to start turns them off, the last to finish puts back what was there
before, and a forward of another thread never turns them back on under a running one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

_lock = threading.Lock()
_running = 0
_saved: tuple[bool, bool] = (True, True)


def _plain_on() -> None:
    global _running, _saved
    with _lock:
        if _running == 0:
            _saved = (torch._C._get_mkldnn_enabled(), torch._C._get_cudnn_enabled())
            torch._C._set_mkldnn_enabled(False)
            torch._C._set_cudnn_enabled(False)
        _running += 1


def _plain_off() -> None:
    global _running
    with _lock:
        _running -= 1
        if _running == 0:
            torch._C._set_mkldnn_enabled(_saved[0])
            torch._C._set_cudnn_enabled(_saved[1])


@contextmanager
def plain_recurrent_kernels(model: nn.Module) -> Iterator[None]:
    """Within this block, every ``nn.RNNBase`` submodule of ``model`` run by this thread uses
    plain kernels."""
    recurrent = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    if not recurrent:
        yield
        return
    thread = threading.get_ident()
    inside = threading.local()

    def off(module: nn.Module, args: Any) -> None:
        if threading.get_ident() == thread:
            _plain_on()
            inside.depth = getattr(inside, "depth", 0) + 1

    def restore(module: nn.Module, args: Any, output: Any) -> None:
        if threading.get_ident() == thread and getattr(inside, "depth", 0):
            inside.depth -= 1
            _plain_off()

    handles = []
    try:
        for module in recurrent:
            handles.append(module.register_forward_pre_hook(off))
            handles.append(module.register_forward_hook(restore))
        yield
    finally:
        for handle in handles:
            handle.remove()
        while getattr(inside, "depth", 0):  # a forward that raised inside a recurrent layer
            inside.depth -= 1
            _plain_off()
