"""controls.LiveFigure: a redraw per change, the picture kept on a bad value with a message, one redraw per set()."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from frcnn_edu import controls


def squares(sizes: str, stride: int):
    """A figure of one square per size; a bad list raises ValueError, as a notebook's draw does."""
    values = controls.parse_numbers(sizes, "sizes (px)")
    fig, ax = plt.subplots(figsize=(3, 2))
    for v in values:
        ax.add_patch(plt.Rectangle((0, 0), v, v, fill=False))
    ax.set(xlim=(0, 600), ylim=(0, 600), title=f"stride {stride}")
    return fig


def make_panel(**kwargs):
    return controls.LiveFigure(squares, sizes=controls.numbers_box((128, 256), "sizes (px)"),
                               stride=controls.choice([8, 16, 32], 16, "stride"), **kwargs)


def test_parse_numbers_names_the_box_and_the_text():
    assert controls.parse_numbers("128; 256,512 ", "sizes") == (128.0, 256.0, 512.0)
    for text, words in (("abc", "expected numbers"), (" , ", "at least one"), ("0, 1", "positive")):
        with pytest.raises(ValueError, match=words) as error:
            controls.parse_numbers(text, "sizes (px)")
        assert "sizes (px)" in str(error.value) and repr(text) in str(error.value)
    assert controls.parse_numbers("-1, 0.5", "shift", positive=False) == (-1.0, 0.5)


def test_each_change_redraws_and_a_bad_value_keeps_the_last_picture():
    panel = make_panel()
    assert panel.render() and panel.png.startswith(b"\x89PNG") and panel.renders == 1
    first = panel.png
    panel.controls["stride"].value = 32  # as a click in the browser: the observer redraws
    assert panel.renders == 2 and panel.png != first
    good = panel.png
    assert not panel.set(sizes="abc")
    assert panel.png == good and panel.renders == 2  # the last good picture stays
    assert "sizes (px)" in panel.message and "abc" in panel._message_line.value
    assert panel.set(sizes="64") and panel.message == "" and panel._message_line.value == ""
    assert plt.get_fignums() == []  # every figure closed: shown once, as the PNG


def test_set_changes_several_values_with_one_redraw_and_rejects_unknown_names():
    panel = make_panel()
    panel.set(sizes="32, 64", stride=8)
    assert panel.renders == 1 and panel.values() == {"sizes": "32, 64", "stride": 8}
    with pytest.raises(KeyError, match="stride"):
        panel.set(strid=4)


def test_a_button_panel_redraws_on_click_only():
    panel = make_panel(button="Draw")
    panel.controls["stride"].value = 8
    assert panel.renders == 0
    panel._button.click()
    assert panel.renders == 1


def test_controls_act_on_release_not_on_each_keystroke():
    for control in (controls.numbers_box((1,), "a"), controls.slider(0.5, 0, 1, 0.1, "b"),
                    controls.int_slider(5, 0, 10, 1, "c")):
        assert control.continuous_update is False


def test_show_displays_the_controls_then_a_plain_png_updated_in_place(monkeypatch):
    shown, updates = [], []

    class Handle:
        def update(self, obj):
            updates.append(obj)

    def fake_display(obj, display_id=False):
        shown.append(obj)
        return Handle() if display_id else None

    monkeypatch.setattr(controls, "display", fake_display)
    panel = make_panel()
    panel.show()
    assert shown[0] is panel.box and shown[1].data == panel.png  # the picture: an Image output, not widget state
    panel.set(stride=8)
    assert len(updates) == 1 and updates[0].data == panel.png
    bad = make_panel()
    bad.controls["sizes"].value = "x"
    with pytest.raises(ValueError, match="starting values"):
        bad.show()


def test_jpeg_pictures_for_photos():
    panel = make_panel(image_format="jpeg")
    assert panel.render() and panel.png.startswith(b"\xff\xd8")  # the JPEG magic number
    with pytest.raises(ValueError, match="image_format"):
        make_panel(image_format="gif")
