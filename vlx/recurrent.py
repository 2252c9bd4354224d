"""Recurrent layers under attribution: run them on the plain kernels.

The oneDNN (CPU) and cuDNN (GPU) LSTM kernels have no vmap batching rule, so a batched
backward over T targets silently loops op by op and is slower than an explicit loop; cuDNN
also refuses an RNN backward in eval mode. While the engine runs, each recurrent module's
forward runs with both backends off; convolutions elsewhere keep their fast kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


@contextmanager
def plain_recurrent_kernels(model: nn.Module) -> Iterator[None]:
    """Within this block, every ``nn.RNNBase`` submodule of ``model`` uses plain kernels."""
    recurrent = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    if not recurrent:
        yield
        return
    saved = (torch._C._get_mkldnn_enabled(), torch._C._get_cudnn_enabled())

    def off(module: nn.Module, args: Any) -> None:
        torch._C._set_mkldnn_enabled(False)
        torch._C._set_cudnn_enabled(False)

    def restore(module: nn.Module, args: Any, output: Any) -> None:
        torch._C._set_mkldnn_enabled(saved[0])
        torch._C._set_cudnn_enabled(saved[1])

    handles = []
    try:
        for module in recurrent:
            handles.append(module.register_forward_pre_hook(off))
            handles.append(module.register_forward_hook(restore))
        yield
    finally:
        for handle in handles:
            handle.remove()
        torch._C._set_mkldnn_enabled(saved[0])
        torch._C._set_cudnn_enabled(saved[1])
