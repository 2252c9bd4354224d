"""All T per-target gradients from one backward pass.

Explaining T targets (classes, caption words, answers) needs dy_t/dA for every t. A batched
vector-Jacobian product (``is_grads_batched``) gives them from one graph in one call, where a
loop pays T backward passes. Some ops have no batching rule: vmap then either raises or
silently loops op by op with a performance warning; both fall back to an explicit loop,
which is never slower than such a silent loop.
"""

from __future__ import annotations

import warnings

import torch

_NO_BATCHING_RULE = "batching rule"


class _BatchingRuleMissing(Exception):
    """A vmap performance warning was raised: the batched backward would loop internally."""


def per_target_gradients(scores: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    """Gradients of each column of ``scores`` (N, T) w.r.t. ``wrt`` (N, ...) -> (N, T, ...).

    Images must be independent in the batch (a model in eval mode), so the gradient of the
    column sum w.r.t. image n's slice is image n's own gradient.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (N, T), got shape {tuple(scores.shape)}")
    num_targets = scores.shape[1]
    if not scores.requires_grad:
        raise ValueError("the scores do not depend on the explained layer (no gradient path)")
    if num_targets == 1:
        return _gradient(scores[:, 0].sum(), wrt, retain_graph=False).unsqueeze(1)
    try:
        batched = _batched_gradients(scores, wrt)
    except (_BatchingRuleMissing, RuntimeError) as err:
        if isinstance(err, RuntimeError) and _NO_BATCHING_RULE not in str(err).lower():
            raise
        batched = torch.stack(
            [
                _gradient(scores[:, t].sum(), wrt, retain_graph=t < num_targets - 1)
                for t in range(num_targets)
            ]
        )
    return batched.transpose(0, 1)


def _batched_gradients(scores: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    n, t = scores.shape
    eye = torch.eye(t, dtype=scores.dtype, device=scores.device)
    grad_outputs = eye[:, None, :].expand(t, n, t)
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
        raise ValueError("the scores do not depend on the explained layer (no gradient path)")
    return grads


def _gradient(score: torch.Tensor, wrt: torch.Tensor, retain_graph: bool) -> torch.Tensor:
    (grad,) = torch.autograd.grad(score, wrt, retain_graph=retain_graph, allow_unused=True)
    if grad is None:
        raise ValueError("the scores do not depend on the explained layer (no gradient path)")
    return grad
