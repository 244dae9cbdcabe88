"""frcnn_edu.anchors: the paper's known numbers (9 anchors, their areas and ratios) and the grid's order."""
import math

import torch

from frcnn_edu.anchors import AnchorGenerator, base_anchors


def test_paper_anchors_known_numbers():
    anchors = base_anchors((128, 256, 512), (0.5, 1.0, 2.0), dtype=torch.float64)
    assert anchors.shape == (9, 4)  # FRCNN §3.3: k = 9
    w, h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    torch.testing.assert_close(w * h, torch.tensor([128.0**2, 256.0**2, 512.0**2] * 3, dtype=torch.float64))
    torch.testing.assert_close(h / w, torch.tensor([0.5] * 3 + [1.0] * 3 + [2.0] * 3, dtype=torch.float64))
    # hand computed: size 128, ratio 0.5 -> w = 128 / sqrt(0.5) = 181.02, h = 128 * sqrt(0.5) = 90.51
    torch.testing.assert_close(anchors[0], torch.tensor([-64 * math.sqrt(2), -32 * math.sqrt(2),
                                                         64 * math.sqrt(2), 32 * math.sqrt(2)], dtype=torch.float64))


def test_anchor_grid_count_and_centres():
    gen = AnchorGenerator((128.0, 256.0, 512.0), (0.5, 1.0, 2.0), 16)
    anchors = gen((38, 63))  # a 600 x 1000 image at stride 16
    assert anchors.shape == (38 * 63 * 9, 4)  # about 20000 (FRCNN §3.3: "roughly 20000 anchors")
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert torch.all(((centres - 8) % 16).abs() < 1e-3)  # cell centres (x + 0.5) * 16
    # order (y, x, a): anchor index 9 * (63 * y + x) + a is centred on cell (y, x)
    y, x = 5, 7
    torch.testing.assert_close(centres[9 * (63 * y + x) + 4], torch.tensor([x * 16 + 8.0, y * 16 + 8.0]))
