"""frcnn_edu.exercises.head: the RoI-sampling check (notebook 06) passes the package's sampler and the notebook's
solution, names each mistake a student makes (the form, the intervals and their boundaries, the counts, the keys'
order), and lets the exercise's NotImplementedError through."""
import pytest
import torch

from frcnn_edu.exercises.head import check_roi_sampling
from frcnn_edu.sampling import sample_balanced


def package_sampler(best_iou, keys, fg_iou_thresh, bg_iou_hi, bg_iou_lo, batch_size_per_image, positive_fraction):
    """frcnn_edu.head.label_proposals' intervals, then frcnn_edu.sampling.sample_balanced with the given keys."""
    background = (best_iou >= bg_iou_lo) & (best_iou < bg_iou_hi)
    return sample_balanced(best_iou >= fg_iou_thresh, background, batch_size_per_image, positive_fraction, keys)


def take_in_key_order(candidates, keys, budget):
    """The notebook's helper: walk each image's RoIs by decreasing key, taking candidates until `budget` are taken."""
    order = keys.argsort(dim=1, descending=True)  # [N, P]
    in_order = candidates.gather(1, order)
    taken = in_order & (in_order.cumsum(dim=1) <= budget)
    return torch.zeros_like(candidates).scatter(1, order, taken)


def sampler(is_foreground=lambda iou, fg, hi, lo: iou >= fg,
            is_background=lambda iou, fg, hi, lo: (iou >= lo) & (iou < hi),
            background_budget=lambda batch, max_fg, foreground: batch - foreground.sum(dim=1, keepdim=True),
            take=take_in_key_order, cap_foreground=True):
    """The notebook's solution, with each of its steps replaceable by a student's mistake."""
    def sample(best_iou, keys, fg_iou_thresh, bg_iou_hi, bg_iou_lo, batch_size_per_image, positive_fraction):
        thresholds = (fg_iou_thresh, bg_iou_hi, bg_iou_lo)
        max_fg = int(batch_size_per_image * positive_fraction) if cap_foreground else best_iou.shape[1]
        foreground = take(is_foreground(best_iou, *thresholds), keys, max_fg)
        budget = background_budget(batch_size_per_image, max_fg, foreground)
        return foreground, take(is_background(best_iou, *thresholds), keys, budget)
    return sample


solution = sampler()


def take_first_by_index(candidates, keys, budget):
    return candidates & (candidates.cumsum(dim=1) <= budget)


def take_lowest_keys(candidates, keys, budget):
    return take_in_key_order(candidates, 1 - keys, budget)


def take_off_by_one(candidates, keys, budget):
    return take_in_key_order(candidates, keys, budget - 1)


def take_positive_keys(candidates, keys, budget):
    # the top-k over keys with -1 for non-candidates, kept where the key is > 0 rather than >= 0
    return take_in_key_order(candidates & (keys > 0), keys, budget)


def foreground_from_every_roi(best_iou, keys, fg_iou_thresh, bg_iou_hi, bg_iou_lo, batch_size_per_image,
                              positive_fraction):
    # the top keys of all RoIs, not only of the foreground candidates; background kept apart from them
    everything = torch.ones_like(best_iou, dtype=torch.bool)
    foreground = take_in_key_order(everything, keys, int(batch_size_per_image * positive_fraction))
    background = (best_iou >= bg_iou_lo) & (best_iou < bg_iou_hi) & ~foreground
    budget = batch_size_per_image - foreground.sum(dim=1, keepdim=True)
    return foreground, take_in_key_order(background, keys, budget)


@pytest.mark.parametrize("fn", [package_sampler, solution], ids=["package", "notebook solution"])
def test_the_package_and_the_solution_pass(fn):
    summary = check_roi_sampling(fn)
    assert summary.startswith("roi sampling: 8 hand-made and 50 random cases agree with")


def clamped(rule):
    # "an IoU is never negative": -1 (no match) read as 0, which the tiny preset's bg_iou_lo = 0 takes as background
    return lambda iou, fg, hi, lo: rule(iou.clamp(min=0), fg, hi, lo)


@pytest.mark.parametrize("fn, message", [
    (lambda *args: solution(*args)[0], "must return two masks"),
    (lambda *args: tuple(m.nonzero()[:, 1] for m in solution(*args)),
     r"wrong shape: expected foreground \(1, 10\) \(\[N, P\], one entry per RoI: a mask, not indices\), got \(3,\)"),
    (lambda *args: tuple(m.long() for m in solution(*args)),
     r"wrong dtype: expected foreground torch.bool \(a mask\), got torch.int64"),
    (sampler(is_background=lambda iou, fg, hi, lo: iou >= lo), "is both foreground and background"),
    (lambda *args: solution(*args)[::-1], "foreground and background are swapped"),
    (foreground_from_every_roi,
     "RoI 1 of image 0 is foreground with IoU 0.4999: foreground needs IoU >= fg_iou_thresh"),
    (sampler(is_background=lambda iou, fg, hi, lo: iou < hi),
     r"background taken from the ignored band: RoI 3 .* IoU 0.0999, outside \[bg_iou_lo, bg_iou_hi\)"),
    (sampler(is_background=lambda iou, fg, hi, lo: (iou >= lo) & (iou < fg)), r"ignored band: .* IoU 0.4500"),
    (sampler(lambda iou, fg, hi, lo: iou > fg, lambda iou, fg, hi, lo: (iou >= lo) & (iou <= hi)),
     r"ignored band: .* IoU 0.5000.*half-open: IoU = bg_iou_hi is not background"),
    (sampler(clamped(lambda iou, fg, hi, lo: iou >= fg), clamped(lambda iou, fg, hi, lo: (iou >= lo) & (iou < hi))),
     r"\[the tiny preset .* ignored band: .* IoU -1.0000, .*matches no ground truth"),
    (sampler(is_foreground=lambda iou, fg, hi, lo: iou > fg),
     "IoU exactly fg_iou_thresh = 0.5 and should be foreground"),
    (sampler(is_background=lambda iou, fg, hi, lo: (iou > lo) & (iou < hi)),
     "IoU exactly bg_iou_lo = 0.1 and should be background"),
    (sampler(cap_foreground=False),
     r"too many foreground: image 0 has 60, at most int\(batch_size_per_image \* positive_fraction\) = 32"),
    (sampler(background_budget=lambda batch, max_fg, foreground: batch),
     "too many RoIs: image 0 has 32 foreground and 128 background, more than 128"),
    (sampler(background_budget=lambda batch, max_fg, foreground: batch - max_fg),
     "the batch is not filled: image 0 took 3 foreground, so background fills the other 125 of its 128 slots"),
    (sampler(take=take_off_by_one), "too few foreground: image 0 has 60 candidates for 32 slots, so 32 should be"),
    (sampler(take=take_positive_keys),
     r"wrong count with fewer candidates than slots: .* all 3 should be taken, got 2 .* key 0.0000; a key of 0"),
    (sampler(take=take_first_by_index), "not the highest keys"),
    (sampler(take=take_lowest_keys), "not the highest keys: image 0's foreground"),
])
def test_each_mistake_is_named(fn, message):
    with pytest.raises(AssertionError, match=message):
        check_roi_sampling(fn)


def test_the_exercise_not_done_goes_through():
    def not_done(*args):
        raise NotImplementedError("your code here: replace this line")

    with pytest.raises(NotImplementedError, match="your code here"):
        check_roi_sampling(not_done)
