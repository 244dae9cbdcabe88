"""frcnn_edu.transform: padded targets and the way back out (boxes_to_original_batch, postprocess)."""
import torch

from frcnn_edu.transform import boxes_to_original_batch, pad_targets, postprocess


def test_pad_targets_keeps_every_box_and_marks_the_padding():
    targets = [dict(boxes=torch.tensor([[1.0, 2.0, 3.0, 4.0]]), labels=torch.tensor([2])),
               dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64)),
               dict(boxes=torch.tensor([[0.0, 0.0, 5.0, 5.0], [1.0, 1.0, 2.0, 2.0]]), labels=torch.tensor([1, 3]))]
    boxes, labels, valid = pad_targets(targets, torch.device("cpu"))
    assert boxes.shape == (3, 2, 4) and labels.shape == valid.shape == (3, 2)
    assert valid.tolist() == [[True, False], [False, False], [True, True]]
    torch.testing.assert_close(boxes[2], targets[2]["boxes"])
    assert labels.tolist() == [[2, 0], [0, 0], [1, 3]]
    padding = boxes[~valid]
    assert ((padding[:, 2:] - padding[:, :2]) > 0).all()  # positive size: encoding them stays finite


def test_postprocess_keeps_the_valid_rows():
    boxes = torch.tensor([[[5.0, 10.0, 15.0, 20.0], [0.0, 0.0, 8.0, 8.0]], [[1.0, 1.0, 2.0, 2.0], [0, 0, 1, 1]]])
    scores, labels = torch.tensor([[0.75, 0.25], [0.5, 0.5]]), torch.tensor([[1, 2], [3, 3]])
    out = postprocess(boxes, scores, labels, torch.tensor([[True, False], [False, False]]))
    assert len(out) == 2 and out[0]["labels"].tolist() == [1] and out[0]["scores"].tolist() == [0.75]
    torch.testing.assert_close(out[0]["boxes"], boxes[0, :1])
    assert [v.shape[0] for v in out[1].values()] == [0, 0, 0]


def test_boxes_go_back_to_orig_px_image_by_image():
    boxes = torch.tensor([[[10.0, 20.0, 30.0, 40.0]], [[10.0, 20.0, 30.0, 40.0]]])  # image px
    back = boxes_to_original_batch(boxes, [(100, 200), (100, 200)], [(50, 100), (100, 200)])  # 2x, then 1x
    torch.testing.assert_close(back, torch.tensor([[[5.0, 10.0, 15.0, 20.0]], [[10.0, 20.0, 30.0, 40.0]]]))
