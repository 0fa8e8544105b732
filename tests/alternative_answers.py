"""Correct answers written differently from the sources': each must earn every automatic point.

``SETS[name]`` is one student's submission: ``{assignment: {answer grade_id: cell source}}``.
An answer cell not listed keeps the source's own answer. ``tests/test_assignments.py``
builds one notebook per (set, assignment) from ``solutions/`` and grades it with the
class. Every answer here must do what its task's text asks, and nothing the text
forbids; each differs from the reference in a way the text allows (float32, a list,
vectorised NumPy, activations as separate layers, other hyperparameters, ...).
"alternatives" answers every code task of all six assignments; "alternatives_b", a
second variant of each, stops at 04 (05 and 06 train networks: each costs the
grading test half a minute).
"""

SETS: dict[str, dict[str, dict[str, str]]] = {
    "alternatives": {
        "01_conv1d_by_hand": {
            "conv1d_valid": '''def conv1d_valid(x, w):
    """x (n,), w (f,) -> (n - f + 1,): the deep-learning 'convolution' (no flip)."""
    x, w = np.asarray(x, np.float32), np.asarray(w, np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(x, len(w))  # (n - f + 1, f)
    return windows @ w
''',
            "conv1d_general": '''def conv1d(x, w, padding=0, stride=1):
    """x (n, c_in), w (f, c_in, c_out) -> (n_out, c_out); padding p or (left, right)."""
    if isinstance(padding, (int, np.integer)):
        left = right = int(padding)
    else:
        left, right = (int(v) for v in padding)
    n, c_in = x.shape
    f, _, c_out = w.shape
    xp = np.concatenate([np.zeros((left, c_in), np.float32), np.asarray(x, np.float32), np.zeros((right, c_in), np.float32)])
    n_out, rest = divmod(n + left + right - f, stride)
    if n + left + right < f or rest != 0:
        raise ValueError(f"the kernel does not fit evenly: ({n} + {left} + {right} - {f}) / {stride} is not an integer")
    windows = np.lib.stride_tricks.sliding_window_view(xp, f, axis=0)[::stride]  # (n_out, c_in, f)
    return np.einsum("ick,kco->io", windows, np.asarray(w, np.float32))
''',
            "output_length": '''def output_length(n, f, p=0, s=1):
    """Output length of a 1D convolution; ValueError when (n + 2p - f) / s is fractional."""
    if f > n + 2 * p:
        raise ValueError(f"a filter of width {f} is wider than the padded input ({n} + 2*{p})")
    steps = (n + 2 * p - f) / s
    if not float(steps).is_integer():
        raise ValueError(f"(n + 2p - f) / s = {steps} is not an integer")
    return int(steps) + 1
''',
            "graph_gradients": '''import math


def graph_gradients(w0, x0, w1, x1, w2):
    """Forward value f and dict of df/d(each input) for the sigmoid neuron."""
    # forward, node by node
    a = w0 * x0
    b = w1 * x1
    c = a + b
    s = c + w2
    e = math.exp(-s)
    d = 1.0 + e
    f = 1.0 / d
    # backward, node by node
    df_dd = -1.0 / d**2
    df_de = df_dd * 1.0
    df_ds = df_de * (-e)
    df_dc = df_ds
    df_dw2 = df_ds
    df_da, df_db = df_dc, df_dc
    grads = {"w0": df_da * x0, "x0": df_da * w0, "w1": df_db * x1, "x1": df_db * w1, "w2": df_dw2}
    return f, grads
''',
            "conv1d_backward": '''def conv1d_backward(x, w, g, stride=1):
    """x (n,), w (f,), g ((n - f) // stride + 1,) -> dx (n,), dw (f,)."""
    x, w, g = (np.asarray(v, np.float32) for v in (x, w, g))
    f = len(w)
    starts = np.arange(len(g)) * stride
    index = starts[:, None] + np.arange(f)[None, :]  # (n_out, f): the inputs each output reads
    dx = np.zeros(len(x), np.float32)
    np.add.at(dx, index, g[:, None] * w[None, :])
    dw = g @ x[index]
    return dx, dw
''',
        },
        "02_2d_filters": {
            "conv2d": '''def conv2d(x, w, stride=1, padding=0):
    """x (h, w, c_in), w (fh, fw, c_in, c_out) -> (h_out, w_out, c_out)."""
    x, w = np.asarray(x, np.float32), np.asarray(w, np.float32)
    xp = np.pad(x, [(padding, padding), (padding, padding), (0, 0)])
    fh, fw = w.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (fh, fw), axis=(0, 1))  # (H, W, c_in, fh, fw)
    windows = windows[::stride, ::stride]
    return np.einsum("ijcab,abco->ijo", windows, w)
''',
            "numerical_gradient": '''def numerical_gradient(f, x, h=1e-5):
    """f: array shaped like x -> float; x (any shape) -> df/dx (the shape of x), by centred differences."""
    work = np.array(x, dtype=float, copy=True)  # x itself is never touched
    flat = work.reshape(-1)
    grad = np.empty(flat.size, dtype=np.float32)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f(work)
        flat[i] = old - h
        down = f(work)
        flat[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad.reshape(np.shape(x))
''',
            "conv2d_backward": '''def conv2d_backward(x, w, g, stride=1, padding=0):
    """x (h, w, c_in), w (fh, fw, c_in, c_out), g (h_out, w_out, c_out) -> dx like x, dw like w, db (c_out,)."""
    x, w, g = (np.asarray(v, np.float32) for v in (x, w, g))
    xp = np.pad(x, [(padding, padding), (padding, padding), (0, 0)])
    fh, fw = w.shape[:2]
    h_out, w_out = g.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (fh, fw), axis=(0, 1))[::stride, ::stride][:h_out, :w_out]
    dw = np.einsum("ijcab,ijo->abco", windows, g)
    dxp = np.zeros(xp.shape, np.float32)
    for a in range(fh):  # each filter tap scatters into a strided grid of the padded input
        for b in range(fw):
            rows = slice(a, a + stride * (h_out - 1) + 1, stride)
            cols = slice(b, b + stride * (w_out - 1) + 1, stride)
            dxp[rows, cols] += g @ w[a, b].T
    dx = dxp[padding : padding + x.shape[0], padding : padding + x.shape[1]]
    return dx, dw, g.sum(axis=(0, 1))
''',
            "max_pool2d": '''def max_pool2d(x, size=2, stride=2):
    """x (h, w, c) -> ((h - size) // stride + 1, (w - size) // stride + 1, c)."""
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(x, np.float32), (size, size), axis=(0, 1))
    return windows[::stride, ::stride].max(axis=(-2, -1))
''',
            "max_pool2d_backward": '''def max_pool2d_backward(x, g, size=2, stride=2):
    """x (h, w, c), g like max_pool2d(x, size, stride) -> dx (h, w, c)."""
    h_out, w_out, c = g.shape
    windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(0, 1))[::stride, ::stride][:h_out, :w_out]
    flat = windows.reshape(h_out, w_out, c, size * size).argmax(axis=-1)  # (h_out, w_out, c)
    r, q = np.divmod(flat, size)
    rows = np.arange(h_out)[:, None, None] * stride + r
    cols = np.arange(w_out)[None, :, None] * stride + q
    chans = np.broadcast_to(np.arange(c)[None, None, :], g.shape)
    dx = np.zeros(x.shape, np.float32)
    np.add.at(dx, (rows, cols, chans), np.asarray(g, np.float32))
    return dx
''',
            "layer_shape_and_params": '''def layer_shape_and_params(h, w, c_in, filters, f, stride=1, padding=0):
    """Output shape (h_out, w_out, filters) and the number of trainable parameters."""
    def out(n):
        q, r = divmod(n + 2 * padding - f, stride)
        if q < 0 or r:
            raise ValueError(f"the filter does not fit evenly: ({n} + 2*{padding} - {f}) / {stride} is not a whole number")
        return q + 1

    weights = f * f * c_in * filters
    return (out(h), out(w), filters), weights + filters
''',
            "receptive_field": '''def receptive_field(kernel_sizes, strides):
    """Receptive field, in input pixels, of the last layer of a stack."""
    jumps = np.cumprod([1] + list(strides[:-1]))  # product of the strides before each layer
    return int(1 + np.sum((np.asarray(kernel_sizes) - 1) * jumps))
''',
            "edge_magnitude": '''def edge_magnitude(image):
    """image (h, w) -> edge magnitude (h - 2, w - 2)."""
    sx = np.outer(np.asarray(EDGE_WEIGHTS, np.float32), np.array([-1, 0, 1], np.float32))
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(image, np.float32), (3, 3))
    gx = np.einsum("ijab,ab->ij", windows, sx)
    gy = np.einsum("ijab,ab->ij", windows, sx.T)
    return np.hypot(gx, gy)
''',
            "find_template": '''def find_template(image, template):
    """image (h, w), template (th, tw) -> (row, col) of the best match."""
    t = template - template.mean()
    windows = np.lib.stride_tricks.sliding_window_view(image, template.shape)  # (h', w', th, tw)
    centred = windows - windows.mean(axis=(2, 3), keepdims=True)
    norms = np.sqrt((centred**2).sum(axis=(2, 3))) * np.linalg.norm(t)
    dots = np.einsum("ijab,ab->ij", centred, t)
    scores = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    row, col = np.unravel_index(np.argmax(scores), scores.shape)  # argmax: the first best, row-major
    return int(row), int(col)
''',
            "mean_smooth": '''def mean_smooth(u):
    """u (h, w) -> (h - 2, w - 2): the 3x3 mean of every valid window."""
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(u, np.float32), (3, 3))
    return windows.mean(axis=(-2, -1))
''',
        },
        "03_mnist_cnn": {
            "build_convnet": '''def build_convnet():
    """The specified convnet: (batch, 28, 28, 1) -> (batch, 10) class probabilities."""
    inputs = keras.Input(shape=(28, 28, 1), name="digits")
    x = keras.layers.Conv2D(16, (3, 3), name="c1")(inputs)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPool2D(pool_size=(2, 2))(x)
    x = keras.layers.Conv2D(32, (3, 3), name="c2")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPool2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10, name="scores")(x)
    outputs = keras.layers.Softmax()(x)
    return keras.Model(inputs=inputs, outputs=outputs, name="my_convnet")
''',
            "param_counts": '''def conv_params(f, c_in, filters):
    weights = f**2 * c_in * filters
    biases = filters
    return int(weights + biases)


def dense_params(n_in, n_out):
    return n_in * n_out + n_out
''',
            "design_and_train": '''def design_and_train(x, y):
    """Build, compile and fit a convnet with at most 4,000 parameters; return it trained."""
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, use_bias=False)(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.MaxPooling2D(2)(h)  # 13 x 13 x 8
    h = keras.layers.Conv2D(16, 3, use_bias=False)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.MaxPooling2D(2)(h)  # 5 x 5 x 16
    h = keras.layers.Conv2D(8, 1, activation="relu")(h)  # a 1x1 bottleneck: 5 x 5 x 8 = 200 features
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs)  # 3,466 parameters
    epochs, batch_size = 10, 64
    steps = epochs * int(np.ceil(len(x) / batch_size))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(4e-3, steps)),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return model
''',
            "confusion_matrix": '''def confusion_matrix(y_true, y_pred, classes):
    """(n,) int labels, (n,) int predictions -> (classes, classes) counts; rows are true classes."""
    flat = np.asarray(y_true, np.int64) * classes + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def most_confused(matrix, k=3):
    """(classes, classes) counts -> [(true, predicted, count), ...]: the k largest off-diagonal entries."""
    m = np.asarray(matrix)
    n = m.shape[0]
    rows, cols = np.nonzero(~np.eye(n, dtype=bool))  # row-major order
    counts = m[rows, cols]
    order = np.argsort(-counts, kind="stable")[:k]  # stable: ties stay in row-major order
    return [(int(rows[o]), int(cols[o]), int(counts[o])) for o in order]
''',
        },
        "04_inception_vs_resnet": {
            "inception_block": '''def inception_block(x, f1, f3, f5, fpool, *, reduce3=None, reduce5=None):
    """x (batch, h, w, c) -> (batch, h, w, f1 + f3 + f5 + fpool)."""
    def conv_relu(t, filters, size):
        t = keras.layers.Conv2D(filters, (size, size), padding="same")(t)
        return keras.layers.ReLU()(t)

    branch1 = conv_relu(x, f1, 1)
    branch3 = conv_relu(x if reduce3 is None else conv_relu(x, reduce3, 1), f3, 3)
    branch5 = conv_relu(x if reduce5 is None else conv_relu(x, reduce5, 1), f5, 5)
    pooled = keras.layers.MaxPool2D(pool_size=(3, 3), strides=(1, 1), padding="same")(x)
    branch_pool = conv_relu(pooled, fpool, 1)
    return keras.layers.concatenate([branch1, branch3, branch5, branch_pool], axis=-1)
''',
            "residual_block": '''def residual_block(x, filters, *, stride=1):
    """x (batch, h, w, c) -> (batch, ceil(h / stride), ceil(w / stride), filters)."""
    main = keras.layers.Conv2D(filters, (3, 3), strides=(stride, stride), padding="same", use_bias=False)(x)
    main = keras.layers.BatchNormalization(epsilon=1e-5)(main)
    main = keras.layers.Activation("relu")(main)
    main = keras.layers.Conv2D(filters, (3, 3), strides=1, padding="same", use_bias=False)(main)
    main = keras.layers.BatchNormalization(epsilon=1e-5)(main)
    if stride == 1 and x.shape[-1] == filters:
        shortcut = x
    else:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, padding="same", use_bias=False)(x)
        shortcut = keras.layers.BatchNormalization(epsilon=1e-5)(shortcut)
    return keras.layers.Activation("relu")(keras.layers.add([main, shortcut]))
''',
            "bottleneck_savings": '''def bottleneck_savings(c_in, c_out, f, reduce):
    return f * f * c_out * (c_in - reduce) - c_in * reduce
''',
            "conv_gradient_norms": '''def conv_gradient_norms(model, x, y):
    """One gradient norm per Conv2D kernel, input side first."""
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=False))
    grads = tape.gradient(loss, [layer.kernel for layer in convs])
    return [float(np.sqrt(np.sum(np.square(g.numpy().astype(np.float64))))) for g in grads]
''',
            "batchnorm_forward": '''def batchnorm_forward(x, gamma, beta, moving_mean, moving_var, *, training, momentum=0.99, epsilon=1e-3):
    """x (n, ..., c); gamma, beta, moving_mean, moving_var (c,) -> y like x, new moving mean (c,), new moving var (c,)."""
    x32 = np.asarray(x, np.float32)
    gamma, beta, moving_mean, moving_var = (np.asarray(v, np.float32) for v in (gamma, beta, moving_mean, moving_var))
    flat = x32.reshape(-1, x32.shape[-1])  # (m, c)
    if training:
        mean = flat.mean(axis=0)
        var = ((flat - mean) ** 2).mean(axis=0)
        new_mean = momentum * moving_mean + (1 - momentum) * mean
        new_var = momentum * moving_var + (1 - momentum) * var
    else:
        mean, var = moving_mean, moving_var
        new_mean, new_var = moving_mean.copy(), moving_var.copy()
    scale = gamma / np.sqrt(var + np.float32(epsilon))
    y = (x32 - mean) * scale + beta
    return y.astype(np.float32), new_mean.astype(np.float32), new_var.astype(np.float32)
''',
            "batchnorm_backward": '''def batchnorm_backward(x, gamma, g, epsilon=1e-3):
    """x (n, ..., c), gamma (c,), g like x -> dx like x, dgamma (c,), dbeta (c,), training-mode statistics."""
    # The graph, step by step (CS231n's staged backward pass), over the flattened (m, c) view.
    c = np.shape(x)[-1]
    xf, gf = np.reshape(x, (-1, c)).astype(float), np.reshape(g, (-1, c)).astype(float)
    m = xf.shape[0]
    mu = xf.sum(axis=0) / m
    xc = xf - mu
    var = (xc**2).sum(axis=0) / m
    std = np.sqrt(var + epsilon)
    inv = 1.0 / std
    xhat = xc * inv
    dbeta = gf.sum(axis=0)
    dgamma = (gf * xhat).sum(axis=0)
    dxhat = gf * gamma
    dinv = (dxhat * xc).sum(axis=0)
    dxc = dxhat * inv
    dstd = -dinv / std**2
    dvar = dstd * 0.5 / std
    dxc += 2.0 * xc * dvar / m
    dmu = -dxc.sum(axis=0)
    dx = dxc + dmu / m
    return dx.reshape(np.shape(x)), dgamma, dbeta
''',
        },
        "05_filter_visualisation": {
            "layer_activations": '''def layer_activations(model, x, layer_name):
    """x (batch, 28, 28, 1) -> the output of layer_name for that batch."""
    h = tf.convert_to_tensor(x, dtype=tf.float32)
    for layer in model.layers:  # run the layers eagerly, in order, until the one asked for
        h = layer(h, training=False)
        if layer.name == layer_name:
            return np.asarray(h)
    raise ValueError(f"no layer named {layer_name!r}")
''',
            "maximize_filter": '''def maximize_filter(model, layer_name, index, steps=60, step_size=0.05):
    """Gradient ascent on the input; returns (1, 28, 28, 1) float32 in [0, 1]."""
    names = [layer.name for layer in model.layers]
    below, target = model.layers[: names.index(layer_name)], model.get_layer(layer_name)

    def pre_activation(image):
        h = image
        for layer in below:
            h = layer(h, training=False)
        maps = tf.nn.conv2d(h, target.kernel, strides=1, padding="VALID") + target.bias
        return maps[0, maps.shape[1] // 2, maps.shape[2] // 2, index]

    image = tf.constant(np.random.default_rng(0).random((1, 28, 28, 1)), dtype=tf.float32)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(image)
            score = pre_activation(image)
        grad = tape.gradient(score, image)
        rms = tf.norm(grad) / np.sqrt(float(np.prod(grad.shape)))
        image = tf.clip_by_value(image + step_size * grad / (rms + 1e-8), 0.0, 1.0)
    return np.asarray(image, dtype=np.float32)
''',
            "saliency_map": '''def saliency_map(model, x, label):
    """x (1, 28, 28, 1), label int -> |d logit_label / d x| as (28, 28)."""
    image = tf.Variable(tf.cast(x, tf.float32))
    output = model.layers[-1]
    with tf.GradientTape() as tape:
        h = image
        for layer in model.layers:
            if layer is output:
                break
            h = layer(h, training=False)
        logits = tf.matmul(h, output.kernel) + output.bias
        score = logits[:, label]
    grad = tape.gradient(score, image)
    return np.abs(grad.numpy()).reshape(28, 28)
''',
            "grad_cam": '''def grad_cam(model, x, label, layer_name="conv2"):
    """x (1, 28, 28, 1), label int -> (h, w) map of layer_name's resolution, peak 1 (or all zeros)."""
    names = [layer.name for layer in model.layers]
    cut = names.index(layer_name) + 1
    features = tf.convert_to_tensor(x)
    for layer in model.layers[:cut]:
        features = layer(features, training=False)
    output = model.get_layer("output")
    with tf.GradientTape() as tape:
        tape.watch(features)
        h = features
        for layer in model.layers[cut:]:
            if layer is output:
                break
            h = layer(h, training=False)
        logit = tf.reduce_sum(tf.matmul(h, output.kernel)[:, label]) + output.bias[label]
    grads = tape.gradient(logit, features).numpy()[0]  # (h, w, k)
    weights = grads.mean(axis=(0, 1))
    cam = np.maximum(np.einsum("hwk,k->hw", features.numpy()[0].astype(np.float64), weights.astype(np.float64)), 0.0)
    peak = cam.max()
    return cam / peak if peak > 0 else np.zeros_like(cam)
''',
            "fgsm": '''def fgsm(model, x, y, epsilon):
    images = tf.Variable(np.asarray(x, np.float32))
    loss_fn = keras.losses.SparseCategoricalCrossentropy()  # the batch mean: the same signs as the sum
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(images, training=False))
    step = epsilon * np.sign(tape.gradient(loss, images).numpy())
    return np.clip(np.asarray(x, np.float32) + step, 0.0, 1.0).astype(np.float32)
''',
            "flip_epsilons": '''def flip_epsilons(model, x, y, epsilons):
    """x (n, 28, 28, 1), y (n,), increasing epsilons -> (n,) smallest epsilon that flips each digit (inf: none)."""
    epsilons = np.asarray(epsilons, float)
    y = np.asarray(y)
    flipped = np.zeros((len(epsilons), len(x)), bool)
    for e, epsilon in enumerate(epsilons):
        predictions = np.asarray(model(fgsm(model, x, y, float(epsilon)), training=False)).argmax(axis=1)
        flipped[e] = predictions != y
    flipped[0] |= np.asarray(model(x, training=False)).argmax(axis=1) != y  # already wrong: the first epsilon
    first = flipped.argmax(axis=0)  # the first epsilon that flips each digit
    return np.where(flipped.any(axis=0), epsilons[first], np.inf)
''',
        },
        "06_transfer_learning": {
            "cut_and_head": '''def cut_and_head(base, layer_name, classes):
    """(batch, 28, 28, 1) -> (batch, classes)."""
    inputs = keras.Input(shape=(28, 28, 1))
    h = inputs
    for layer in base.layers:
        h = layer(h)
        if layer.name == layer_name:
            break
    if len(h.shape) > 2:
        h = keras.layers.Flatten(name="head_flatten")(h)
    outputs = keras.layers.Dense(classes, activation="softmax", name="new_head")(h)
    return keras.Model(inputs, outputs, name=f"cut_at_{layer_name}")
''',
            "set_trainable": '''def set_trainable(model, first_trainable):
    reached = False
    for layer in model.layers:
        reached = reached or layer.name == first_trainable
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        else:
            layer.trainable = reached
    return model
''',
            "extract_features": '''def extract_features(base, layer_name, x):
    """x (n, 28, 28, 1) -> (n, features) as a NumPy array."""
    inputs = keras.Input(shape=tuple(x.shape[1:]))
    h = inputs
    for layer in base.layers:
        h = layer(h, training=False)
        if layer.name == layer_name:
            break
    features = keras.Model(inputs, keras.layers.Flatten()(h)).predict(x, batch_size=64, verbose=0)
    return np.asarray(features, np.float32)
''',
            "feature_extraction_pipeline": '''def feature_extraction_pipeline(base, x, y):
    features = extract_features(base, "pool2", x)  # once: the base is frozen
    keras.utils.set_random_seed(1)
    head = keras.Sequential([keras.Input((features.shape[1],)),
                             keras.layers.Dropout(0.2),
                             keras.layers.Dense(5, activation="softmax")])  # a softmax regression on the features
    head.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss=keras.losses.SparseCategoricalCrossentropy())
    head.fit(features, y, batch_size=20, epochs=40, verbose=0)
    inputs = keras.Input((28, 28, 1))
    h = inputs
    for layer in base.layers:
        h = layer(h, training=False)
        if layer.name == "pool2":
            break
    return keras.Model(inputs, head(keras.layers.Reshape((-1,))(h)))
''',
            "fine_tune": '''def fine_tune(model, x, y):
    set_trainable(model, "conv2")
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy())
    keras.utils.set_random_seed(3)
    model.fit(x, y, batch_size=20, epochs=20, shuffle=True, verbose=0)  # 5 steps an epoch: 100 steps
    return model
''',
            "inverted_transfer": '''def inverted_transfer(base, x, y):
    """Inverted digits 5-9: (100, 28, 28, 1), (100,) -> a model from inverted images to (n, 5)."""
    undo = keras.layers.Rescaling(scale=-1.0, offset=1.0, name="undo_inversion")  # 1 - x: dark background again
    features = extract_features(base, "pool2", np.asarray(undo(x)))
    keras.utils.set_random_seed(2)
    head = keras.Sequential([keras.Input((features.shape[1],)), keras.layers.Dense(64), keras.layers.ReLU(),
                             keras.layers.Dense(5), keras.layers.Softmax()])
    head.compile(optimizer=keras.optimizers.Adam(5e-4), loss=keras.losses.SparseCategoricalCrossentropy())
    head.fit(features, y, batch_size=25, epochs=30, verbose=0)
    inputs = keras.Input((28, 28, 1))
    h = undo(inputs)
    for layer in base.layers:
        h = layer(h, training=False)
        if layer.name == "pool2":
            break
    return keras.Model(inputs, head(keras.layers.Flatten()(h)))
''',
        },
    },
    "alternatives_b": {
        "01_conv1d_by_hand": {
            "conv1d_valid": '''def conv1d_valid(x, w):
    """x (n,), w (f,) -> (n - f + 1,): the deep-learning 'convolution' (no flip)."""
    n, f = len(x), len(w)
    y = np.zeros(n - f + 1)
    for k in range(f):  # one shifted copy of x per tap
        y += w[k] * np.asarray(x[k : k + n - f + 1], float)
    return y
''',
            "conv1d_general": '''def conv1d(x, w, padding=0, stride=1):
    """x (n, c_in), w (f, c_in, c_out) -> (n_out, c_out); padding p or (left, right)."""
    try:
        left, right = padding
    except TypeError:
        left = right = padding
    n, c_in = x.shape
    f, _, c_out = w.shape
    total = n + left + right
    if total < f or (total - f) % stride != 0:
        raise ValueError(f"({n} + {left} + {right} - {f}) / {stride} is not an integer: the kernel does not fit evenly")
    xp = np.zeros((total, c_in))
    xp[left : left + n] = x
    n_out = (total - f) // stride + 1
    y = np.zeros((n_out, c_out))
    for o in range(c_out):
        for k in range(f):
            for c in range(c_in):
                for i in range(n_out):
                    y[i, o] += xp[i * stride + k, c] * w[k, c, o]
    return y
''',
            "output_length": '''def output_length(n, f, p=0, s=1):
    """Output length of a 1D convolution; ValueError when (n + 2p - f) / s is fractional."""
    padded = n + 2 * p
    if f > padded:
        raise ValueError("the filter is wider than the padded input")
    q, r = divmod(padded - f, s)
    if r:
        raise ValueError(f"({padded} - {f}) / {s} is not an integer")
    return q + 1
''',
            "graph_gradients": '''def graph_gradients(w0, x0, w1, x1, w2):
    """Forward value f and dict of df/d(each input) for the sigmoid neuron."""
    inputs = {"w0": w0, "x0": x0, "w1": w1, "x1": x1, "w2": w2}
    z = w0 * x0 + w1 * x1 + w2
    f = float(np.exp(z) / (1.0 + np.exp(z))) if z < 0 else float(1.0 / (1.0 + np.exp(-z)))
    dz = f * (1.0 - f)
    partner = {"w0": "x0", "x0": "w0", "w1": "x1", "x1": "w1"}
    grads = {name: float(dz * inputs[partner[name]]) if name in partner else float(dz) for name in inputs}
    return f, grads
''',
            "conv1d_backward": '''def conv1d_backward(x, w, g, stride=1):
    """x (n,), w (f,), g ((n - f) // stride + 1,) -> dx (n,), dw (f,)."""
    n, f = len(x), len(w)
    up = np.zeros(n - f + 1)
    up[::stride] = g  # the stride-1 gradient, with zeros at the skipped outputs
    dx = np.zeros(n)
    dw = np.zeros(f)
    for k in range(f):
        dx[k : k + n - f + 1] += up * w[k]
        dw[k] = np.dot(up, x[k : k + n - f + 1])
    return dx, dw
''',
        },
        "02_2d_filters": {
            "conv2d": '''def conv2d(x, w, stride=1, padding=0):
    """x (h, w, c_in), w (fh, fw, c_in, c_out) -> (h_out, w_out, c_out)."""
    h, wd, c_in = x.shape
    fh, fw, _, c_out = w.shape
    xp = np.zeros((h + 2 * padding, wd + 2 * padding, c_in))
    xp[padding : padding + h, padding : padding + wd] = x
    h_out = (xp.shape[0] - fh) // stride + 1
    w_out = (xp.shape[1] - fw) // stride + 1
    y = np.zeros((h_out, w_out, c_out))
    for a in range(fh):  # loop over the filter taps; every output position at once
        for b in range(fw):
            shifted = xp[a : a + stride * (h_out - 1) + 1 : stride, b : b + stride * (w_out - 1) + 1 : stride]
            y += shifted @ w[a, b]  # (h_out, w_out, c_in) @ (c_in, c_out)
    return y
''',
            "numerical_gradient": '''def numerical_gradient(f, x, h=1e-5):
    """f: array shaped like x -> float; x (any shape) -> df/dx (the shape of x), by centred differences."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        step = np.zeros_like(x, dtype=np.float64)
        step[i] = h
        grad[i] = (f(x + step) - f(x - step)) / (2 * h)
    return grad
''',
            "conv2d_backward": '''def conv2d_backward(x, w, g, stride=1, padding=0):
    """x (h, w, c_in), w (fh, fw, c_in, c_out), g (h_out, w_out, c_out) -> dx like x, dw like w, db (c_out,)."""
    h, wd, c_in = x.shape
    fh, fw, _, c_out = w.shape
    xp = np.zeros((h + 2 * padding, wd + 2 * padding, c_in))
    xp[padding : padding + h, padding : padding + wd] = x
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    db = np.zeros(c_out)
    for k in range(c_out):
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                r, c = i * stride, j * stride
                dw[:, :, :, k] += g[i, j, k] * xp[r : r + fh, c : c + fw, :]
                dxp[r : r + fh, c : c + fw, :] += g[i, j, k] * w[:, :, :, k]
                db[k] += g[i, j, k]
    return dxp[padding : padding + h, padding : padding + wd, :], dw, db
''',
            "max_pool2d": '''def max_pool2d(x, size=2, stride=2):
    """x (h, w, c) -> ((h - size) // stride + 1, (w - size) // stride + 1, c)."""
    h_out, w_out = (x.shape[0] - size) // stride + 1, (x.shape[1] - size) // stride + 1
    y = np.full((h_out, w_out, x.shape[2]), -np.inf)
    for a in range(size):
        for b in range(size):
            y = np.maximum(y, x[a : a + stride * (h_out - 1) + 1 : stride, b : b + stride * (w_out - 1) + 1 : stride])
    return y
''',
            "max_pool2d_backward": '''def max_pool2d_backward(x, g, size=2, stride=2):
    """x (h, w, c), g like max_pool2d(x, size, stride) -> dx (h, w, c)."""
    dx = np.zeros_like(x, dtype=float)
    for k in range(x.shape[2]):
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                window = x[i * stride : i * stride + size, j * stride : j * stride + size, k]
                mask = window == window.max()
                dx[i * stride : i * stride + size, j * stride : j * stride + size, k] += mask * g[i, j, k]
    return dx
''',
            "layer_shape_and_params": '''def layer_shape_and_params(h, w, c_in, filters, f, stride=1, padding=0):
    """Output shape (h_out, w_out, filters) and the number of trainable parameters."""
    h_steps, w_steps = (h + 2 * padding - f) / stride, (w + 2 * padding - f) / stride
    for steps in (h_steps, w_steps):
        if steps < 0 or steps != int(steps):
            raise ValueError(f"(n + 2p - f) / s = {steps} is not a whole number")
    params = filters * f * f * c_in + filters
    return (int(h_steps) + 1, int(w_steps) + 1, int(filters)), int(params)
''',
            "receptive_field": '''def receptive_field(kernel_sizes, strides):
    """Receptive field, in input pixels, of the last layer of a stack."""
    r = 1
    for f, s in zip(reversed(kernel_sizes), reversed(strides)):  # from the top layer down to the input
        r = (r - 1) * s + f
    return r
''',
            "edge_magnitude": '''def edge_magnitude(image):
    """image (h, w) -> edge magnitude (h - 2, w - 2)."""
    a, b, c = EDGE_WEIGHTS
    p = np.asarray(image, float)
    left, mid, right = p[:, :-2], p[:, 1:-1], p[:, 2:]
    horiz = right - left  # (h, w - 2)
    gx = a * horiz[:-2] + b * horiz[1:-1] + c * horiz[2:]
    top, bottom = p[:-2], p[2:]
    vert = bottom - top  # (h - 2, w)
    gy = a * vert[:, :-2] + b * vert[:, 1:-1] + c * vert[:, 2:]
    return np.sqrt(gx * gx + gy * gy)
''',
            "find_template": '''def find_template(image, template):
    """image (h, w), template (th, tw) -> (row, col) of the best match."""
    th, tw = template.shape
    t = (template - template.mean()).ravel()
    best_score, best = None, None
    for i in range(image.shape[0] - th + 1):
        for j in range(image.shape[1] - tw + 1):
            window = image[i : i + th, j : j + tw].ravel()
            window = window - window.mean()
            denominator = np.sqrt(window @ window) * np.sqrt(t @ t)
            score = 0.0 if denominator == 0 else float(window @ t / denominator)
            if best_score is None or score > best_score:
                best_score, best = score, (i, j)
    return best
''',
            "mean_smooth": '''def mean_smooth(u):
    """u (h, w) -> (h - 2, w - 2): the 3x3 mean of every valid window."""
    s = np.zeros((u.shape[0] + 1, u.shape[1] + 1))
    s[1:, 1:] = np.cumsum(np.cumsum(u, axis=0), axis=1)  # integral image
    total = s[3:, 3:] - s[:-3, 3:] - s[3:, :-3] + s[:-3, :-3]
    return total / 9.0
''',
        },
        "03_mnist_cnn": {
            "build_convnet": '''def build_convnet():
    """The specified convnet: (batch, 28, 28, 1) -> (batch, 10) class probabilities."""
    layers = [
        keras.layers.Conv2D(16, 3, activation=keras.activations.relu),
        keras.layers.MaxPooling2D(pool_size=2, strides=2),
        keras.layers.Conv2D(32, 3),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
        keras.layers.Activation(keras.activations.softmax),
    ]
    inputs = keras.layers.Input(shape=(28, 28, 1))
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.models.Model(inputs, x)
''',
            "param_counts": '''def conv_params(f, c_in, filters):
    return filters * (c_in * f * f) + filters


def dense_params(n_in, n_out):
    return int(np.prod([n_in + 1, n_out]))
''',
            "confusion_matrix": '''def confusion_matrix(y_true, y_pred, classes):
    """(n,) int labels, (n,) int predictions -> (classes, classes) counts; rows are true classes."""
    matrix = np.zeros((classes, classes), dtype=np.int32)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def most_confused(matrix, k=3):
    """(classes, classes) counts -> [(true, predicted, count), ...]: the k largest off-diagonal entries."""
    n = len(matrix)
    entries = [(i, j, int(matrix[i][j])) for i in range(n) for j in range(n) if i != j]
    return sorted(entries, key=lambda e: e[2], reverse=True)[:k]  # sorted is stable: ties keep row-major order
''',
        },
        "04_inception_vs_resnet": {
            "inception_block": '''def inception_block(x, f1, f3, f5, fpool, *, reduce3=None, reduce5=None):
    """x (batch, h, w, c) -> (batch, h, w, f1 + f3 + f5 + fpool)."""
    branches = []
    for filters, size, reduce in ((f1, 1, None), (f3, 3, reduce3), (f5, 5, reduce5)):
        t = x
        if reduce:
            t = keras.layers.Conv2D(reduce, 1, padding="same", activation="relu", name=None)(t)
        t = keras.layers.Conv2D(filters, size, padding="same", use_bias=True)(t)
        branches.append(keras.layers.Activation("relu")(t))
    t = keras.layers.MaxPooling2D(pool_size=3, strides=1, padding="same")(x)
    t = keras.layers.Conv2D(fpool, 1, padding="same", activation=keras.activations.relu)(t)
    branches.append(t)
    return keras.layers.Concatenate(axis=3)(branches)
''',
            "residual_block": '''def residual_block(x, filters, *, stride=1):
    """x (batch, h, w, c) -> (batch, ceil(h / stride), ceil(w / stride), filters)."""
    bn = lambda: keras.layers.BatchNormalization(momentum=0.9, epsilon=2e-5)
    shortcut = x
    if stride > 1 or x.shape[-1] != filters:
        shortcut = bn()(keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x))
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = keras.layers.ReLU()(bn()(y))
    y = bn()(keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
    return keras.ops.relu(y + shortcut)
''',
            "bottleneck_savings": '''def bottleneck_savings(c_in, c_out, f, reduce):
    direct = keras.layers.Conv2D(c_out, f, use_bias=False)
    direct.build((None, None, None, c_in))
    squeeze = keras.layers.Conv2D(reduce, 1, use_bias=False)
    squeeze.build((None, None, None, c_in))
    expand = keras.layers.Conv2D(c_out, f, use_bias=False)
    expand.build((None, None, None, reduce))
    return int(direct.count_params() - squeeze.count_params() - expand.count_params())
''',
            "conv_gradient_norms": '''def conv_gradient_norms(model, x, y):
    """One gradient norm per Conv2D kernel, input side first."""
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    labels = tf.cast(y, tf.int32)
    with tf.GradientTape() as tape:
        probabilities = model(x)
        picked = tf.gather(probabilities, labels, axis=1, batch_dims=1)
        loss = -tf.reduce_mean(tf.math.log(picked))
    return [float(tf.sqrt(tf.reduce_sum(tf.square(g)))) for g in tape.gradient(loss, kernels)]
''',
            "batchnorm_forward": '''def batchnorm_forward(x, gamma, beta, moving_mean, moving_var, *, training, momentum=0.99, epsilon=1e-3):
    """x (n, ..., c); gamma, beta, moving_mean, moving_var (c,) -> y like x, new moving mean (c,), new moving var (c,)."""
    m = np.size(x) // np.shape(x)[-1]
    axes = tuple(range(np.ndim(x) - 1))
    if training:
        mean = np.sum(x, axis=axes) / m
        var = np.sum((x - mean) ** 2, axis=axes) / m
        out_mean = momentum * np.asarray(moving_mean) + (1.0 - momentum) * mean
        out_var = momentum * np.asarray(moving_var) + (1.0 - momentum) * var
    else:
        mean, var = np.asarray(moving_mean), np.asarray(moving_var)
        out_mean, out_var = np.array(moving_mean, dtype=float), np.array(moving_var, dtype=float)
    x_hat = (x - mean) / np.sqrt(var + epsilon)
    return x_hat * gamma + beta, out_mean, out_var
''',
            "batchnorm_backward": '''def batchnorm_backward(x, gamma, g, epsilon=1e-3):
    """x (n, ..., c), gamma (c,), g like x -> dx like x, dgamma (c,), dbeta (c,), training-mode statistics."""
    x32, g32, gamma32 = (np.asarray(v, np.float32) for v in (x, g, gamma))
    axes = tuple(range(x32.ndim - 1))
    m = x32.size // x32.shape[-1]
    mu = x32.mean(axis=axes)
    inv_std = 1.0 / np.sqrt(x32.var(axis=axes) + np.float32(epsilon))
    x_hat = (x32 - mu) * inv_std
    dbeta = g32.sum(axis=axes)
    dgamma = (g32 * x_hat).sum(axis=axes)
    dx = (gamma32 * inv_std / m) * (m * g32 - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta
''',
        },
    },
}
