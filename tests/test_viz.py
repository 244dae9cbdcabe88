"""viz: every helper draws on an Agg figure without error and adds the artists it promises."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib import patches  # noqa: E402

from frcnn_edu import viz  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    yield ax
    fig.canvas.draw()  # the figure renders, not only builds
    plt.close(fig)


def test_show_image_tensor_and_array(ax):
    shown = viz.show_image(ax, torch.rand(3, 20, 30), title="t")
    assert shown.get_array().shape == (20, 30, 3)
    assert ax.get_xlabel() == "x (orig px)" and ax.get_ylabel() == "y (orig px)" and ax.get_title() == "t"
    viz.show_image(ax, np.zeros((20, 30, 3), np.uint8), frame="image px")
    assert ax.get_xlabel() == "x (image px)"
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        viz.show_image(ax, torch.rand(5, 20, 30))


def test_draw_boxes_one_rectangle_per_box(ax):
    boxes = torch.tensor([[0.0, 0.0, 10.0, 5.0], [2.0, 3.0, 8.0, 9.0], [1.0, 1.0, 2.0, 2.0]])
    artists = viz.draw_boxes(ax, boxes)
    assert len(ax.patches) == 3 and len(artists) == 3 and not ax.texts
    first = ax.patches[0]
    assert isinstance(first, patches.Rectangle)
    assert (first.get_x(), first.get_y(), first.get_width(), first.get_height()) == (-0.5, -0.5, 10.0, 5.0)


def test_draw_boxes_captions(ax):
    boxes = np.array([[0, 0, 10, 5], [2, 3, 8, 9]], dtype=np.float32)
    viz.draw_boxes(ax, boxes, labels=torch.tensor([1, 3]), scores=[0.9, 0.25], class_names=("a", "b", "c"),
                   color=["red", "blue"])
    assert [t.get_text() for t in ax.texts] == ["a 0.90", "c 0.25"]
    assert ax.patches[1].get_edgecolor()[:3] == (0.0, 0.0, 1.0)


def test_draw_boxes_empty_and_bad(ax):
    assert viz.draw_boxes(ax, torch.zeros(0, 4)) == []
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        viz.draw_boxes(ax, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="labels must have 2"):
        viz.draw_boxes(ax, torch.zeros(2, 4), labels=[1])


@pytest.mark.parametrize("proposer", ["rpn", "selective_search"])
def test_draw_pipeline(ax, proposer):
    drawn = viz.draw_pipeline(ax, proposer=proposer, highlight=("features", "proposer"))
    assert len(drawn["nodes"]) == 8 and len(drawn["arrows"]) == 8
    assert sum(isinstance(p, patches.FancyBboxPatch) for p in ax.patches) == 8
    assert sum(isinstance(p, patches.FancyArrowPatch) for p in ax.patches) == 8
    assert ax.get_title()
    texts = " ".join(t.get_text() for t in ax.texts)
    assert ("RPN" in texts) == (proposer == "rpn") and ("selective search" in texts) == (proposer != "rpn")


def test_draw_pipeline_shared_feature_map(ax):
    """In Faster R-CNN the feature map feeds both the RPN and RoI pooling; in Fast R-CNN the image feeds SS."""
    viz.draw_pipeline(ax)
    with pytest.raises(ValueError, match="proposer"):
        viz.draw_pipeline(ax, proposer="edge_boxes")
    with pytest.raises(ValueError, match="unknown nodes"):
        viz.draw_pipeline(ax, highlight=("rpn_head",))
    assert viz._EDGES_RPN.count(("features", "proposer")) == 1 and ("features", "roi_pool") in viz._EDGES_RPN


def test_plot_histogram(ax):
    artists = viz.plot_histogram(ax, torch.rand(100), bins=10, value_range=(0, 1), thresholds=(0.5, 0.7),
                                 label="x", title="IoU", xlabel="best IoU")
    assert len(ax.patches) == 10 and len(ax.lines) == 2 and len(artists) == 12
    assert ax.get_title() == "IoU" and ax.get_xlabel() == "best IoU" and ax.get_ylabel() == "count"


def test_best_anchor_ious_known_case():
    """A box equal to an anchor has best IoU 1; a 64x64 box against 128x128 anchors at best 1/4."""
    # stride 16, 64x64 image: 4x4 cells, cell (1, 1) has centre (24, 24); its 128-px anchor is [-40, -40, 88, 88]
    exact = torch.tensor([[-40.0, -40.0, 88.0, 88.0]])
    quarter = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    best = viz.best_anchor_ious([((64, 64), exact), ((64, 64), quarter)], sizes=(128,), ratios=(1.0,))
    torch.testing.assert_close(best, torch.tensor([1.0, 0.25]))


def test_anchor_panel(ax):
    image = torch.rand(3, 64, 96)
    boxes = torch.tensor([[10.0, 10.0, 40.0, 30.0], [50.0, 20.0, 90.0, 60.0]])
    out = viz.anchor_panel(ax, image, boxes, sizes=(16, 32), ratios=(0.5, 1.0, 2.0), stride=16)
    # 6 anchors of one cell + 2 ground truths + 2 best anchors
    assert len(ax.patches) == 6 + 2 + 2
    assert out["num_anchors"] == 4 * 6 * 6 and out["cell"] == (2, 3) and out["best_iou"].shape == (2,)
    assert set(out["recall"]) == {0.5, 0.7} and "recall@0.7" in ax.get_title()
    assert ax.get_xlabel() == "x (image px)"
