"""Train the LabConv2D convnet on one device and under MirroredStrategy on two; save both weight sets.

Run as a script (a fresh process): the CPU must be split into logical devices
before TensorFlow initialises them.

    python tests/layers_mirrored_driver.py OUT.npz
"""

import sys

import numpy as np

from cnnlab.env import import_tensorflow

tf = import_tensorflow()
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from cnnlab.layers import LabConv2D  # noqa: E402

GLOBAL_BATCH, STEPS = 64, 6


def convnet():
    """Lesson 03's convnet, narrower, with LabConv2D (no dropout: its random masks differ per replica)."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        LabConv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        LabConv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip


def train(initial, strategy=None):
    """Weights after STEPS steps of SGD from ``initial`` on the same batches, shuffling off."""
    scope = strategy.scope() if strategy else tf.device("/cpu:0")
    with scope:
        model = convnet()
        model.set_weights(initial)
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    return [w.numpy() if hasattr(w, "numpy") else np.asarray(w) for w in model.get_weights()]


rng = np.random.default_rng(0)
x = rng.random((GLOBAL_BATCH * STEPS, 28, 28, 1), dtype=np.float32)
y = rng.integers(0, 10, len(x))
keras.utils.set_random_seed(0)
initial = convnet().get_weights()



def op_devices(strategy):
    """{(op type, device)} of the cnnlab ops in one traced training step under ``strategy``."""
    with strategy.scope():
        model = convnet()
        model.set_weights(initial)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(xb, yb):
        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True))
            return tape.gradient(loss, model.trainable_variables)

        return strategy.run(replica_step, args=(xb, yb))

    graph = step.get_concrete_function(tf.TensorSpec((None, 28, 28, 1)), tf.TensorSpec((None,), tf.int64)).graph
    return sorted({(op.type, op.device) for op in graph.get_operations() if op.type.startswith(("LabConv2D", "LabFusedConv2D"))})


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
one = train(initial)
two = train(initial, mirrored)
placed = op_devices(mirrored)
np.savez(sys.argv[1], replicas=mirrored.num_replicas_in_sync, placed=np.array(placed, dtype=str),
         **{f"initial_{i}": w for i, w in enumerate(initial)},
         **{f"one_{i}": w for i, w in enumerate(one)},
         **{f"two_{i}": w for i, w in enumerate(two)})  # fmt: skip
