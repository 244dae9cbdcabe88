"""frcnn_edu.backbone: every backbone has stride 16 and the channels it declares; the heads map pooled RoIs to D."""
import pytest
import torch

from frcnn_edu.backbone import build_backbone


@pytest.mark.parametrize("name", ["tiny", "vgg16"])
def test_stride_16_and_declared_shapes(name):
    net = build_backbone(name, pretrained=False, representation_size=64)
    features = net.body(torch.rand(1, 3, 160, 224))
    assert features.shape == (1, net.out_channels, 160 // 16, 224 // 16)  # FRCNN: the conv map has stride 16
    pooled = torch.rand(5, net.out_channels, net.roi_output_size, net.roi_output_size)
    assert net.head(pooled).shape == (5, net.head_dim)


def test_unknown_name_and_tiny_pretrained_are_refused():
    with pytest.raises(ValueError, match="backbone must be 'vgg16', 'resnet50' or 'tiny', got 'alexnet'"):
        build_backbone("alexnet")
    with pytest.raises(ValueError, match="has no pretrained weights"):
        build_backbone("tiny", pretrained=True)
