"""frcnn_edu.config: the paper's values as defaults (known numbers), the presets, and errors naming the field."""
import pytest

from frcnn_edu import FasterRCNNConfig


def test_paper_defaults_known_numbers():
    cfg = FasterRCNNConfig.paper_vgg16()
    assert cfg.anchor_sizes == (128, 256, 512) and cfg.anchor_ratios == (0.5, 1.0, 2.0)  # FRCNN §3.3
    assert cfg.num_anchors == 9 and cfg.spatial_scale == 1 / 16  # k = 9; stride 16 (Fast §2.1)
    assert (cfg.rpn_fg_iou_thresh, cfg.rpn_bg_iou_thresh) == (0.7, 0.3)  # FRCNN §3.1.2
    assert (cfg.min_size, cfg.max_size) == (600, 1000)  # FRCNN §3.3 after Fast §5.2


@pytest.mark.parametrize("changes, message", [
    (dict(rpn_fg_iou_thresh=1.5), "rpn_fg_iou_thresh must be in [0, 1], got 1.5"),
    (dict(rpn_batch_size_per_image=-1), "rpn_batch_size_per_image must be >= 0, got -1"),
    (dict(min_size=900, max_size=800), "min_size (900) must be <= max_size (800)"),
    (dict(roi_pool="max"), "roi_pool must be 'pool' or 'align', got 'max'"),
    (dict(test_scale=0.0), "test_scale must be > 0"),
])
def test_bad_values_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        FasterRCNNConfig(**changes)


def test_replace_checks_too_and_presets_differ():
    tiny = FasterRCNNConfig.tiny_cpu()
    assert tiny.min_size < FasterRCNNConfig().min_size
    assert tiny.replace(min_size=300).min_size == 300
    with pytest.raises(ValueError, match="rpn_nms_thresh"):
        tiny.replace(rpn_nms_thresh=2.0)
