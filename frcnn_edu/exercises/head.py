"""Check for notebook 06's exercise: Fast R-CNN's minibatch of RoIs for training (Fast §2.3).

The student writes `fn(best_iou, keys, fg_iou_thresh, bg_iou_hi, bg_iou_lo, batch_size_per_image,
positive_fraction) -> (foreground, background)`: from each RoI's best IoU with its image's ground truth ([N, P],
-1 where it matches none) and one random key per RoI ([N, P], distinct in [0, 1)), the sampled RoIs as two [N, P]
bool masks. Given the keys the sample is fixed, so the check compares it with the package's:
frcnn_edu.head.label_proposals' rule for who may be foreground (IoU >= fg) or background (lo <= IoU < hi), which
labels the random cases' boxes, and frcnn_edu.sampling.sample_balanced for the draw (the highest keys first, at most
int(B * fraction) foreground, background filling the rest of B). On the first case that disagrees it says what is
wrong, in this order: the outputs' form, an RoI taken as both, the masks swapped, an RoI that is no candidate of
its kind, a threshold's boundary, a count, and last the keys' order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..config import FasterRCNNConfig
from ..head import label_proposals
from ..ops import box_iou
from ..sampling import sample_balanced

RoISampler = Callable[..., tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class _Rule:
    """The sampler's settings, in the order the student's function takes them."""

    fg_iou_thresh: float
    bg_iou_hi: float
    bg_iou_lo: float
    batch_size_per_image: int
    positive_fraction: float

    @classmethod
    def of(cls, cfg: FasterRCNNConfig, **changes) -> "_Rule":
        fields = dict(fg_iou_thresh=cfg.roi_fg_iou_thresh, bg_iou_hi=cfg.roi_bg_iou_thresh_hi,
                      bg_iou_lo=cfg.roi_bg_iou_thresh_lo, batch_size_per_image=cfg.roi_batch_size_per_image,
                      positive_fraction=cfg.roi_positive_fraction)
        return cls(**{**fields, **changes})

    @property
    def max_foreground(self) -> int:
        return int(self.batch_size_per_image * self.positive_fraction)


PAPER, TINY = _Rule.of(FasterRCNNConfig.paper_vgg16()), _Rule.of(FasterRCNNConfig.tiny_cpu())


@dataclass
class _Case:
    """One input: best_iou and keys [N, P] float32, the rule, and the candidates [N, P] bool of each kind."""

    name: str
    best_iou: Tensor
    keys: Tensor
    rule: _Rule
    foreground_candidates: Tensor
    background_candidates: Tensor


def _by_rule(name: str, best_iou: list[list[float]], rule: _Rule, seed: int) -> _Case:
    """A hand-made case: the IoUs as given, candidates by label_proposals' rule, distinct keys from the seed."""
    iou = torch.tensor(best_iou, dtype=torch.float32)  # [N, P]
    background = (iou >= rule.bg_iou_lo) & (iou < rule.bg_iou_hi)
    return _Case(name, iou, _distinct_keys(iou.shape, torch.Generator().manual_seed(seed)), rule,
                 iou >= rule.fg_iou_thresh, background)


def _distinct_keys(shape: torch.Size, generator: torch.Generator) -> Tensor:
    """[N, P] keys in [0, 1), all different within an image (so no tie decides a sample), one of them exactly 0."""
    return torch.stack([torch.randperm(shape[1], generator=generator) for _ in range(shape[0])]).float() / shape[1]


