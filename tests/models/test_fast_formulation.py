"""The fast formulation computes exactly what the reference graph computes, over the same variables.

No module-level TensorFlow import: the arithmetic tests run on every Keras backend; the
whole-model ones (VGG16-sized, slow to build on JAX) run on the default one.
"""

from __future__ import annotations

import numpy as np
import pytest
import keras
from keras import ops

from fcn_keras.models import build_fcn, reference_graph
from fcn_keras.models.fast import convolutions, program
from fcn_keras.models.layers import bilinear_kernel

RNG = np.random.default_rng(8)
backend_agnostic = pytest.mark.backend_agnostic


def images(*shape):
    return RNG.normal(size=shape).astype("float32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@backend_agnostic
@pytest.mark.parametrize("kernel, height, width", [((7, 7), 13, 11), ((3, 2), 9, 10), ((1, 1), 5, 7)])
def test_patch_matmul_conv_equals_the_valid_convolution(kernel, height, width):
    x, k = images(2, height, width, 6), images(*kernel, 6, 5)
    expected = numpy(ops.conv(x, k, padding="valid"))
    np.testing.assert_allclose(numpy(convolutions.patch_matmul_conv(x, k)), expected, rtol=1e-5, atol=1e-5)


@backend_agnostic
@pytest.mark.parametrize("size, stride", [(4, 2), (16, 8), (64, 32), (5, 2), (7, 3), (3, 3)])
@pytest.mark.parametrize("kind", ["bilinear", "random diagonal", "dense"])
def test_diagonal_conv_transpose_equals_the_dense_one(size, stride, kind):
    x = images(2, 5, 7, 3)  # odd, non-square
    if kind == "bilinear":
        kernel = np.einsum("ij,cd->ijcd", bilinear_kernel(size), np.eye(3)).astype("float32")
    else:
        kernel = images(size, size, 3, 3)
        # A dense kernel (e.g. from learned upsampling) must take the dense path in the same call.
        kernel = kernel * np.eye(3, dtype="float32") if kind == "random diagonal" else kernel
    expected = numpy(ops.conv_transpose(x, kernel, stride, padding="valid"))
    got = numpy(convolutions.diagonal_conv_transpose(
        x, kernel, (stride, stride), fallback=lambda: ops.conv_transpose(x, kernel, stride, padding="valid")))
    assert got.shape == (2, (5 - 1) * stride + size, (7 - 1) * stride + size, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@backend_agnostic
@pytest.mark.parametrize(
    "height, width, cin, filters",
    [
        (1, 1, 3, 5),  # smaller than one tile
        (4, 4, 2, 3),  # exactly one tile
        (9, 7, 6, 8),  # odd sizes: partial tiles on both sides
        (5, 13, 130, 140),  # wide channels
    ],
)
def test_winograd_conv_equals_the_same_convolution(height, width, cin, filters):
    x, k = images(2, height, width, cin), images(3, 3, cin, filters)
    expected = numpy(ops.conv(x, k, padding="same"))
    np.testing.assert_allclose(numpy(convolutions.winograd_conv(x, k)), expected,
                               rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@backend_agnostic
@pytest.mark.parametrize("height, width, cin, filters", [(6, 9, 4, 5), (5, 3, 3, 2)])
def test_winograd_conv_has_the_direct_convolutions_gradients(height, width, cin, filters):
    # Winograd has its own gradient (the flipped kernel by Winograd, the kernel's by tap): both arguments'.
    x, k, target = images(2, height, width, cin), images(3, 3, cin, filters), images(2, height, width, filters)

    def gradients(convolution):
        x_var, k_var = keras.Variable(x), keras.Variable(k)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = ops.sum((convolution(x_var, k_var) - target) ** 2)
            return [g.numpy() for g in tape.gradient(loss, [x_var.value, k_var.value])]
        import jax

        return [np.asarray(g) for g in
                jax.grad(lambda xx, kk: ops.sum((convolution(xx, kk) - target) ** 2), argnums=(0, 1))(x, k)]

    for got, expected in zip(gradients(convolutions.winograd_conv),
                             gradients(lambda x, k: ops.conv(x, k, padding="same"))):
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


@backend_agnostic
def test_winograd_pays_for_wide_float32_layers_only():
    # Measured with TensorFlow's CPU kernels: other backends run direct.
    on_tf = keras.backend.backend() == "tensorflow"
    assert convolutions.winograd_pays(256, 256, "float32") == convolutions.winograd_pays(128, 256, "float32") == on_tf
    assert not convolutions.winograd_pays(128, 128, "float32")  # conv2_2: the transforms cost more than they save
    assert not convolutions.winograd_pays(256, 256, "float16") and not convolutions.winograd_pays(256, 256, "bfloat16")


def _randomise_scores(model):
    # weights=None leaves the score layers at zero, which would hide the upsampling path.
    for layer in model.layers:
        if layer.name.startswith("score") and layer.weights:
            layer.set_weights([RNG.normal(size=w.shape).astype("float32") * 0.05 for w in layer.get_weights()])


@pytest.fixture(scope="module")
def fcn8s_pair():
    """The fast FCN-8s and its reference graph: the same layers and variables."""
    model = build_fcn("fcn8s", num_classes=4)
    _randomise_scores(model)
    return model, reference_graph(model)


def test_the_graph_is_the_reference_network(fcn8s_pair):
    model, _ = fcn8s_pair
    trunk = ["pad1"] + [f"{kind}{b}{f'_{i}' if kind == 'conv' else ''}" for b, n in enumerate((2, 2, 3, 3, 3), 1)
                        for kind, i in [("conv", i) for i in range(1, n + 1)] + [("pool", 0)]]
    head = ["score_fr", "upscore2", "score_pool4", "score_pool4c", "fuse_pool4", "upscore_pool4", "score_pool3",
            "score_pool3c", "fuse_pool3", "upscore8", "score"]
    assert [l.name for l in model.layers] == ["image", *trunk, "fc6", "drop6", "fc7", "drop7", *head]
    plain_types = (keras.layers.InputLayer, keras.layers.ZeroPadding2D, keras.layers.Conv2D, keras.layers.MaxPooling2D,
                   keras.layers.Dropout, keras.layers.Conv2DTranspose, keras.layers.Add)
    assert all(type(l) in plain_types or l.name.endswith("c") or l.name == "score" for l in model.layers)
    # The maps are the reference's: conv1_1 pads 100 pixels, so conv2_2 of a 64x80 image is 131x139.
    conv2_2 = keras.Model(model.input, model.get_layer("conv2_2").output)
    assert tuple(conv2_2.predict(np.zeros((1, 64, 80, 3), "float32"), verbose=0).shape) == (1, 131, 139, 128)
    assert model.fast and not build_fcn("fcn8s", num_classes=4, backbone="tiny_vgg").fast


def test_fcn8s_equals_its_reference_graph(fcn8s_pair):
    model, plain = fcn8s_pair
    # Every remainder of height and width modulo 4 (the margin's pooling alignment), a batch
    # of different images, and an image smaller than one Winograd tile.
    for shape in [(2, 27, 18), (1, 1, 2), (1, 6, 3), (2, 4, 5), (1, 11, 12), (1, 29, 20)]:
        x = images(*shape, 3) * 60
        expected = keras.ops.convert_to_numpy(plain(x))
        assert np.abs(expected).max() > 1e-3  # the heads contribute, not just the biases
        np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(), err_msg=shape)
    # The margin-free blocks hand over the full padded map: pool3 itself is equal.
    x = images(1, 13, 10, 3) * 60
    fast_pool3 = numpy(program.vgg16_trunk(model.get_layer, ops.convert_to_tensor(x))[8])
    plain_pool3 = numpy(keras.Model(model.input, model.get_layer("pool3").output)(x))
    assert fast_pool3.shape == plain_pool3.shape == (1, 27, 26, 256)
    np.testing.assert_allclose(fast_pool3, plain_pool3, rtol=1e-4, atol=1e-4 * np.abs(plain_pool3).max())


def test_fcn8s_traces_for_any_image_size(fcn8s_pair):
    # What every export traces: the margin-free blocks and Winograd convolutions as one
    # TensorFlow graph with unknown batch, height and width.
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("exports trace with TensorFlow")
    model, _ = fcn8s_pair
    graph = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, None, None, 3))])
    for batch, height, width in [(1, 23, 18), (2, 40, 33)]:
        x = images(batch, height, width, 3) * 60
        traced, eager = graph(x).numpy(), keras.ops.convert_to_numpy(model(x))
        assert traced.shape == (batch, height, width, 4) and np.abs(eager).max() > 1e-3
        np.testing.assert_allclose(traced, eager, rtol=1e-5, atol=1e-5 * np.abs(eager).max())


