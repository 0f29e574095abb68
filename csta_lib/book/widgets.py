"""Widget building blocks that keep working in the static book, with no kernel behind the page.

The static pages embed the widgets' state and render it with the vendored ipywidgets HTML manager, which holds
the core widgets only (others would render as error boxes offline). Interaction there comes from links that live
in the browser: :func:`linked_stack` is a ``Stack`` whose ``selected_index`` is ``jslink``-ed to a control's
``index``, so choosing in a dropdown or a row of toggle buttons switches what is shown without any Python.
Nesting such stacks, each linked to its own control, gives independent controls over a grid of pictures.

:func:`zoom_viewports` shows windows of one picture without storing it again: each viewport crops and stretches
the same ``Image`` (one widget model, embedded once) with a CSS transform, chosen by a linked stack like any
other picture. The rules come from :func:`explorer_css`, embedded in the page by :func:`style_html` (an
``HTML`` widget), so the same widgets look the same in the book and in JupyterLab.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
from ipywidgets.widgets.widget_string import HTMLStyle  # not exported at the top level
from matplotlib import pyplot as plt
from PIL import Image

VIEWPORT_CLASS = "csta-zoom-viewport"


_LAYOUTS: dict[tuple[tuple[str, str], ...], Any] = {}
_HTML_STYLE: list[Any] = []


def shared_layout(**traits: str) -> Any:
    """One ``Layout`` per set of traits, shared by every widget that asks for it.

    A page's widget state stores each ``Layout`` with all of its (mostly empty) traits, about 1 kB apiece; an
    explorer of hundreds of pictures would carry more layout than picture. Widgets only refer to their layout, so
    one instance serves them all (never change a shared layout: create another).
    """
    key = tuple(sorted(traits.items()))
    if key not in _LAYOUTS:
        _LAYOUTS[key] = widgets.Layout(**traits)
    return _LAYOUTS[key]


def html(value: str, css_class: str = "", **layout: str) -> Any:
    """An ``HTML`` widget with a shared layout (no margin unless given) and a shared style."""
    if not _HTML_STYLE:
        _HTML_STYLE.append(HTMLStyle())
    widget = widgets.HTML(value, layout=shared_layout(**{"margin": "0", **layout}), style=_HTML_STYLE[0])
    if css_class:
        widget.add_class(css_class)
    return widget


def figure_png(fig: Any, dpi: int = 100, palette: bool = True, close: bool = True) -> bytes:
    """PNG bytes of a matplotlib figure at its exact size (no tight box: pictures laid side by side must keep
    the size they were drawn for), then closed (unless ``close`` is False) so that a notebook does not also
    display it. ``palette`` reduces it to 256 colours: plots have few, and the file shrinks about threefold."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    if close:
        plt.close(fig)
    if not palette:
        return buffer.getvalue()
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        return image_png(image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT))


def image_png(image: Image.Image) -> bytes:
    """PNG bytes of a PIL image (optimised)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_image(png: bytes, css_class: str = "") -> Any:
    """An ``Image`` widget as wide as its box, its aspect kept, no margin (so pictures side by side line up)."""
    image = widgets.Image(value=png, format="png", layout=shared_layout(width="100%", height="auto", margin="0"))
    if css_class:
        image.add_class(css_class)
    return image


class ImagePool:
    """Image widgets by content: identical pictures (a colour bar shared by the models of a video, an axis) share
    one widget, so the page's widget state holds their bytes once. A widget may be shown in many places."""

    def __init__(self) -> None:
        self._images: dict[tuple[str, str], Any] = {}

    def image(self, png: bytes, css_class: str = "") -> Any:
        """The pool's :func:`png_image` of ``png`` (created on first use)."""
        key = (hashlib.sha256(png).hexdigest(), css_class)
        if key not in self._images:
            self._images[key] = png_image(png, css_class)
        return self._images[key]

    def __len__(self) -> int:
        return len(self._images)


def linked_stack(children: Sequence[Any], control: Any) -> Any:
    """A ``Stack`` of ``children`` showing the one chosen by ``control`` (its ``index`` ``jslink``-ed to the
    stack's ``selected_index``: the switch happens in the browser, with or without a kernel)."""
    if not children:
        raise ValueError("linked_stack needs at least one child")
    options = getattr(control, "options", None)
    if options is not None and len(options) != len(children):
        raise ValueError(f"{len(children)} children for a control of {len(options)} options")
    stack = widgets.Stack(list(children), selected_index=0, layout=shared_layout(margin="0", width="100%"))
    stack.link = widgets.jslink((control, "index"), (stack, "selected_index"))  # kept for inspection (tests)
    return stack


def row(cells: Sequence[Any], fractions: Sequence[float]) -> Any:
    """An ``HBox`` of ``cells``, each in a box of a fixed fraction of the width (fractions sum to 1)."""
    if len(cells) != len(fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"row needs one fraction per cell, summing to 1 (got {list(fractions)})")
    boxes = [widgets.Box([cell], layout=shared_layout(width=f"{100 * f:.4f}%", flex="0 0 auto", margin="0"))
             for cell, f in zip(cells, fractions, strict=True)]
    return widgets.HBox(boxes, layout=shared_layout(width="100%", margin="0", align_items="flex-start"))


def zoom_class(start: float, stop: float) -> str:
    """The CSS class of the viewport that shows the window [start, stop) (fractions of the picture's width)."""
    return f"csta-zoom-{round(start * 1000)}-{round(stop * 1000)}"


def check_window(start: float, stop: float) -> None:
    if not 0.0 <= start < stop <= 1.0:
        raise ValueError(f"a zoom window must satisfy 0 <= start < stop <= 1, got ({start}, {stop})")


def zoom_viewports(image: Any, windows: Sequence[tuple[float, float]]) -> list[Any]:
    """One viewport per window of ``image``: the same ``Image`` widget, cropped to the window and stretched to
    the full width by the rules of :func:`explorer_css` (the picture is stored once, whatever the windows)."""
    viewports = []
    for start, stop in windows:
        check_window(start, stop)
        box = widgets.Box([image], layout=shared_layout(overflow="hidden", width="100%", margin="0"))
        box.add_class(VIEWPORT_CLASS)
        box.add_class(zoom_class(start, stop))
        viewports.append(box)
    return viewports


def explorer_css(image_class: str, windows: Sequence[tuple[float, float]]) -> str:
    """CSS for :func:`zoom_viewports` over images of class ``image_class``: blocks stay sharp when stretched
    (``pixelated``) and each window's viewport scales and shifts the picture (transforms keep the layout box, so
    the row's height does not change with the zoom)."""
    rules = [f".{VIEWPORT_CLASS} img.{image_class} {{ display: block; width: 100%; height: auto; "
             "image-rendering: pixelated; transform-origin: 0 0; max-width: none; }"]
    for start, stop in windows:
        check_window(start, stop)
        scale = 1.0 / (stop - start)
        rules.append(f".{zoom_class(start, stop)} img.{image_class} {{ "
                     f"transform: scaleX({scale:.6g}) translateX({-100 * start:.6g}%); }}")
    return "\n".join(rules)


def style_html(css: str) -> Any:
    """An ``HTML`` widget holding a ``<style>`` element: the rules travel with the widgets (book and JupyterLab)."""
    return html(f"<style>{css}</style>", height="0px")


__all__ = ["ImagePool", "VIEWPORT_CLASS", "explorer_css", "figure_png", "html", "image_png", "linked_stack",
           "png_image", "row", "shared_layout", "style_html", "zoom_class", "zoom_viewports"]
