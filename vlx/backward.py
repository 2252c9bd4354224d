"""All T per-target gradients from one backward pass, in memory bounded by a limit.

Explaining T targets (classes, caption words, answers) needs dy_t/dA for every t. A batched
vector-Jacobian product (``is_grads_batched``) gives them from one graph in one call, where a
loop pays T backward passes. Its memory is T times the graph's: for a caption, whose graph
grows with its length, that is quadratic in the length. So the targets are taken in chunks
sized from the graph's measured size (``GraphMeter``), each chunk one batched call; the
gradients are the same as from one call. Some ops have no batching rule: vmap then either
raises or silently loops op by op with a performance warning; both fall back to an explicit
loop, which is never slower than such a silent loop.
"""

from __future__ import annotations

import threading
import warnings
from typing import Self

import torch

from vlx.errors import InputError

BACKWARD_MEMORY = 256 * 2**20
"""Bytes one batched backward may hold in target-batched gradients (about: the graph's saved
tensors times the targets of one chunk)."""
_NO_BATCHING_RULE = "batching rule"
_NO_PATH = (
    "the explained scores do not depend on the explained layer or input (no gradient path); "
    "explain a layer the scores are computed from"
)


class _BatchingRuleMissing(Exception):
    """A vmap performance warning was raised: the batched backward would loop internally."""


class GraphMeter:
    """Counts the bytes of the tensors a forward saves for its backward, each storage once.

    Counting starts at ``start()`` (the explained layer's output) or at once with
    ``counting=True``; parameters are left out, since their gradients are never taken. Only
    the calling thread's forwards are counted.
    """

    def __init__(self, exclude: list[torch.Tensor] | tuple = (), counting: bool = False) -> None:
        self.bytes = 0
        self.counting = counting
        self._seen: set[int] = set()
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._thread = threading.get_ident()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    def __enter__(self) -> Self:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._hooks.__exit__(*exc_info)

    def start(self) -> None:
        self.counting = True

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.counting and threading.get_ident() == self._thread:
            try:
                storage = tensor.untyped_storage()
            except (RuntimeError, NotImplementedError):
                return tensor
            key = storage.data_ptr()
            if key not in self._seen and key not in self._excluded:
                self._seen.add(key)
                self.bytes += storage.nbytes()
        return tensor


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


_frozen: dict[int, tuple[int, list[tuple[torch.Tensor, bool]]]] = {}
_frozen_lock = threading.Lock()


class FrozenParameters:
    """The model's parameters need no gradient while it runs inside: only the explained
    layer's output (or input) does. Without this, a forward records the graph of everything
    before the explained layer, whose saved tensors peak at the layer (gigabytes for a
    vision tower of many views) only to be dropped there.

    Threads may each hold one on a shared model: the first in freezes, the last out restores
    each parameter's own flag (a parameter the user froze stays frozen).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __enter__(self) -> Self:
        key = id(self.model)
        with _frozen_lock:
            count, flags = _frozen.get(key, (0, []))
            if not count:
                flags = [(p, p.requires_grad) for p in self.model.parameters()]
                for parameter, _ in flags:
                    parameter.requires_grad_(False)
            _frozen[key] = (count + 1, flags)
        return self

    def __exit__(self, *exc_info: object) -> None:
        key = id(self.model)
        with _frozen_lock:
            count, flags = _frozen.pop(key)
            if count > 1:
                _frozen[key] = (count - 1, flags)
                return
            for parameter, flag in flags:
                parameter.requires_grad_(flag)


def targets_per_backward(graph_bytes: int, limit: int = BACKWARD_MEMORY) -> int | None:
    """How many targets one batched backward takes: all (``None``) for an unmeasured graph,
    else as many as fit ``limit``, at least one."""
    if graph_bytes <= 0:
        return None
    return max(1, limit // graph_bytes)


def per_target_gradients(
    scores: torch.Tensor, wrt: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """Gradients of each column of ``scores`` (N, T) w.r.t. ``wrt`` (N, ...) -> (N, T, ...),
    ``chunk`` targets per batched backward (default: all at once).

    Images must be independent in the batch (a model in eval mode), so the gradient of the
    column sum w.r.t. image n's slice is image n's own gradient.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (N, T), got shape {tuple(scores.shape)}")
    num_targets = scores.shape[1]
    if not scores.requires_grad:
        raise InputError(_NO_PATH)
    step = num_targets if chunk is None else max(1, chunk)
    parts = []
    for first in range(0, num_targets, step):
        columns = range(first, min(first + step, num_targets))
        parts.append(_gradients(scores, wrt, columns, retain=columns.stop < num_targets))
    # One part is returned as it is: a copy by ``cat`` could change its memory layout, and
    # with it the order in which later reductions sum (the last bits of the maps).
    return (parts[0] if len(parts) == 1 else torch.cat(parts)).transpose(0, 1)


def _gradients(scores: torch.Tensor, wrt: torch.Tensor, columns: range, retain: bool) -> torch.Tensor:
    """(len(columns), N, ...) gradients of the given columns: one batched call, or a loop
    where the batched call has no batching rule."""
    if len(columns) == 1:
        return _gradient(scores[:, columns[0]].sum(), wrt, retain_graph=retain).unsqueeze(0)
    try:
        return _batched_gradients(scores, wrt, columns, retain)
    except (_BatchingRuleMissing, RuntimeError) as err:
        if isinstance(err, RuntimeError) and _NO_BATCHING_RULE not in str(err).lower():
            raise
    return torch.stack(
        [
            _gradient(scores[:, t].sum(), wrt, retain_graph=retain or t < columns[-1])
            for t in columns
        ]
    )


def _batched_gradients(
    scores: torch.Tensor, wrt: torch.Tensor, columns: range, retain: bool
) -> torch.Tensor:
    n, t = scores.shape
    eye = torch.eye(t, dtype=scores.dtype, device=scores.device)[list(columns)]
    grad_outputs = eye[:, None, :].expand(len(columns), n, t)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*performance drop.*", category=UserWarning)
        try:
            (grads,) = torch.autograd.grad(
                scores, wrt, grad_outputs=grad_outputs, is_grads_batched=True, retain_graph=True,
                allow_unused=True,
            )
        except UserWarning as warning:
            raise _BatchingRuleMissing(str(warning)) from None
    if grads is None:
        raise InputError(_NO_PATH)
    return grads


def _gradient(score: torch.Tensor, wrt: torch.Tensor, retain_graph: bool) -> torch.Tensor:
    (grad,) = torch.autograd.grad(score, wrt, retain_graph=retain_graph, allow_unused=True)
    if grad is None:
        raise InputError(_NO_PATH)
    return grad
