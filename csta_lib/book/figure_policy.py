"""How the book's notebooks render matplotlib figures, in one place: PNG at :data:`DPI`, tight bounding box, and
the size of the figure's smallest text written into the PNG (tEXt chunk :data:`MIN_TEXT_KEY`, in pixels of the
PNG), so that the browser's reader check (:mod:`csta_lib.book.browser`) can measure how large that text is
on the page once the figure is scaled to the column.

The book build starts every notebook's kernel with :func:`install` (``csta_lib.book.build``, papermill's
``extra_arguments``); a notebook run by hand renders as IPython's inline backend does, without the chunk.
"""

from __future__ import annotations

import io
from typing import Any

DPI = 100
MIN_TEXT_KEY = "csta:min-text-px"
#: What the reader check asks of every measurable figure: its smallest text at least this tall on the page.
MIN_RENDERED_TEXT_PX = 9.0


def smallest_text_px(fig: Any, dpi: float = DPI) -> float | None:
    """Height in pixels (at ``dpi``) of the smallest visible, non-empty text of ``fig``; None when it has none."""
    from matplotlib.text import Text  # matplotlib: the [book] extra; only a kernel that draws imports this module

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * dpi / 72 if sizes else None


def figure_png(fig: Any, dpi: float = DPI) -> bytes:
    """``fig`` as PNG bytes with its smallest text size recorded (:data:`MIN_TEXT_KEY`)."""
    smallest = smallest_text_px(fig, dpi)
    metadata = {MIN_TEXT_KEY: f"{smallest:.2f}"} if smallest is not None else {}
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata=metadata)
    return buffer.getvalue()


def install() -> None:
    """Make the running IPython render figures with :func:`figure_png`.

    IPython's inline backend registers its own PNG formatter when it is activated, which may happen in any cell;
    re-registering after every cell keeps this one in force from the next output on.
    """
    from IPython import get_ipython
    from matplotlib.figure import Figure

    shell = get_ipython()
    if shell is None:
        return

    def register(*_: Any) -> None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)

    from matplotlib import pyplot

    pyplot.close(pyplot.figure())  # loads the backend now: the inline backend registers its formatter on loading
    register()
    shell.events.register("post_execute", register)
