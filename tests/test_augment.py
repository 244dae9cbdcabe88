"""frcnn_edu.augment: the flip (hand-computed, an involution, reproducible) and zoom crops that keep every object."""
import pytest
import torch

from frcnn_edu.augment import RandomHorizontalFlip, hflip, zoom_crop


def test_flip_hand_computed_and_twice_is_identity():
    image = torch.arange(30.0).reshape(1, 3, 10).repeat(3, 1, 1)  # [3, H=3, W=10]
    target = dict(boxes=torch.tensor([[1.0, 2.0, 4.0, 3.0], [0.0, 0.0, 10.0, 3.0]]), labels=torch.tensor([1, 2]))
    flipped_image, flipped = hflip(image, target)
    # W = 10: [1, 4) -> [10 - 4, 10 - 1) = [6, 9); the full-width box stays [0, 10).
    assert flipped["boxes"].tolist() == [[6.0, 2.0, 9.0, 3.0], [0.0, 0.0, 10.0, 3.0]]
    assert flipped_image[0, 0, 0] == image[0, 0, 9] and flipped["labels"] is target["labels"]
    # The pixels inside a box stay inside it: columns 1..3 hold what columns 6..8 hold after the flip.
    assert torch.equal(image[:, :, 1:4], flipped_image[:, :, 6:9].flip(-1))
    back_image, back = hflip(flipped_image, flipped)
    assert torch.equal(back_image, image) and torch.equal(back["boxes"], target["boxes"])


def test_random_flip_is_reproducible():
    image, target = torch.rand(3, 4, 6), dict(boxes=torch.tensor([[0.0, 0.0, 2.0, 1.0]]))

    def decisions(seed):
        flip = RandomHorizontalFlip(0.5, torch.Generator().manual_seed(seed))
        return [flip(image, target)[1]["boxes"][0, 0].item() == 4.0 for _ in range(32)]

    assert decisions(0) == decisions(0) and 4 < sum(decisions(0)) < 28
    assert decisions(0) != decisions(1)
    assert RandomHorizontalFlip(0.0)(image, target)[0] is image
    assert RandomHorizontalFlip(1.0)(image, target)[1]["boxes"].tolist() == [[4.0, 0.0, 6.0, 1.0]]
    with pytest.raises(ValueError, match="p must be in"):
        RandomHorizontalFlip(1.5)


@pytest.mark.parametrize("seed", range(20))
def test_zoom_crop_keeps_every_object_whole(seed):
    gen = torch.Generator().manual_seed(seed)
    height, width = 60 + int(torch.randint(60, (), generator=gen)), 60 + int(torch.randint(60, (), generator=gen))
    image = torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8)
    count = int(torch.randint(0, 4, (), generator=gen))
    corner = torch.rand(count, 2, generator=gen) * torch.tensor([width - 20.0, height - 20.0])
    boxes = torch.cat([corner, corner + 4 + torch.rand(count, 2, generator=gen) * 15], dim=1).floor()
    target = dict(boxes=boxes, labels=torch.ones(count, dtype=torch.int64))
    crop, moved = zoom_crop(image, target, torch.rand(3, generator=gen))
    h, w = crop.shape[-2:]
    assert h >= height // 2 and w >= width // 2  # at most a 2x zoom
    assert (moved["boxes"][:, :2] >= 0).all() and (moved["boxes"][:, 2] <= w).all() and (moved["boxes"][:, 3] <= h).all()
    shift = (boxes - moved["boxes"])[:, :2]
    assert torch.equal(moved["boxes"][:, 2:] - moved["boxes"][:, :2], boxes[:, 2:] - boxes[:, :2])  # sizes kept
    for (x, y), box in zip(shift.long().tolist(), moved["boxes"].long().tolist()):  # the same pixels under each box
        assert torch.equal(crop[:, box[1]:box[3], box[0]:box[2]], image[:, box[1] + y:box[3] + y, box[0] + x:box[2] + x])
