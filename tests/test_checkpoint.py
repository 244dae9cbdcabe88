"""frcnn_edu.checkpoint: a checkpoint rebuilds its detector, and one carrying code is refused without running it."""
import pickle

import pytest
import torch

from frcnn_edu import FasterRCNN, FasterRCNNConfig
from frcnn_edu.checkpoint import load_checkpoint, model_from_checkpoint, save_atomic

RAN = []


def _leave_a_mark(*args):  # what a malicious pickle would call; must never run
    RAN.append(args)
    return {}


class Payload:
    def __reduce__(self):
        return (_leave_a_mark, ("pwned",))


def _state(model: FasterRCNN, backbone: str = "tiny") -> dict:
    from dataclasses import asdict
    return dict(model=model.state_dict(), config=asdict(model.config), num_classes=model.num_classes,
                backbone=backbone, classes=["ellipse", "rectangle", "triangle"])


def test_a_checkpoint_rebuilds_the_same_detector(tmp_path):
    torch.manual_seed(0)
    model = FasterRCNN(4, "tiny", FasterRCNNConfig.tiny_cpu(min_size=128, max_size=160)).eval()
    save_atomic(_state(model), tmp_path / "checkpoint.pt")
    again = model_from_checkpoint(load_checkpoint(tmp_path / "checkpoint.pt"))
    image = [torch.rand(3, 120, 150)]
    with torch.no_grad():
        for key, value in model(image)[0].items():
            assert torch.equal(value, again(image)[0][key]), key
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left nothing behind


def test_a_checkpoint_carrying_code_is_refused_and_nothing_runs(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "config": {}, "num_classes": 2, "backbone": "tiny", "classes": [], "x": Payload()}, path)
    assert RAN == [] and pickle.loads(pickle.dumps(Payload())) == {} and RAN == [("pwned",)]  # the payload works
    RAN.clear()
    with pytest.raises(ValueError, match=f"^{path} is not a safe frcnn_edu checkpoint .*nothing in it was run"):
        load_checkpoint(path)
    assert RAN == []


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint", "is not a torch checkpoint"),
    ({"model": {}}, "is not a frcnn_edu checkpoint: no config, num_classes, backbone, classes"),
])
def test_other_files_are_named(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="frcnn-edu train --out RUN"):
        load_checkpoint(tmp_path / "missing.pt")
