"""Faithfulness (paper Sec. 5.3): how well a map agrees with occlusion sensitivity.

A map is faithful to the model when the regions it highlights are the ones whose occlusion
changes the score; the paper measures it as the rank correlation between the two maps.
"""

from __future__ import annotations

import torch

from vlx.explanation import upsample


def ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks along the last dimension, ties sharing their average rank."""
    order = values.argsort(dim=-1)
    sorted_values = values.gather(-1, order)
    n = values.shape[-1]
    position = torch.arange(1, n + 1, dtype=torch.float64, device=values.device).expand_as(values)
    # average the positions within each run of equal values
    new_run = torch.ones_like(sorted_values, dtype=torch.bool)
    new_run[..., 1:] = sorted_values[..., 1:] != sorted_values[..., :-1]
    run_id = new_run.long().cumsum(dim=-1) - 1
    run_sum = torch.zeros_like(position).scatter_add_(-1, run_id, position)
    run_count = torch.zeros_like(position).scatter_add_(-1, run_id, torch.ones_like(position))
    average = (run_sum / run_count.clamp_min(1)).gather(-1, run_id)
    out = torch.empty_like(position)
    return out.scatter_(-1, order, average)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rho between (…, h, w) maps, per map; NaN where a map is constant."""
    ra, rb = ranks(a.flatten(-2).double()), ranks(b.flatten(-2).double())
    ra = ra - ra.mean(dim=-1, keepdim=True)
    rb = rb - rb.mean(dim=-1, keepdim=True)
    denominator = (ra.square().sum(-1) * rb.square().sum(-1)).sqrt()
    return (ra * rb).sum(-1) / denominator


def occlusion_agreement(
    maps: torch.Tensor, occlusion_maps: torch.Tensor, size: tuple[int, int] = (32, 32)
) -> torch.Tensor:
    """Rank correlation of (N, T, h, w) maps with (N, T, H, W) occlusion maps, both resized
    bilinearly to ``size`` first so coarse and fine maps are compared on one grid."""
    return rank_correlation(upsample(maps, size), upsample(occlusion_maps, size))
