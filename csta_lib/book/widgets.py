"""Widgets that keep working in the static book, with no kernel behind the page.

A ``Stack`` of pre-rendered ``Image`` widgets whose ``selected_index`` is ``jslink``-ed to a slider that
shows names, not indices (or a dropdown): the link lives in the browser (the widget manager embedded in the page), so moving the slider
switches the image without any Python. Stay within core ipywidgets: other widget packages are not vendored
and would render as error boxes offline.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
from matplotlib import pyplot as plt

# CSS class names the browser test looks for.
STACK_CLASS = "csta-image-stack"
CONTROL_CLASS = "csta-image-stack-control"


def figure_png(fig: Any, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards, so notebooks do not also display it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def image_stack(
    images: Sequence[bytes],
    labels: Sequence[str] | None = None,
    description: str = "show",
    control: str = "slider",
    width: str = "100%",
    names: Sequence[str] | None = None,
) -> Any:
    """A ``VBox`` of a control and a ``Stack`` of PNG images switched by it in the browser.

    ``labels`` are shown in a caption line above each image. ``control`` is ``"slider"`` (a
    ``SelectionSlider`` whose read-out shows ``names``, short names such as video titles, defaulting to the
    labels) or ``"dropdown"`` (a ``Dropdown`` of ``labels``). ``selected_index`` of the stack is ``jslink``-ed
    to the control's ``index``, so switching works in the static page without a kernel.
    """
    if not images:
        raise ValueError("image_stack needs at least one image")
    labels = list(labels) if labels is not None else [str(i) for i in range(len(images))]
    names = list(names) if names is not None else labels
    if len(labels) != len(images) or len(names) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels and {len(names)} names")
    if len(set(names)) != len(names):
        raise ValueError("image_stack names must be distinct (the slider shows them)")
    children = [
        widgets.VBox([widgets.HTML(f"<b>{html.escape(label)}</b>"),
                      widgets.Image(value=png, format="png", layout=widgets.Layout(width=width))])
        for png, label in zip(images, labels)
    ]
    stack = widgets.Stack(children, selected_index=0)
    stack.add_class(STACK_CLASS)
    if control == "dropdown":
        ctrl = widgets.Dropdown(options=[(label, i) for i, label in enumerate(labels)], value=0,
                                description=description)
    elif control == "slider":
        ctrl = widgets.SelectionSlider(options=names, index=0, description=description, continuous_update=True,
                                       layout=widgets.Layout(width="100%"),
                                       style={"description_width": "initial"})
    else:
        raise ValueError(f"control must be 'slider' or 'dropdown', not {control!r}")
    link = widgets.jslink((ctrl, "index"), (stack, "selected_index"))
    ctrl.add_class(CONTROL_CLASS)
    box = widgets.VBox([ctrl, stack])
    box.link = link  # kept on the box for inspection (tests); the page holds it in the widget state
    return box
