"""frcnn_edu.sampling: the balanced sampler's budget, fraction and candidates, and its keys' order."""
import torch

from frcnn_edu.sampling import sample_balanced


def test_balanced_sample_respects_budget_fraction_and_candidates():
    torch.manual_seed(0)
    labels = torch.tensor([[1] * 200 + [0] * 1000 + [-1] * 100, [1] * 3 + [0] * 1297])
    pos, neg = sample_balanced(labels == 1, labels == 0, 256, 0.5)
    assert pos.sum(1).tolist() == [128, 3]
    assert neg.sum(1).tolist() == [128, 253]
    assert not (pos & (labels != 1)).any() and not (neg & (labels != 0)).any()


def test_given_keys_pick_the_highest():
    keys = torch.tensor([[0.9, 0.1, 0.8, 0.7, 0.2, 0.3]])
    candidates = torch.tensor([[True, True, True, False, False, False]])
    pos, neg = sample_balanced(candidates, ~candidates, 3, 0.5, keys)
    # one positive at most (int(3 * 0.5)): the highest key 0.9; two negatives: keys 0.7 and 0.3
    assert pos.tolist() == [[True, False, False, False, False, False]]
    assert neg.tolist() == [[False, False, False, True, False, True]]