def _hand_made() -> list[_Case]:
    """The boundaries and counts where a sampler goes wrong, each case named for what it tests."""
    no_match, lo = -1.0, PAPER.bg_iou_lo
    return [
        _by_rule("fewer candidates than slots, IoU exactly at each threshold",
                 [[0.5, 0.4999, lo, 0.0999, 0.8, 0.3, no_match, 0.05, 1.0, 0.2]], PAPER, 1),
        _by_rule("the tiny preset (bg_iou_lo = 0): IoU exactly 0 is background, -1 (no match) is not",
                 [[0.0] * 40 + [no_match] * 20 + [0.7, 0.55, 0.5] + [0.3] * 20], TINY, 2),
        _by_rule("the paper's 25%: more foreground candidates than foreground slots",
                 [[0.5 + 0.005 * i for i in range(60)] + [0.1 + 0.002 * i for i in range(200)] + [0.05] * 40],
                 PAPER, 3),
        _by_rule("few foreground: background fills the batch",
                 [[0.9, 0.6, 0.5] + [0.1 + 0.001 * i for i in range(300)] + [no_match] * 10], PAPER, 4),
        _by_rule("two images, each with its own budget",
                 [[0.6 + 0.001 * i for i in range(50)] + [0.2] * 150, [0.75, 0.5, 0.51] + [0.0] * 147 + [0.3] * 50],
                 TINY, 5),
        _by_rule("bg_iou_hi = 0.4 below fg_iou_thresh: IoU in [0.4, 0.5) is neither",
                 [[0.45, 0.4, 0.42, 0.49, 0.39, 0.2, 0.6, 0.5] * 5], _Rule.of(FasterRCNNConfig(), bg_iou_hi=0.4), 6),
        _by_rule("a small batch (B = 8, half foreground)",
                 [[0.8, 0.7, 0.6, 0.55, 0.52, 0.3, 0.25, 0.2, 0.15, 0.12, 0.11, 0.0]],
                 _Rule.of(FasterRCNNConfig(), batch_size_per_image=8, positive_fraction=0.5), 7),
        _by_rule("an image without objects: nothing to sample", [[no_match] * 30], TINY, 8),
    ]


