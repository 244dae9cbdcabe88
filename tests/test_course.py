"""frcnn_edu.course: the shared model is trained once into its run folder, then loaded with the same weights."""
import torch

from frcnn_edu.course import course_model


def test_trains_once_then_loads_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("FRCNN_EDU_HOME", str(tmp_path))  # the default folders: the cache's course/ and builtin/
    first, args = course_model(iterations=2)
    assert args.out == str(tmp_path / "course") and (tmp_path / "course" / "checkpoint.pt").is_file()
    assert (tmp_path / "builtin" / "VOCdevkit" / "VOCbuiltin" / "builtin.json").is_file()
    stamp = (tmp_path / "course" / "checkpoint.pt").stat().st_mtime_ns
    again, _ = course_model(iterations=2)
    assert (tmp_path / "course" / "checkpoint.pt").stat().st_mtime_ns == stamp  # loaded, not retrained
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    assert not again.training
