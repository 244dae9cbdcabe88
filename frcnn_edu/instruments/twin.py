"""A torchvision twin: the same modules and weights inside torchvision.models.detection.FasterRCNN.

Used to prove parity (tests/test_model.py: equal detections) and to time both implementations on the same work
(benchmarks/bench_model.py). The twin shares our backbone, RPN head, box head and predictor *objects*, hands our
anchors to torchvision's RPN, and pools RoIs with torchvision's own roi_pool (or roi_align); everything else
(transform, proposal layer, sampling, losses, post-processing) is torchvision's. Our deliberate differences
are config fields, so a parity run sets them to torchvision's behaviour: rpn_min_size=1e-3 (torchvision
hard-codes it), roi_bg_iou_thresh_lo=0.0 (torchvision keeps every RoI under 0.5 as background) and
rpn_ignore_cross_boundary=False (torchvision trains on cross-boundary anchors).
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchorGenerator

from ..model import FasterRCNN


class _Features(nn.Module):
    def __init__(self, body: nn.Module, out_channels: int):
        super().__init__()
        self.body, self.out_channels = body, out_channels

    def forward(self, x):
        return self.body(x)


class _Anchors(TorchvisionAnchorGenerator):
    """Our anchors for torchvision's RPN (its constructor insists on an AnchorGenerator)."""

    def __init__(self, generator: nn.Module):
        super().__init__(sizes=((1,),), aspect_ratios=((1.0,),))
        self.generator = generator

    def num_anchors_per_location(self):
        return [self.generator.num_anchors]

    def forward(self, image_list, feature_maps):
        anchors = self.generator(tuple(feature_maps[0].shape[-2:])).to(feature_maps[0].dtype)
        return [anchors for _ in image_list.image_sizes]


class _RPNHead(nn.Module):
    """Our RPN head with torchvision's interface: lists of raw [N, A, Hf, Wf] and [N, 4A, Hf, Wf] maps."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features):
        x = torch.relu(self.head.conv(features[0]))
        return [self.head.cls_logits(x)], [self.head.bbox_pred(x)]


class _RoIPool(torchvision.ops.MultiScaleRoIAlign):
    """torchvision's roi_pool or roi_align on the one feature map (its constructor insists on this class)."""

    def __init__(self, output_size: int, spatial_scale: float, method: str, sampling_ratio: int):
        super().__init__(["0"], output_size, sampling_ratio)
        self.size, self.scale, self.method = output_size, spatial_scale, method

    def forward(self, features, proposals, image_shapes):
        if self.method == "align":
            return torchvision.ops.roi_align(features["0"], proposals, self.size, self.scale, self.sampling_ratio)
        return torchvision.ops.roi_pool(features["0"], proposals, self.size, self.scale)


class _Predictor(nn.Module):
    def __init__(self, predictor: nn.Module):
        super().__init__()
        self.predictor = predictor

    def forward(self, x):
        logits, deltas = self.predictor(x)  # [R, L], [R, L, 4]
        return logits, deltas.flatten(1)  # torchvision wants [R, 4L]


def torchvision_twin(model: FasterRCNN) -> TorchvisionFasterRCNN:
    """torchvision's FasterRCNN sharing `model`'s modules (and so its weights) and configuration."""
    cfg = model.config
    if cfg.test_scale != 1.0:
        raise ValueError(f"torchvision's transform tests at its training scale: the twin needs test_scale=1.0, "
                         f"got {cfg.test_scale}")
    out_channels = model.rpn.conv.in_channels
    twin = TorchvisionFasterRCNN(
        _Features(model.backbone, out_channels), num_classes=None,
        min_size=cfg.min_size, max_size=cfg.max_size, image_mean=list(cfg.image_mean), image_std=list(cfg.image_std),
        size_divisible=cfg.size_divisible, rpn_anchor_generator=_Anchors(model.anchor_generator),
        rpn_head=_RPNHead(model.rpn),
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train, rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_nms_thresh=cfg.rpn_nms_thresh, rpn_fg_iou_thresh=cfg.rpn_fg_iou_thresh,
        rpn_bg_iou_thresh=cfg.rpn_bg_iou_thresh, rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        rpn_positive_fraction=cfg.rpn_positive_fraction,
        box_roi_pool=_RoIPool(model.roi_output_size, cfg.spatial_scale, cfg.roi_pool, cfg.roi_sampling_ratio),
        box_head=model.box_head, box_predictor=_Predictor(model.box_predictor),
        box_score_thresh=cfg.box_score_thresh, box_nms_thresh=cfg.box_nms_thresh,
        box_detections_per_img=cfg.box_detections_per_img, box_fg_iou_thresh=cfg.roi_fg_iou_thresh,
        box_bg_iou_thresh=cfg.roi_bg_iou_thresh_hi, box_batch_size_per_image=cfg.roi_batch_size_per_image,
        box_positive_fraction=cfg.roi_positive_fraction, bbox_reg_weights=cfg.box_coder_weights,
    )
    return twin.train(model.training)