def _random_boxes(num: int, per_image: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Proposals [N, P, 4] and valid [N, P]; ground truth [N, G, 4] and gt_valid [N, G]; xyxy, image px of a
    320 x 320 image. Half the proposals are jittered copies of a ground truth, half lie anywhere (often IoU 0)."""
    num_gt = 4
    corner = torch.rand(num, num_gt, 2, generator=generator) * 250
    gt = torch.cat([corner, corner + 16 + torch.rand(num, num_gt, 2, generator=generator) * 100], dim=2)
    gt_valid = torch.rand(num, num_gt, generator=generator) < 0.7  # padding; some images have no object
    source = gt[torch.arange(num)[:, None], torch.randint(num_gt, (num, per_image), generator=generator)]
    size = (source[..., 2:] - source[..., :2]).repeat(1, 1, 2)  # [N, P, 4]: w, h, w, h
    near = source + (torch.rand(num, per_image, 4, generator=generator) - 0.5) * 0.6 * size
    start = torch.rand(num, per_image, 2, generator=generator) * 280
    anywhere = torch.cat([start, start + 8 + torch.rand(num, per_image, 2, generator=generator) * 40], dim=2)
    proposals = torch.where(torch.rand(num, per_image, 1, generator=generator) < 0.5, near, anywhere)
    proposals = torch.cat([proposals[..., :2], torch.maximum(proposals[..., 2:], proposals[..., :2] + 1)], dim=2)
    return proposals, torch.rand(num, per_image, generator=generator) < 0.95, gt, gt_valid


def _random_case(index: int, generator: torch.Generator) -> _Case:
    """Random boxes, their candidates labelled by frcnn_edu.head.label_proposals; the paper's and the tiny rule."""
    rule = (PAPER, TINY)[index % 2]
    num, per_image = index % 3 + 1, int(torch.randint(5, 400, (1,), generator=generator))
    proposals, valid, gt, gt_valid = _random_boxes(num, per_image, generator)
    labels, _ = label_proposals(proposals, valid, gt, torch.ones(gt_valid.shape, dtype=torch.int64), gt_valid,
                                rule.fg_iou_thresh, rule.bg_iou_hi, rule.bg_iou_lo)
    best_iou = box_iou(proposals, gt).masked_fill(~gt_valid[:, None, :], -1.0).amax(dim=2)  # [N, P]
    best_iou = torch.where(valid, best_iou, -1.0)  # an invalid proposal matches nothing
    name = f"random case {index} (N={num}, P={per_image}, bg_iou_lo={rule.bg_iou_lo})"
    return _Case(name, best_iou, _distinct_keys(best_iou.shape, generator), rule, labels > 0, labels == 0)


def _check_form(case: _Case, out) -> tuple[Tensor, Tensor]:
    """The output is two [N, P] bool masks; returns them."""
    if not isinstance(out, (tuple, list)) or len(out) != 2 or not all(isinstance(m, Tensor) for m in out):
        raise AssertionError(f"[{case.name}] must return two masks (foreground, background), got {type(out).__name__}")
    for what, mask in zip(("foreground", "background"), out):
        if mask.shape != case.best_iou.shape:
            raise AssertionError(f"[{case.name}] wrong shape: expected {what} {tuple(case.best_iou.shape)} ([N, P], "
                                 f"one entry per RoI: a mask, not indices), got {tuple(mask.shape)}")
        if mask.dtype != torch.bool:
            raise AssertionError(f"[{case.name}] wrong dtype: expected {what} torch.bool (a mask), got {mask.dtype}")
    return out[0], out[1]


def _first(mask: Tensor) -> tuple[int, int]:
    """(image, RoI) of the first True entry of an [N, P] mask."""
    n, r = mask.nonzero()[0].tolist()
    return n, r


def _roi_by_key(case: _Case, n: int, mask: Tensor, highest: bool) -> int:
    """The RoI of image n's mask [P] with the highest (or lowest) key."""
    rois = mask.nonzero()[:, 0]
    keys = case.keys[n, rois]
    return int(rois[keys.argmax() if highest else keys.argmin()])


def _check_eligible(case: _Case, foreground: Tensor, background: Tensor) -> None:
    """No RoI is both; every RoI taken is a candidate of its kind (Fast §2.3's IoU intervals)."""
    rule, iou = case.rule, case.best_iou
    if (foreground & background).any():
        n, r = _first(foreground & background)
        raise AssertionError(f"[{case.name}] RoI {r} of image {n} (IoU {iou[n, r]:.4f}) is both foreground and "
                             f"background: each sampled RoI is one or the other")
    if (foreground & case.background_candidates).any() and (background & case.foreground_candidates).any():
        raise AssertionError(f"[{case.name}] foreground and background are swapped: return (foreground, background)")
    if (foreground & ~case.foreground_candidates).any():
        n, r = _first(foreground & ~case.foreground_candidates)
        raise AssertionError(f"[{case.name}] RoI {r} of image {n} is foreground with IoU {iou[n, r]:.4f}: "
                             f"foreground needs IoU >= fg_iou_thresh = {rule.fg_iou_thresh}")
    if (background & ~case.background_candidates).any():
        n, r = _first(background & ~case.background_candidates)
        why = ""
        if iou[n, r] == -1:
            why = " (-1: it matches no ground truth; padding, or an image without objects)"
        elif iou[n, r] == rule.bg_iou_hi:
            why = " (the interval is half-open: IoU = bg_iou_hi is not background)"
        raise AssertionError(f"[{case.name}] background taken from the ignored band: RoI {r} of image {n} has IoU "
                             f"{iou[n, r]:.4f}, outside [bg_iou_lo, bg_iou_hi) = [{rule.bg_iou_lo}, "
                             f"{rule.bg_iou_hi}){why}")


def _check_boundaries(case: _Case, taken: tuple[Tensor, Tensor], expected: tuple[Tensor, Tensor]) -> None:
    """A lower threshold belongs to its interval: IoU = fg_iou_thresh is foreground, IoU = bg_iou_lo background.

    Said when a kind's sample is wrong and is exactly what the package would draw with `>` for `>=`.
    """
    rule, keys = case.rule, case.keys
    bounds = (("fg_iou_thresh", rule.fg_iou_thresh), ("bg_iou_lo", rule.bg_iou_lo))
    for kind, (what, (name, bound)) in enumerate(zip(("foreground", "background"), bounds)):
        at_bound = case.best_iou == bound
        candidates = [case.foreground_candidates, case.background_candidates]
        candidates[kind] = candidates[kind] & ~at_bound  # the strict interval
        strict = sample_balanced(*candidates, rule.batch_size_per_image, rule.positive_fraction, keys)[kind]
        missed = expected[kind] & ~taken[kind] & at_bound
        if missed.any() and torch.equal(taken[kind], strict):
            n, r = _first(missed)
            raise AssertionError(f"[{case.name}] RoI {r} of image {n} has IoU exactly {name} = {bound} and should "
                                 f"be {what} (the boundary belongs to it: IoU >= {bound}), but was not taken")


def _count_message(case: _Case, n: int, what: str, candidates: int, slots: int, got: int, missed: Tensor) -> str:
    """Why image n took `got` RoIs of one kind where it has `candidates` of them for `slots` slots."""
    batch = case.rule.batch_size_per_image
    if got > min(candidates, slots):
        if what == "foreground":
            return (f"too many foreground: image {n} has {got}, at most int(batch_size_per_image * "
                    f"positive_fraction) = {slots}")
        return f"too many RoIs: image {n} has {batch - slots} foreground and {got} background, more than {batch}"
    if candidates < slots:
        r = _roi_by_key(case, n, missed[n], highest=False)
        hint = "; a key of 0 is a key too" if case.keys[n, r] == 0 else ""
        return (f"wrong count with fewer candidates than slots: image {n} has {candidates} {what} candidates for "
                f"{slots} slots, so all {candidates} should be taken, got {got} (left out: RoI {r}, IoU "
                f"{case.best_iou[n, r]:.4f}, key {case.keys[n, r]:.4f}{hint})")
    if what == "background":
        return (f"the batch is not filled: image {n} took {batch - slots} foreground, so background fills the "
                f"other {slots} of its {batch} slots ({candidates} candidates), got {got}")
    return f"too few foreground: image {n} has {candidates} candidates for {slots} slots, so {slots} should be " \
           f"taken, got {got}"


def _check_counts(case: _Case, taken: tuple[Tensor, Tensor], expected: tuple[Tensor, Tensor]) -> None:
    """Per image: min(#foreground candidates, int(B * fraction)) foreground, then background up to B in all."""
    batch, max_fg = case.rule.batch_size_per_image, case.rule.max_foreground
    for n in range(case.best_iou.shape[0]):
        got_fg = int(taken[0][n].sum())
        kinds = (("foreground", case.foreground_candidates, max_fg),
                 ("background", case.background_candidates, batch - got_fg))
        for (what, candidates, slots), mine, theirs in zip(kinds, taken, expected):
            count, got = int(candidates[n].sum()), int(mine[n].sum())
            if got != min(count, slots):
                raise AssertionError(f"[{case.name}] " + _count_message(case, n, what, count, slots, got,
                                                                      theirs & ~mine))


def _check_keys(case: _Case, taken: tuple[Tensor, Tensor], expected: tuple[Tensor, Tensor]) -> None:
    """With the right counts of the right candidates, the ones taken are those with the highest keys."""
    for what, mine, theirs in zip(("foreground", "background"), taken, expected):
        if not torch.equal(mine, theirs):
            n, _ = _first(theirs & ~mine)
            left_out = _roi_by_key(case, n, theirs[n] & ~mine[n], highest=True)
            r = _roi_by_key(case, n, mine[n] & ~theirs[n], highest=False)
            raise AssertionError(
                f"[{case.name}] not the highest keys: image {n}'s {what} should be its {int(theirs[n].sum())} "
                f"candidates with the highest keys, but RoI {left_out} (key {case.keys[n, left_out]:.4f}) was left "
                f"out and RoI {r} (key {case.keys[n, r]:.4f}) taken: take candidates by decreasing key (not by "
                f"index, not by IoU)")


def _check_case(fn: RoISampler, case: _Case) -> None:
    """Runs fn on one case (on copies: an in-place edit cannot change the reference) and compares."""
    rule = case.rule
    expected = sample_balanced(case.foreground_candidates, case.background_candidates, rule.batch_size_per_image,
                               rule.positive_fraction, case.keys)
    out = fn(case.best_iou.clone(), case.keys.clone(), rule.fg_iou_thresh, rule.bg_iou_hi, rule.bg_iou_lo,
             rule.batch_size_per_image, rule.positive_fraction)
    taken = _check_form(case, out)
    _check_eligible(case, *taken)
    _check_boundaries(case, taken, expected)
    _check_counts(case, taken, expected)
    _check_keys(case, taken, expected)


def check_roi_sampling(fn: RoISampler, random_cases: int = 50) -> str:
    """Checks a student's RoI sampler (Fast §2.3) against the package's on hand-made and seeded random cases.

    Args:
        fn: fn(best_iou, keys, fg_iou_thresh, bg_iou_hi, bg_iou_lo, batch_size_per_image, positive_fraction)
            -> (foreground, background). best_iou: [N, P] float32, each RoI's best IoU with its image's ground
            truth, -1 where it matches none. keys: [N, P] float32 in [0, 1), distinct within an image.
            foreground, background: [N, P] bool, the sampled RoIs.
        random_cases: how many random cases (proposals around padded ground truth, seeded) after the hand-made.

    Returns:
        A one-line summary of the cases that agree. Raises AssertionError naming the case and what is wrong;
        an exception from fn itself (NotImplementedError while the exercise is not done) goes through unchanged.
    """
    hand_made = _hand_made()
    generator = torch.Generator().manual_seed(0)
    for case in hand_made + [_random_case(i, generator) for i in range(random_cases)]:
        _check_case(fn, case)
    return (f"roi sampling: {len(hand_made)} hand-made and {random_cases} random cases agree with "
            f"frcnn_edu.sampling.sample_balanced on frcnn_edu.head.label_proposals' candidates")
