"""LabConv2D under tf.distribute.MirroredStrategy: two logical CPUs train as one device does.

The driver runs in its own process (logical devices must be set before
TensorFlow starts): it trains the same convnet from the same weights on the
same global batches of 64, once on one device and once mirrored on two
replicas of 32 each, and traces one mirrored step to see where the op runs.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DRIVER = Path(__file__).with_name("layers_mirrored_driver.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored") / "weights.npz"
    done = subprocess.run([sys.executable, str(DRIVER), str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


def weights(trained, run):
    return [trained[f"{run}_{i}"] for i in range(sum(k.startswith(f"{run}_") for k in trained))]


@pytest.mark.slow
def test_two_replicas_reach_the_single_device_weights(trained):
    assert int(trained["replicas"]) == 2
    initial, one, two = weights(trained, "initial"), weights(trained, "one"), weights(trained, "two")
    assert len(one) == len(two) == 6  # two convolutions and a dense layer, kernel and bias each
    for before, single, mirrored in zip(initial, one, two, strict=True):
        moved = np.abs(single - before).max()
        assert moved > 1e-2, "training must move every weight, or equality proves nothing"
        np.testing.assert_allclose(mirrored, single, rtol=0, atol=1e-5 * max(1.0, moved) + 1e-6)


@pytest.mark.slow
def test_every_pass_of_the_op_runs_on_both_replicas(trained):
    placed = {tuple(row) for row in trained["placed"]}
    for op in ("LabFusedConv2D", "LabConv2DBackpropInput", "LabConv2DBackpropFilter"):  # relu layers: the fused forward
        devices = {device.rsplit("/", 1)[-1] for kind, device in placed if kind == op}
        assert devices == {"device:CPU:0", "device:CPU:1"}, (op, placed)
