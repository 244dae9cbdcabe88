"""frcnn_edu.export: the exported detector (torch.export, and ONNX run by onnxruntime) equals the eager one on the
built-in test images (boxes within 1e-3 px, scores within 1e-4, the same labels and validity)."""
import pytest
import torch

from frcnn_edu import cli
from frcnn_edu.builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset
from frcnn_edu.course import course_model
from frcnn_edu.export import PaddedDetector, export_onnx, export_program
from frcnn_edu.voc import VOCDataset

SIZE = (224, 224)  # the built-in images are 224 to 288 px a side: crops of one size, the exported input's


@pytest.fixture(scope="module")
def model_and_images():
    """The course's trained detector (its scores are far apart: no near-tie decides what is kept) and the
    built-in test images it was not trained on, cropped to one size."""
    model, args = course_model()
    test = VOCDataset(make_builtin_dataset(args.root), year="builtin", image_set="test", classes=BUILTIN_CLASSES)
    images = torch.stack([test[i][0][:, : SIZE[0], : SIZE[1]] for i in range(4)])  # [4, 3, 224, 224]
    return model.eval(), images


def assert_same(found, expected):
    """The same detections: equal counts, and each one matched by label, box (1e-3 px) and score (1e-4). Matched,
    not compared slot by slot: near-equal scores (an untrained head's) may sort in another order."""
    boxes, scores, labels, valid = (torch.as_tensor(t) for t in found)
    assert valid.sum() == expected[3].sum() > 0
    mine = torch.cat([boxes[valid], scores[valid, None], labels[valid, None].double()], dim=1)  # [V, 6]
    theirs = torch.cat([expected[0][expected[3]], expected[1][expected[3], None],
                        expected[2][expected[3], None].double()], dim=1)
    difference = (mine[:, None, :] - theirs[None, :, :]).abs()  # [V, V, 6]
    matches = (difference[..., :4] <= 1e-3).all(-1) & (difference[..., 4] <= 1e-4) & (difference[..., 5] == 0)
    assert matches.any(1).all() and matches.any(0).all()


def test_torch_export_equals_eager(model_and_images):
    model, images = model_and_images
    program = export_program(model, *SIZE)
    with torch.no_grad():
        expected = PaddedDetector(model)(images[:1])
        for image in images:
            assert_same(program.module()(image[None]), PaddedDetector(model)(image[None]))
    assert_same(program.module()(images[:1]), expected)


def test_onnx_in_onnxruntime_equals_eager(model_and_images, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model, images = model_and_images
    path = export_onnx(model, tmp_path / "detector.onnx", *SIZE)
    session = onnxruntime.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "labels", "valid"]
    with torch.no_grad():
        for image in images:
            assert_same(session.run(None, {"images": image[None].numpy()}), PaddedDetector(model)(image[None]))


class Settle(torch.nn.Module):
    def forward(self, suppress, alive):
        return torch.ops.frcnn_edu.settle(suppress, alive)


def test_onnx_settle_loop_is_exact_on_a_deep_chain(tmp_path):
    """NMS's sequential step in ONNX (a Loop until nothing changes) equals the op on every kind of block: the
    deepest chain (box i suppresses i + 1, 120 long), dense and sparse overlaps, dead boxes."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from frcnn_edu.ops.settle_onnx import settle_loop

    gen = torch.Generator().manual_seed(0)
    suppress = (torch.rand(3, 120, 120, generator=gen) < torch.tensor([0.0, 0.02, 0.5])[:, None, None]).float()
    suppress = suppress.triu_(1)
    suppress[0].diagonal(1).fill_(1)
    alive = (torch.rand(3, 1, 120, generator=gen) > 0.1).float()
    program = torch.onnx.export(Settle().eval(), (suppress, alive), dynamo=True, verbose=False,
                                custom_translation_table={torch.ops.frcnn_edu.settle.default: settle_loop})
    program.save(str(tmp_path / "settle.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "settle.onnx"))
    names = [i.name for i in session.get_inputs()]
    found = session.run(None, dict(zip(names, (suppress.numpy(), alive.numpy()))))[0]
    expected = torch.ops.frcnn_edu.settle(suppress, alive)
    assert torch.equal(torch.from_numpy(found), expected) and expected[0, 0, :6].tolist() == [1, 0, 1, 0, 1, 0]


def test_the_command_names_a_bad_size(tmp_path, capsys):
    assert cli.main(["export", "--checkpoint", str(tmp_path / "x.pt"), "--height", "0"]) == 2
    assert "--height, --width and --batch must be >= 1, got 0" in capsys.readouterr().err
