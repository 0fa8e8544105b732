"""cnnlab.viz: the transfer-learning figures label their axes and reject unknown states."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cnnlab import viz  # noqa: E402


def test_block_diagram_draws_one_box_per_block_and_checks_states():
    frozen, tuned, new = viz.BLOCK_STATES
    fig = viz.block_diagram(
        {"a": [("conv1", frozen), ("dense", new)], "b": [("conv1", tuned), ("dense", new)]}
    )
    assert len(fig.axes[0].patches) == 4
    with pytest.raises(ValueError, match="state must be one of pretrained, frozen"):
        viz.block_diagram({"a": [("conv1", "melted")]})
    plt.close("all")


def test_learning_curves_and_accuracy_vs_kept_label_their_axes():
    curves = {"near": ([20, 100], {"scratch": np.array([0.8, 0.9]), "fine-tuning": np.array([0.85, 0.95])})}
    fig = viz.learning_curves(curves)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "labelled target examples" and ax.get_ylabel() == "test accuracy"
    assert ax.get_legend_handles_labels()[1] == ["scratch", "fine-tuning"]
    fig = viz.accuracy_vs_kept({"near": np.array([0.9, 0.95, 0.7])}, ["0", "1", "2"])
    assert fig.axes[0].get_xlabel().startswith("N: pretrained blocks kept")
    plt.close("all")


def test_learning_curve_panels_share_one_y_axis():
    fig = viz.learning_curves({"near": ([10, 20], {"scratch": np.array([0.5, 0.9])}),
                               "far": ([10, 20], {"scratch": np.array([0.97, 0.98])})})  # fmt: skip
    left, right = fig.axes
    assert left.get_shared_y_axes().joined(left, right) and left.get_ylim() == right.get_ylim()
    plt.close(fig)


def test_signed_image_grid_shares_one_scale_centred_on_zero_with_a_colour_bar():
    weights = [np.array([[-2.0, 1.0], [0.0, 0.5]]), np.array([[0.1, -0.2], [0.3, 0.0]])]
    fig = viz.image_grid(weights, ["a", "b"], cols=2, cmap="bwr", symmetric=True, label="weight")
    panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert [ax.images[0].get_clim() for ax in panels] == [(-2.0, 2.0), (-2.0, 2.0)]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and bars[0].get_ylabel() == "weight"
    plt.close(fig)


def test_image_grid_can_give_every_panel_its_own_colour_bar():
    fig = viz.image_grid([np.zeros((3, 3)), np.ones((3, 3)), np.ones((3, 3, 3))], ["a", "b", "rgb"], cols=3, colorbar=True)
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 2  # none for the colour image
    plt.close(fig)


def test_learning_curves_over_seeds_show_the_mean_and_one_standard_deviation():
    runs = np.array([[0.6, 0.9], [0.8, 0.9], [0.7, 0.9]])  # 3 seeds x 2 sizes
    fig = viz.learning_curves({"near": ([20, 100], {"scratch": runs})})
    ax = fig.axes[0]
    (container,) = ax.containers
    line, _, (bars,) = container
    np.testing.assert_allclose(line.get_ydata(), [0.7, 0.9])
    lows, highs = np.array([segment[:, 1] for segment in bars.get_segments()]).T
    np.testing.assert_allclose(highs - lows, 2 * runs.std(axis=0), atol=1e-12)
    assert "mean ± sd of 3 seeds" in ax.get_ylabel()
    plt.close(fig)



def test_two_signed_grids_can_share_one_given_scale():
    fig = viz.image_grid([np.array([[0.1, -0.2], [0.3, 0.0]])], ["b"], cols=1, cmap="bwr", symmetric=True, limit=0.6)
    (panel,) = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert panel.images[0].get_clim() == (-0.6, 0.6)
    plt.close(fig)


def test_image_grid_value_range_puts_every_panel_on_one_fixed_scale():
    fig = viz.image_grid([np.full((3, 3), 0.2), np.full((3, 3), 0.6)], ["dim", "bright"], cols=2, value_range=(0, 1),
                         label="pixel value")  # fmt: skip
    images = [ax.images[0] for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert [image.get_clim() for image in images] == [(0, 1), (0, 1)]
    colour_bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colour_bars) == 1 and colour_bars[0].get_ylabel() == "pixel value"
    plt.close(fig)
