"""The balanced sampler both stages train with: a fixed-size random sample, at most a fraction positive.

The RPN samples 256 anchors per image, up to half positive (FRCNN §3.1.3); the Fast R-CNN head samples 128 RoIs,
up to 25% foreground (Fast §2.3). Both draw one random key per candidate and keep the top keys, so the sample
has a fixed shape and no count is read on the host: positives first (up to batch * fraction), then negatives
filling the rest of the batch. Notebooks: 05_region_proposal_network, 06_fast_rcnn_head.
"""
from __future__ import annotations

import torch
from torch import Tensor


def sample_balanced(positive_candidates: Tensor, negative_candidates: Tensor, batch_size_per_image: int,
                    positive_fraction: float, keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Random positives (up to batch * fraction) and negatives (filling the batch), per image, as masks.

    Args:
        positive_candidates, negative_candidates: [N, M] bool, what may be drawn as each (disjoint).
        batch_size_per_image: at most this many sampled per image in all.
        positive_fraction: at most int(batch_size_per_image * positive_fraction) of them positive.
        keys: [N, M] float in [0, 1), the random priorities (default: drawn here with torch.rand); a caller
            that orders the sample afterwards by the same keys passes its own.

    Returns:
        positive, negative: [N, M] bool.
    """
    num = positive_candidates.shape[1]
    if keys is None:
        keys = torch.rand(positive_candidates.shape, device=positive_candidates.device)
    max_positive = int(batch_size_per_image * positive_fraction)
    positive = _take_top(torch.where(positive_candidates, keys, -1.0), min(max_positive, num), None)
    budget = batch_size_per_image - positive.sum(dim=1, keepdim=True)  # [N, 1] negatives to draw
    negative = _take_top(torch.where(negative_candidates, keys, -1.0), min(batch_size_per_image, num), budget)
    return positive, negative


def _take_top(keys: Tensor, k: int, budget: Tensor | None) -> Tensor:
    """Mask of the k highest non-negative keys per row (or only the first `budget` [N, 1] of them)."""
    values, index = keys.topk(k, dim=1)  # [N, k], sorted
    chosen = values >= 0
    if budget is not None:
        chosen &= torch.arange(k, device=keys.device) < budget
    return torch.zeros_like(keys, dtype=torch.bool).scatter_(1, index, chosen)
