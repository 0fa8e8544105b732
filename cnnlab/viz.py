"""Matplotlib helpers the notebooks share: small figures with labelled axes.

Every function draws into new axes and returns the figure, so a notebook cell
can end with ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["confusion", "image_grid", "mark_box", "stems", "training_curves"]


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
               size: float = 2.2, symmetric: bool = False, colorbar: bool = False, label: str = "value",
               limit: float | None = None, value_range: tuple[float, float] | None = None):  # fmt: skip
    """Images ``(h, w)`` or ``(h, w, 3)`` in a grid with titles; pixel axes labelled on the first.

    Args:
        symmetric: signed maps (weights, differences): one colour scale centred on 0 and
            shared by every panel, so that colours compare across panels, with one colour
            bar labelled ``label``.
        limit: with ``symmetric``, the scale's end (``-limit..limit``) instead of the largest
            magnitude shown, so that two figures can share one scale.
        colorbar: a colour bar beside every 2-D panel, each on its own scale.
        value_range: ``(low, high)``, one fixed scale for every panel (e.g. ``(0, 1)`` for pixels),
            with one colour bar labelled ``label``, so that panels are not each stretched to their own contrast.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + (0.6 if symmetric else 0), size * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    images = [np.asarray(image) for image in images]
    if symmetric and limit is None:
        limit = max(float(np.abs(image).max()) for image in images)
    shown = None
    for ax, image, title in zip(axes.ravel(), images, titles, strict=False):
        kwargs = {"vmin": -limit, "vmax": limit} if symmetric and image.ndim == 2 else {}
        if value_range is not None and image.ndim == 2:
            kwargs = {"vmin": value_range[0], "vmax": value_range[1]}
        shown = ax.imshow(image, cmap=cmap if image.ndim == 2 else None, **kwargs)
        if colorbar and image.ndim == 2:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title, fontsize=9)
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].set_xlabel("column")
    axes[0][0].set_ylabel("row")
    fig.tight_layout()
    if (symmetric or value_range is not None) and shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    return fig


def mark_box(
    ax, row: int, col: int, height: int, width: int, *, color: str = "red", label: str | None = None
):
    """Draw a rectangle whose top-left pixel is ``(row, col)`` on an image axes."""
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    ax.add_patch(Rectangle((col - 0.5, row - 0.5), width, height, fill=False, edgecolor=color, linewidth=2))
    if label:
        ax.annotate(label, (col, row - 2), color=color, fontsize=9, va="bottom")


def training_curves(histories: dict, metric: str = "accuracy"):
    """Loss and ``metric`` per epoch, training (solid) and validation (dashed), one colour per model.

    ``histories`` maps a model name to the ``History`` returned by ``model.fit``.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for (name, history), color in zip(
        histories.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False
    ):
        for ax, key in zip(axes, ("loss", metric), strict=True):
            values = history.history
            epochs = np.arange(1, len(values[key]) + 1)
            ax.plot(epochs, values[key], color=color, label=f"{name} train")
            if f"val_{key}" in values:
                ax.plot(epochs, values[f"val_{key}"], color=color, linestyle="--", label=f"{name} validation")
    for ax, key in zip(axes, ("loss", metric), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion(matrix: np.ndarray, *, labels: Sequence[str] | None = None):
    """A confusion matrix ``(classes, classes)`` (rows: true, columns: predicted) with counts written in."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    matrix = np.asarray(matrix)
    labels = labels or [str(i) for i in range(len(matrix))]
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if count > matrix.max() / 2 else "black")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.grid(False)
    fig.tight_layout()
    return fig


# Colours of a layer's state in :func:`block_diagram`.
BLOCK_STATES = {"pretrained, frozen": "#9ecae1", "pretrained, trained": "#fdae6b", "new, trained": "#a1d99b"}


def block_diagram(rows: dict[str, Sequence[tuple[str, str]]]):
    """One row of boxes per training recipe, one box per block, coloured by its state.

    ``rows`` maps a recipe name to ``[(block name, state), ...]`` with states from
    :data:`BLOCK_STATES`; a legend explains the colours.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.patches import Patch, Rectangle  # noqa: PLC0415

    width = max(len(blocks) for blocks in rows.values())
    fig, ax = plt.subplots(figsize=(1.6 * width + 2.2, 0.7 * len(rows) + 0.9))
    for r, (recipe, blocks) in enumerate(rows.items()):
        y = len(rows) - 1 - r
        ax.text(-0.15, y + 0.4, recipe, ha="right", va="center", fontsize=9)
        for c, (block, state) in enumerate(blocks):
            if state not in BLOCK_STATES:
                raise ValueError(f"state must be one of {', '.join(BLOCK_STATES)}; got {state!r}")
            ax.add_patch(Rectangle((c, y), 0.9, 0.8, facecolor=BLOCK_STATES[state], edgecolor="black"))
            ax.text(c + 0.45, y + 0.4, block, ha="center", va="center", fontsize=8)
    ax.set_xlim(-2.2, width)
    ax.set_ylim(-0.2, len(rows))
    ax.axis("off")
    handles = [
        Patch(facecolor=colour, edgecolor="black", label=state) for state, colour in BLOCK_STATES.items()
    ]
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False
    )
    return fig


def learning_curves(curves: dict[str, tuple[Sequence[int], dict[str, np.ndarray]]]):
    """Test accuracy vs number of labelled examples (log scale), one panel per task, one line per method.

    ``curves`` maps a task name to ``(sizes, {method: accuracies})``, accuracies either
    ``(len(sizes),)`` or ``(seeds, len(sizes))``; with several seeds each point is the mean
    and its error bar one standard deviation over the seeds.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    # One y axis for every panel: a gap of one or two test images must look as small as it is.
    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.2), squeeze=False, sharey=True)
    seeds = 1
    for ax, (task, (sizes, results)) in zip(axes[0], curves.items(), strict=True):
        for offset, (method, values) in zip((0.94, 1.0, 1.06), results.items(), strict=False):
            runs = np.atleast_2d(values)
            seeds = len(runs)
            shifted = np.asarray(sizes) * offset  # side by side, so that the error bars do not hide each other
            ax.errorbar(shifted, runs.mean(axis=0), yerr=runs.std(axis=0) if seeds > 1 else None, marker="o",
                        capsize=3, label=method)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(list(sizes), [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("labelled target examples")
    axes[0, 0].set_ylabel("test accuracy" + (f"\n(mean ± sd of {seeds} seeds)" if seeds > 1 else ""))
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_vs_kept(results: dict[str, np.ndarray], labels: Sequence[str]):
    """Test accuracy vs how many pretrained blocks are kept, one line per task.

    ``results`` maps a task to accuracies ``(len(labels),)``; ``labels`` names each
    point on the x axis (e.g. ``["0: scratch", "1", "2", "3"]``).
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for task, values in results.items():
        ax.plot(range(len(labels)), values, marker="o", label=task)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("N: pretrained blocks kept (frozen)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
