"""frcnn_edu.box_coder: Faster R-CNN eq. 2, by hand, as a round trip, and against torchvision's BoxCoder."""
import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from frcnn_edu.box_coder import BBOX_CLAMP, decode_boxes, encode_boxes

F64 = torch.float64
WEIGHTS = {"rpn": (1.0, 1.0, 1.0, 1.0), "head": (10.0, 10.0, 5.0, 5.0)}


def random_boxes(num: int, seed: int) -> torch.Tensor:
    """[num, 4] float64 xyxy boxes with sides in [1, 201) px."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=gen, dtype=F64) * 1000 - 200
    wh = torch.rand(num, 2, generator=gen, dtype=F64) * 200 + 1
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("weights", WEIGHTS.values(), ids=WEIGHTS.keys())
def test_round_trip(weights):
    reference, proposals = random_boxes(500, seed=0), random_boxes(500, seed=1)
    # sizes differ by at most 201x, but clamping starts at 62.5x: keep the log-ratios inside the clamp
    reference[:, 2:] = reference[:, :2] + (reference[:, 2:] - reference[:, :2]).clamp(max=60)
    proposals[:, 2:] = proposals[:, :2] + (proposals[:, 2:] - proposals[:, :2]).clamp(min=2)
    deltas = encode_boxes(reference, proposals, weights)
    assert deltas.shape == (500, 4) and deltas.dtype == F64
    torch.testing.assert_close(decode_boxes(deltas, proposals, weights), reference, rtol=0, atol=1e-9)


def test_round_trip_keeps_leading_dims():
    reference, proposals = random_boxes(24, seed=2).view(2, 3, 4, 4), random_boxes(24, seed=3).view(2, 3, 4, 4)
    reference[..., 2:] = reference[..., :2] + (reference[..., 2:] - reference[..., :2]).clamp(min=5, max=60)
    proposals[..., 2:] = proposals[..., :2] + (proposals[..., 2:] - proposals[..., :2]).clamp(min=5)
    deltas = encode_boxes(reference, proposals)
    assert deltas.shape == (2, 3, 4, 4)
    torch.testing.assert_close(decode_boxes(deltas, proposals), reference, rtol=0, atol=1e-9)


def test_hand_computed():
    # p = (0, 0, 10, 20): centre (5, 10), w_p = 10, h_p = 20.  g = (2, 4, 22, 24): centre (12, 14), w_g = h_g = 20.
    # t_x = (12 - 5) / 10 = 0.7    t_y = (14 - 10) / 20 = 0.2    t_w = log(20 / 10) = log 2    t_h = log(20 / 20) = 0
    # With the head's weights (10, 10, 5, 5) each is multiplied: (7, 2, 5 log 2, 0).
    p = torch.tensor([[0.0, 0, 10, 20]], dtype=F64)
    g = torch.tensor([[2.0, 4, 22, 24]], dtype=F64)
    expected = torch.tensor([[0.7, 0.2, math.log(2), 0.0]], dtype=F64)
    torch.testing.assert_close(encode_boxes(g, p), expected, rtol=0, atol=1e-12)
    head = expected * torch.tensor([10.0, 10, 5, 5], dtype=F64)
    torch.testing.assert_close(encode_boxes(g, p, WEIGHTS["head"]), head, rtol=0, atol=1e-12)
    torch.testing.assert_close(decode_boxes(expected, p), g, rtol=0, atol=1e-12)


@pytest.mark.parametrize("weights", WEIGHTS.values(), ids=WEIGHTS.keys())
def test_clamp_limits_growth(weights):
    # p = (0, 0, 16, 32): centre (8, 16). t_w, t_h far above log(1000/16) are clamped there, so the box grows
    # exactly 1000/16 = 62.5 times: w = 16 * 62.5 = 1000, h = 32 * 62.5 = 2000, around the same centre.
    p = torch.tensor([[0.0, 0, 16, 32]], dtype=F64)
    deltas = torch.tensor([[0.0, 0.0, 1e4, 1e4]], dtype=F64)
    expected = torch.tensor([[8 - 500, 16 - 1000, 8 + 500, 16 + 1000]], dtype=F64)
    out = decode_boxes(deltas, p, weights)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-9)
    assert BBOX_CLAMP == math.log(1000.0 / 16)
    # just below the clamp nothing changes: t_w = ww * log(2) doubles the width
    ww = weights[2]
    doubled = decode_boxes(torch.tensor([[0.0, 0.0, ww * math.log(2), 0.0]], dtype=F64), p, weights)
    torch.testing.assert_close(doubled, torch.tensor([[-8.0, 0, 24, 32]], dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("weights", WEIGHTS.values(), ids=WEIGHTS.keys())
def test_parity_with_torchvision(weights, dtype):
    coder = BoxCoder(weights)  # BBOX_CLAMP is its default bbox_xform_clip
    reference, proposals = random_boxes(300, seed=4).to(dtype), random_boxes(300, seed=5).to(dtype)
    tol = 1e-9 if dtype == F64 else 1e-4
    ours = encode_boxes(reference, proposals, weights)
    torch.testing.assert_close(ours, coder.encode_single(reference, proposals), rtol=0, atol=tol)
    gen = torch.Generator().manual_seed(6)
    deltas = (torch.randn(300, 4, generator=gen, dtype=F64) * 3).to(dtype)  # some t_w, t_h beyond the clamp
    deltas[:10, 2:] = 50.0
    torch.testing.assert_close(decode_boxes(deltas, proposals, weights), coder.decode_single(deltas, proposals),
                               rtol=1e-6 if dtype != F64 else 0, atol=tol)
