"""FasterRCNNConfig: every hyperparameter of the detector in one frozen dataclass, the paper's values as defaults.

Sources, pinned: Faster R-CNN = Ren et al., arXiv:1506.01497v3 ("FRCNN §x"); Fast R-CNN = Girshick,
arXiv:1504.08083v2 ("Fast §x"); where the papers are silent, py-faster-rcnn's lib/fast_rcnn/config.py
("pyfrcnn cfg.X") or torchvision's detection defaults ("torchvision"). No global config: each stage takes the
fields it needs as arguments, so a notebook can build one stage alone. Presets: `paper_vgg16()` (the defaults)
and `tiny_cpu()` (small images and anchors for the tiny backbone that trains on a laptop CPU in minutes).
Notebook: 01_from_rcnn_to_faster_rcnn (the map) and each stage's notebook.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class FasterRCNNConfig:
    # --- input scale (FRCNN §3.3; Fast §5.2 found one scale nearly as good as five): shorter side 600, longer <= 1000
    min_size: int = 600
    max_size: int = 1000
    size_divisible: int = 16  # pad the batch to a multiple of the stride so every image px has a feature cell
    # test images at test_scale x (min_size, max_size); 1.0 = the paper's single scale for training and testing.
    # Larger suits a model trained with zoom crops (train.py --zoom), which saw objects at 1x to 2x their size.
    test_scale: float = 1.0
    # torchvision's ImageNet weights expect these (its weights' transforms); the paper's Caffe VGG-16 subtracted
    # a BGR pixel mean instead (pyfrcnn cfg.PIXEL_MEANS), which suits Caffe's weights, not torchvision's.
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    # --- anchors (FRCNN §3.1.1, §3.3): sizes are sqrt(area) in image px; ratios are h / w
    feature_stride: int = 16  # VGG-16 conv5_3 (FRCNN §3.3: "total stride ... is 16 pixels")
    anchor_sizes: tuple[float, ...] = (128.0, 256.0, 512.0)  # FRCNN §3.3: box areas 128², 256², 512² px
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # FRCNN §3.3: aspect ratios 1:2, 1:1, 2:1

    # --- RPN training targets (FRCNN §3.1.2, §3.1.3)
    rpn_fg_iou_thresh: float = 0.7  # §3.1.2: positive above 0.7 IoU with any ground truth (and each gt's best)
    rpn_bg_iou_thresh: float = 0.3  # §3.1.2: negative below 0.3 IoU with every ground truth
    rpn_batch_size_per_image: int = 256  # §3.1.3: 256 anchors sampled per image
    rpn_positive_fraction: float = 0.5  # §3.1.3: up to 1:1 positives to negatives
    rpn_ignore_cross_boundary: bool = True  # §3.3: cross-boundary anchors are ignored in training
    rpn_box_loss_beta: float = 1.0 / 9  # smooth-L1 transition (pyfrcnn cfg.TRAIN.RPN sigma 3: beta = 1/9)

    # --- proposal layer (FRCNN §3.3; pyfrcnn cfg.TRAIN/TEST.RPN_*)
    rpn_nms_thresh: float = 0.7  # §3.3: NMS on proposals at IoU 0.7
    rpn_pre_nms_top_n_train: int = 12000  # pyfrcnn cfg.TRAIN.RPN_PRE_NMS_TOP_N
    rpn_post_nms_top_n_train: int = 2000  # §3.3 / pyfrcnn cfg.TRAIN.RPN_POST_NMS_TOP_N
    rpn_pre_nms_top_n_test: int = 6000  # pyfrcnn cfg.TEST.RPN_PRE_NMS_TOP_N
    rpn_post_nms_top_n_test: int = 300  # §4.1: 300 proposals per image at test time
    rpn_min_size: float = 16.0  # pyfrcnn cfg.TRAIN.RPN_MIN_SIZE: drop proposals under 16 px a side (image px)

    # --- Fast R-CNN head training (Fast §2.3)
    roi_batch_size_per_image: int = 128  # pyfrcnn cfg.TRAIN.BATCH_SIZE: 128 RoIs per image (Fast §2.3: 64, R=128 over N=2)
    roi_positive_fraction: float = 0.25  # Fast §2.3: 25% foreground
    roi_fg_iou_thresh: float = 0.5  # Fast §2.3: foreground at IoU >= 0.5
    roi_bg_iou_thresh_hi: float = 0.5  # Fast §2.3: background in [0.1, 0.5)
    roi_bg_iou_thresh_lo: float = 0.1  # Fast §2.3 (torchvision uses 0.0: every RoI under 0.5 is background)
    box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)  # pyfrcnn BBOX_NORMALIZE_STDS
    roi_box_loss_beta: float = 1.0  # Fast §2.3 eq. 3: smooth L1 with transition at 1
    roi_output_size: int = 7  # Fast §2.1: H = W = 7 for VGG-16
    roi_pool: str = "pool"  # "pool": RoI max pooling (Fast §2.1); "align": RoIAlign (Mask R-CNN §3)
    roi_sampling_ratio: int = 2  # RoIAlign only: samples per bin per axis (torchvision's MultiScaleRoIAlign)
    representation_size: int = 4096  # Fast §2.1: fc6 and fc7 of VGG-16 (the tiny backbone's preset is smaller)

    # --- detection post-processing (Fast §3: per-class NMS / pyfrcnn cfg.TEST)
    box_score_thresh: float = 0.05  # pyfrcnn test_net thresh: keep detections scoring above 0.05
    box_nms_thresh: float = 0.3  # pyfrcnn cfg.TEST.NMS: per-class NMS at IoU 0.3
    box_detections_per_img: int = 100  # pyfrcnn test_net max_per_image
    box_min_size: float = 1e-2  # torchvision's postprocess drops boxes under 0.01 px a side

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"FasterRCNNConfig.{f.name} must be >= 0, got {value!r}")
        for name in ("rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "rpn_positive_fraction", "rpn_nms_thresh",
                     "roi_positive_fraction", "roi_fg_iou_thresh", "roi_bg_iou_thresh_hi", "roi_bg_iou_thresh_lo",
                     "box_score_thresh", "box_nms_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FasterRCNNConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.rpn_bg_iou_thresh > self.rpn_fg_iou_thresh:
            raise ValueError(f"rpn_bg_iou_thresh ({self.rpn_bg_iou_thresh}) must be <= rpn_fg_iou_thresh "
                             f"({self.rpn_fg_iou_thresh})")
        if self.roi_bg_iou_thresh_lo > self.roi_bg_iou_thresh_hi:
            raise ValueError(f"roi_bg_iou_thresh_lo ({self.roi_bg_iou_thresh_lo}) must be <= roi_bg_iou_thresh_hi "
                             f"({self.roi_bg_iou_thresh_hi})")
        if self.test_scale <= 0:
            raise ValueError(f"test_scale must be > 0, got {self.test_scale!r}")
        if self.min_size > self.max_size:
            raise ValueError(f"min_size ({self.min_size}) must be <= max_size ({self.max_size})")
        if self.roi_pool not in ("pool", "align"):
            raise ValueError(f"roi_pool must be 'pool' or 'align', got {self.roi_pool!r}")
        if not self.anchor_sizes or not self.anchor_ratios or min(self.anchor_sizes + self.anchor_ratios) <= 0:
            raise ValueError(f"anchor_sizes and anchor_ratios must be non-empty and positive, got "
                             f"{self.anchor_sizes!r} and {self.anchor_ratios!r}")
        if self.rpn_post_nms_top_n_train > self.rpn_pre_nms_top_n_train or (
                self.rpn_post_nms_top_n_test > self.rpn_pre_nms_top_n_test):
            raise ValueError("rpn_post_nms_top_n_* must not exceed rpn_pre_nms_top_n_*")

    @property
    def num_anchors(self) -> int:
        """A, anchors per feature-map cell."""
        return len(self.anchor_sizes) * len(self.anchor_ratios)

    @property
    def spatial_scale(self) -> float:
        """Image px -> feature cells: RoI projection divides by the stride (Fast §2.1)."""
        return 1.0 / self.feature_stride

    @classmethod
    def paper_vgg16(cls, **overrides) -> "FasterRCNNConfig":
        """The paper's setting for VGG-16 (the defaults)."""
        return cls(**overrides)

    @classmethod
    def tiny_cpu(cls, **overrides) -> "FasterRCNNConfig":
        """Small images, small anchors and fewer proposals: the tiny backbone trains from scratch on a CPU.

        The built-in dataset's images are ~256 px with objects of 16 to ~115 px, rescaled by 1.25 to a 320 px
        shorter side; anchors shrink accordingly (24 to 160 px) and so do the proposal counts (a few objects per
        image), and background RoIs go down to IoU 0. RoIAlign replaces RoI max pooling: objects of one or two
        stride-16 cells lose most of their shape to RoI pooling's rounding (notebook 08 measures it), and RoIAlign
        keeps it.
        """
        tiny = dict(
            min_size=320, max_size=512,
            anchor_sizes=(24.0, 48.0, 96.0, 160.0), anchor_ratios=(0.5, 1.0, 2.0),
            rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=200,
            rpn_pre_nms_top_n_test=600, rpn_post_nms_top_n_test=100,
            rpn_min_size=2.0, rpn_ignore_cross_boundary=False,
            roi_pool="align", representation_size=256,
            # every RoI under 0.5 IoU is background, as in py-faster-rcnn's end-to-end Faster R-CNN
            # (faster_rcnn_end2end.yml BG_THRESH_LO: 0.0) and torchvision: measured on the built-in dataset, 0.1 left
            # the head blind to proposals far from any object, the top false positives (6000 iterations: mAP 0.908
            # against 0.900)
            roi_bg_iou_thresh_lo=0.0,
        )
        tiny.update(overrides)
        return cls(**tiny)

    def replace(self, **changes) -> "FasterRCNNConfig":
        """A copy with some fields changed (the config is frozen)."""
        return replace(self, **changes)
