"""Live controls for the instructor: widgets that redraw one matplotlib figure, shown as a plain image.

    panel = LiveFigure(draw, sizes=numbers_box((128, 256, 512), "sizes (px)"), stride=choice([8, 16, 32], 16, "stride"))
    panel.show()                 # the controls, a message line, then the picture
    panel.set(sizes="64, 128")   # what a student's edit does (tests and notebooks use it)

`draw(**values)` returns a matplotlib Figure for the controls' current values. The picture is an ordinary PNG
output with a display id, updated in place on each change: a saved notebook shows it without a kernel and without
trusting the notebook (saved widget state renders only in a trusted notebook with a live widget manager), and a
live one redraws it. A ValueError from `draw` (a value like `abc`, an empty list) becomes a message beside the
controls and the last good picture stays. Text boxes and sliders act on Enter or release (continuous_update=False);
a panel whose redraw takes seconds gets a button instead (`button="Evaluate"`). Figures are drawn with 12-pt text
at 100 dpi, for a projector. Notebooks: 04 anchors, 05 RPN, 06 head, 07 scale, 08 pooling.
"""
from __future__ import annotations

import html
import io
from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
from IPython.display import Image, display
from matplotlib.figure import Figure

# readable from the back of a lecture room: the size a figure is drawn at, in inches at 100 dpi, and its text
PROJECTOR = dict(figsize=(10, 5.5), dpi=100)
PROJECTOR_STYLE = {"font.size": 12, "axes.titlesize": 13, "legend.fontsize": 11, "figure.dpi": 100}
CONTROL_LAYOUT = widgets.Layout(width="auto")
CONTROL_STYLE = {"description_width": "initial"}


def parse_numbers(text: str, name: str, positive: bool = True) -> tuple[float, ...]:
    """Numbers separated by commas (or semicolons), as typed into a text box: '128, 256, 512' -> (128.0, 256.0, 512.0).

    Raises ValueError naming the box and quoting the text when a value is not a number, when there is none, or
    (positive=True) when one is zero or negative.
    """
    try:
        values = tuple(float(v) for v in text.replace(";", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{name}: expected numbers separated by commas, got {text!r}") from None
    if not values:
        raise ValueError(f"{name}: expected at least one number, got {text!r}")
    if positive and min(values) <= 0:
        raise ValueError(f"{name}: expected positive numbers, got {text!r}")
    return values


def numbers_box(values: Sequence[float], description: str) -> widgets.Text:
    """A text box holding a list of numbers (parse it with parse_numbers); acts on Enter or leaving the box."""
    return widgets.Text(value=", ".join(f"{v:g}" for v in values), description=description, continuous_update=False,
                        layout=widgets.Layout(width="220px"), style=CONTROL_STYLE)


def slider(value: float, low: float, high: float, step: float, description: str) -> widgets.FloatSlider:
    """A slider for a float that acts when released."""
    return widgets.FloatSlider(value=value, min=low, max=high, step=step, description=description,
                               continuous_update=False, readout_format=".2f", style=CONTROL_STYLE,
                               layout=widgets.Layout(width="320px"))


def int_slider(value: int, low: int, high: int, step: int, description: str) -> widgets.IntSlider:
    """A slider for an integer that acts when released."""
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=False, style=CONTROL_STYLE, layout=widgets.Layout(width="320px"))


def choice(options: Sequence, value, description: str) -> widgets.Dropdown:
    """A drop-down list; options are values or (label, value) pairs."""
    return widgets.Dropdown(options=list(options), value=value, description=description, style=CONTROL_STYLE,
                            layout=CONTROL_LAYOUT)


class LiveFigure:
    """Controls that redraw a figure, drawn as a plain PNG output that a saved notebook keeps.

    Args:
        draw: called as draw(**values) with each control's current value under its keyword; returns a Figure
            (LiveFigure saves and closes it). A ValueError it raises is shown as the message.
        button: a label to redraw only on a click (for redraws that take seconds); None redraws on each change.
        image_format: "png", or "jpeg" for photos (about 3x smaller in the saved notebook).
        **controls: name -> ipywidgets value widget (numbers_box, slider, int_slider, choice or any other).

    Attributes: png (bytes of the last good picture, in image_format), message (the last error, '' after a good redraw), renders.
    """

    def __init__(self, draw: Callable[..., Figure], button: str | None = None, image_format: str = "png",
                 **controls: widgets.ValueWidget):
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format: 'png' or 'jpeg', got {image_format!r}")
        self.draw, self.controls, self.image_format = draw, controls, image_format
        self.png, self.message, self.renders = b"", "", 0
        self._handle, self._silent = None, False
        self._message_line = widgets.HTML(value="")
        self._message_line.add_class("frcnn-edu-message")
        parts = list(controls.values())
        if button is None:
            for control in parts:
                control.observe(self._changed, names="value")
        else:
            self._button = widgets.Button(description=button, button_style="primary")
            self._button.on_click(lambda _: self.render())
            parts.append(self._button)
        self.box = widgets.VBox([widgets.HBox(parts, layout=widgets.Layout(flex_flow="row wrap")), self._message_line])
        self.box.add_class("frcnn-edu-controls")

    def values(self) -> dict:
        """The controls' current values, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def render(self) -> bool:
        """Redraw from the current values. Returns False (message set, picture kept) when draw raises ValueError."""
        open_before = set(plt.get_fignums())
        try:
            with matplotlib.rc_context(PROJECTOR_STYLE):
                figure = self.draw(**self.values())
        except ValueError as error:
            self.message = str(error)
            self._message_line.value = f'<span style="color: #b00020">&#9888; {html.escape(self.message)}</span>'
            for number in set(plt.get_fignums()) - open_before:  # a figure the failed draw had started
                plt.close(number)
            return False
        buffer = io.BytesIO()
        figure.savefig(buffer, format=self.image_format, bbox_inches="tight",
                       **({"pil_kwargs": {"quality": 85}} if self.image_format == "jpeg" else {}))
        plt.close(figure)  # shown as the PNG only, never a second time by the inline backend
        self.png, self.message, self.renders = buffer.getvalue(), "", self.renders + 1
        self._message_line.value = ""
        if self._handle is not None:
            self._handle.update(Image(data=self.png, format=self.image_format))
        return True

    def set(self, **values) -> bool:
        """Set controls by name, as a student would, and redraw once; returns render()'s result."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise KeyError(f"no control named {sorted(unknown)}; this panel has {sorted(self.controls)}")
        self._silent = True  # several values change, one redraw
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._silent = False
        return self.render()

    def show(self) -> None:
        """Display the controls and the picture of their starting values (drawn now if not yet drawn)."""
        if not self.png and not self.render():
            raise ValueError(f"the starting values cannot be drawn: {self.message}")
        display(self.box)
        self._handle = display(Image(data=self.png, format=self.image_format), display_id=True)

    def _changed(self, change) -> None:
        if not self._silent:
            self.render()
