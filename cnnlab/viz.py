"""Matplotlib helpers the notebooks share: small figures with labelled axes.

Every function draws into new axes and returns the figure, so a notebook cell
can end with ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["image_grid", "mark_box", "stems"]


def stems(
    signals: Sequence[np.ndarray], titles: Sequence[str], *, xlabel: str = "position i", ylabel: str = "value"
):
    """One stem plot per 1D signal, side by side. ``signals[k]`` has shape ``(n_k,)``."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, len(signals), figsize=(3.0 * len(signals), 2.4), squeeze=False)
    for ax, signal, title in zip(axes[0], signals, titles, strict=True):
        signal = np.asarray(signal)
        ax.stem(np.arange(len(signal)), signal, basefmt="k-")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_xticks(np.arange(len(signal)))
    axes[0][0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], *, cols: int = 4, cmap: str = "gray",
               size: float = 2.2, symmetric: bool = False):  # fmt: skip
    """Images ``(h, w)`` or ``(h, w, 3)`` in a grid with titles; pixel axes labelled on the first."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles, strict=False):
        image = np.asarray(image)
        limit = np.abs(image).max() if symmetric else None
        kwargs = {"vmin": -limit, "vmax": limit} if symmetric and image.ndim == 2 else {}
        ax.imshow(image, cmap=cmap if image.ndim == 2 else None, **kwargs)
        ax.set_title(title, fontsize=9)
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].set_xlabel("column")
    axes[0][0].set_ylabel("row")
    fig.tight_layout()
    return fig


def mark_box(
    ax, row: int, col: int, height: int, width: int, *, color: str = "red", label: str | None = None
):
    """Draw a rectangle whose top-left pixel is ``(row, col)`` on an image axes."""
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    ax.add_patch(Rectangle((col - 0.5, row - 0.5), width, height, fill=False, edgecolor=color, linewidth=2))
    if label:
        ax.annotate(label, (col, row - 2), color=color, fontsize=9, va="bottom")