def test_the_margin_free_trunk_trains_like_the_padded_one():
    # Gradients reach conv1_1 ... conv3_3 through both the image's core and the background
    # proxy. In float64: float32 gradients summed over ~10^5 largely cancelling positions
    # differ by up to a percent between any two summation orders (threads included).
    # One model (1 GB of float64 variables): its fast call, then its reference graph over the
    # same variables put back to where they started, each trained one step.
    x = images(2, 9, 14, 3).astype("float64") * 60
    y = np.stack([RNG.integers(0, 3, (9, 14)) for _ in range(2)])
    compared = ("conv1_1/kernel", "conv2_2/kernel", "conv3_3/bias", "fc6/kernel")
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        model = build_fcn("fcn32s", num_classes=3)
        _randomise_scores(model)
        for name in ("drop6", "drop7"):  # the same step for both: no random dropout masks
            model.get_layer(name).rate = 0.0
        weights = {w.path: w for w in model.weights}
        # The start kept as tensors, not NumPy copies: a read value shares the variable's buffer (tensors are
        # immutable, so the step's update writes a new one) and assigning it back copies nothing.
        initial = {path: keras.ops.copy(w.value) for path, w in weights.items()}
        steps = []
        for net in (model, reference_graph(model)):  # the fast call, then the plain layer graph
            for path, w in weights.items() if steps else ():
                w.assign(initial[path])
            net.compile(optimizer=keras.optimizers.SGD(1.0), loss=keras.losses.SparseCategoricalCrossentropy(True))
            net.train_on_batch(x, y)
            steps.append({name: keras.ops.convert_to_numpy(weights[name] - initial[name]) for name in compared})
    finally:
        keras.config.set_dtype_policy(policy)
    assert model.fast
    for name in compared:
        fast_step, plain_step = steps[0][name], steps[1][name]
        assert np.linalg.norm(plain_step) > 0, name
        assert np.linalg.norm(fast_step - plain_step) < 1e-7 * np.linalg.norm(plain_step), name


def test_trainable_upsampling_runs_the_dense_kernel():
    model = build_fcn("fcn16s", num_classes=3, trainable_upsampling=True)
    upscore = model.get_layer("upscore16")
    assert program._fast(upscore) is upscore  # every kernel entry trains, not only the diagonal
    upscore.trainable = False
    assert program._fast(upscore) is not upscore


def test_fast_flag_round_trips_through_keras_files(tmp_path):
    model = build_fcn("fcn32s", num_classes=2, backbone="vgg16", fast=False)
    model.save(tmp_path / "plain.keras")
    loaded = keras.models.load_model(tmp_path / "plain.keras")
    assert not loaded.fast and loaded.get_config()["fast"] is False
