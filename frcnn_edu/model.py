"""FasterRCNN: the stages wired together (FRCNN Fig. 2: "RPN + Fast R-CNN" sharing one conv feature map).

    images -> transform (rescale, normalise, batch) -> backbone (shared conv features, stride 16)
           -> anchors + RPN (objectness, deltas) -> proposal layer (K proposals per image, image px)
           -> RoI projection + pooling (x / 16, 7x7) -> FC head (classes, class-specific deltas)
           -> detections (image px) -> orig px

The calling convention is torchvision's: model(images, targets) in train mode returns the four losses;
model(images) in eval mode returns one dict per image with boxes (xyxy, orig px), labels (1..L-1) and scores.
This module only wires the stages: each computes its own training targets (rpn.anchor_targets, head.roi_targets),
and the transform prepares the inputs and builds the ragged outputs (transform.pad_targets, transform.postprocess).
`model.forward_trace(...)` returns the same plus every intermediate, for the notebooks. Apart from the optional
input check at the entry, nothing in the forward pass reads the device, in train and in eval, except the one
boolean selection per image that builds the ragged per-image output torchvision's API asks for.
Notebook: 01_from_rcnn_to_faster_rcnn, 06_fast_rcnn_head.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from .anchors import AnchorGenerator
from .backbone import build_backbone
from .config import FasterRCNNConfig
from .head import Detections, FastRCNNPredictor, head_loss, pool_rois, postprocess_detections, roi_targets
from .proposals import generate_proposals
from .rpn import RPNHead, anchor_targets, rpn_loss
from .transform import (boxes_to_original_batch, check_metadata, check_values, pad_targets, postprocess,
                        prepare_images)


class FasterRCNN(nn.Module):
    """Faster R-CNN (Ren et al. 2015) with torchvision's calling convention.

    Args:
        num_classes: L, including the background (21 for PASCAL VOC), as in torchvision.
        backbone: "vgg16" (the paper's), "resnet50" (C4) or "tiny" (CPU, from scratch).
        config: FasterRCNNConfig; default paper_vgg16() for vgg16/resnet50 and tiny_cpu() for tiny.
        pretrained: ImageNet weights for the backbone through torchvision's weights API (needs a download once).
        check_inputs: check target values at the entry (one device read per batch); False for tight GPU loops.
    """

    def __init__(self, num_classes: int, backbone: str = "vgg16", config: FasterRCNNConfig | None = None,
                 pretrained: bool = False, check_inputs: bool = True):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be an int >= 2, got {num_classes!r}")
        if config is None:
            config = FasterRCNNConfig.tiny_cpu() if backbone == "tiny" else FasterRCNNConfig.paper_vgg16()
        self.config, self.num_classes, self.check_inputs = config, num_classes, check_inputs
        net = build_backbone(backbone, pretrained, config.representation_size, config.roi_output_size)
        self.backbone, self.box_head, self.roi_output_size = net.body, net.head, net.roi_output_size
        self.anchor_generator = AnchorGenerator(config.anchor_sizes, config.anchor_ratios, config.feature_stride)
        self.rpn = RPNHead(net.out_channels, config.num_anchors)
        self.box_predictor = FastRCNNPredictor(net.head_dim, num_classes)
        self.register_buffer("image_mean", torch.tensor(config.image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(config.image_std).view(3, 1, 1), persistent=False)

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        """Train mode: dict of the four losses. Eval mode: list of {boxes [D, 4] orig px, labels [D], scores [D]}."""
        return self.forward_trace(images, targets)[0]

    def detect_padded(self, images: list[Tensor]) -> Detections:
        """Eval mode's detections with fixed shapes and no host read at all (for CUDA graphs and torch.export).

        Returns:
            Detections: boxes [N, D, 4] xyxy orig px, scores [N, D], labels [N, D] int64 (1..L-1) and valid [N, D]
            bool (D = config.box_detections_per_img), sorted by decreasing score, the valid ones first. forward()
            returns the same detections as torchvision's per-image lists (transform.postprocess).
        """
        if self.training:
            raise ValueError("detect_padded needs eval mode: call model.eval() first")
        return self._forward(images, None, {})

    def forward_trace(self, images: list[Tensor], targets: list[dict] | None = None) -> tuple[object, dict]:
        """forward, plus a dict of every intermediate (see the keys set below), for teaching and debugging.

        In train mode this is a training forward: batch norm layers update their running statistics, so
        inspect a copy (copy.deepcopy(model)) to leave a trained model as it was.
        """
        trace = {}
        output = self._forward(images, targets, trace)
        return (output if self.training else postprocess(output.boxes, output.scores, output.labels, output.valid),
                trace)

    def _forward(self, images: list[Tensor], targets: list[dict] | None, trace: dict) -> dict | Detections:
        """The pipeline: the losses in train mode, fixed-size detections in orig px in eval mode; fills `trace`."""
        check_metadata(images, targets, self.training)
        if targets is not None and self.check_inputs:
            check_values(targets, self.num_classes)
        cfg = self.config
        scale = 1.0 if self.training else cfg.test_scale
        batch, targets = prepare_images(images, targets, round(cfg.min_size * scale), round(cfg.max_size * scale),
                                        cfg.size_divisible, self.image_mean, self.image_std)
        # channels-last (NHWC in memory, same [N, C, H, W] shape): the conv kernels of oneDNN on a CPU and of
        # cuDNN run faster on it (tiny backbone, bf16 training on a CPU: 1.5x); the features keep the layout
        features = self.backbone(batch.tensors.contiguous(memory_format=torch.channels_last))  # [N, C, Hf, Wf]
        anchors = self.anchor_generator(tuple(features.shape[-2:])).to(features.dtype)  # [M, 4] image px
        objectness, rpn_deltas = self.rpn(features)  # [N, M], [N, M, 4]
        top_n = (cfg.rpn_pre_nms_top_n_train, cfg.rpn_post_nms_top_n_train) if self.training else (
            cfg.rpn_pre_nms_top_n_test, cfg.rpn_post_nms_top_n_test)
        proposals = generate_proposals(anchors, objectness, rpn_deltas, batch.image_sizes, *top_n,
                                       cfg.rpn_nms_thresh, cfg.rpn_min_size)
        trace.update(batch=batch, features=features, anchors=anchors, objectness=objectness, rpn_deltas=rpn_deltas,
                     proposals=proposals)
        if self.training:
            return self._losses(features, anchors, objectness, rpn_deltas, proposals, batch, targets, trace)
        return self._detect(features, proposals, batch, trace)

    def _pool_and_classify(self, features: Tensor, rois: Tensor, trace: dict) -> tuple[Tensor, Tensor]:
        cfg = self.config
        pooled = pool_rois(features, rois, self.roi_output_size, cfg.spatial_scale, cfg.roi_pool,
                           cfg.roi_sampling_ratio)  # [N*B, C, S, S]
        class_logits, box_deltas = self.box_predictor(self.box_head(pooled))  # [N*B, L], [N*B, L, 4]
        trace.update(pooled=pooled, class_logits=class_logits, box_deltas=box_deltas)
        return class_logits, box_deltas

    def _losses(self, features, anchors, objectness, rpn_deltas, proposals, batch, targets, trace) -> dict:
        cfg = self.config
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, features.device)
        rpn = anchor_targets(anchors, batch.image_sizes, gt_boxes, gt_valid, cfg.rpn_fg_iou_thresh,
                             cfg.rpn_bg_iou_thresh, cfg.rpn_batch_size_per_image, cfg.rpn_positive_fraction,
                             cfg.rpn_ignore_cross_boundary)
        loss_objectness, loss_rpn_box = rpn_loss(objectness, rpn_deltas, anchors, rpn.matched_boxes, rpn.positive,
                                                 rpn.negative, cfg.rpn_box_loss_beta)
        head = roi_targets(proposals.boxes, proposals.valid, gt_boxes, gt_labels, gt_valid, cfg.roi_fg_iou_thresh,
                           cfg.roi_bg_iou_thresh_hi, cfg.roi_bg_iou_thresh_lo, cfg.roi_batch_size_per_image,
                           cfg.roi_positive_fraction, cfg.box_coder_weights)
        class_logits, box_deltas = self._pool_and_classify(features, head.rois, trace)
        loss_classifier, loss_box = head_loss(class_logits, box_deltas, head.labels.flatten(), head.used.flatten(),
                                              head.box_targets.view(-1, 4), cfg.roi_box_loss_beta)
        trace.update(anchor_labels=rpn.labels, rpn_positive=rpn.positive, rpn_negative=rpn.negative, rois=head.rois,
                     roi_labels=head.labels, roi_used=head.used)
        return dict(loss_objectness=loss_objectness, loss_rpn_box_reg=loss_rpn_box,
                    loss_classifier=loss_classifier, loss_box_reg=loss_box)

    def _detect(self, features, proposals, batch, trace) -> Detections:
        cfg = self.config
        class_logits, box_deltas = self._pool_and_classify(features, proposals.boxes, trace)
        det = postprocess_detections(class_logits, box_deltas, proposals.boxes, proposals.valid, batch.image_sizes,
                                     cfg.box_coder_weights, cfg.box_score_thresh, cfg.box_nms_thresh,
                                     cfg.box_detections_per_img, cfg.box_min_size)
        trace.update(detections=det)  # image px
        return replace(det, boxes=boxes_to_original_batch(det.boxes, batch.image_sizes, batch.original_sizes))
