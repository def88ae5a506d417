"""The fast layers compute exactly what the plain Keras layers compute, with the same weights.

No module-level TensorFlow import: the layer tests run on every Keras backend; the
whole-model ones (VGG16-sized, slow to build on JAX) run on the default one.
"""

from __future__ import annotations

import numpy as np
import pytest
import keras

from fcn_keras.models import build_fcn, margin
from fcn_keras.models.fast_convolutions import DiagonalConv2DTranspose, PatchMatmulConv2D, WinogradConv2D, plain_layers
from fcn_keras.models.layers import BilinearUpsamplingInitializer

RNG = np.random.default_rng(8)
backend_agnostic = pytest.mark.backend_agnostic


def plain_twin(layer: keras.layers.Layer, input_shape) -> keras.layers.Layer:
    """The plain Keras layer with ``layer``'s config and weights."""
    twin = plain_layers(keras.Sequential([keras.Input(input_shape[1:]), layer])).layers[0]
    assert type(twin) in (keras.layers.Conv2D, keras.layers.Conv2DTranspose)
    return twin


def images(*shape):
    return RNG.normal(size=shape).astype("float32")


@backend_agnostic
@pytest.mark.parametrize(
    "kernel, height, width, options",
    [
        ((7, 7), 13, 11, {}),  # fc6's kernel over a small odd map
        ((3, 2), 9, 10, {"activation": "relu"}),
        ((1, 1), 5, 7, {"use_bias": False}),
        ((3, 3), 9, 8, {"padding": "same"}),  # configurations the matmul does not cover run the plain conv
        ((3, 3), 11, 9, {"strides": 2}),
    ],
)
def test_patch_matmul_conv_equals_conv2d(kernel, height, width, options):
    x = images(2, height, width, 6)
    fast = PatchMatmulConv2D(5, kernel, bias_initializer="random_normal", **options)
    fast.build(x.shape)
    np.testing.assert_allclose(fast(x), plain_twin(fast, x.shape)(x), rtol=1e-5, atol=1e-5)


@backend_agnostic
@pytest.mark.parametrize("size, stride", [(4, 2), (16, 8), (64, 32), (5, 2), (7, 3), (3, 3)])
@pytest.mark.parametrize("kind", ["bilinear", "random diagonal", "dense"])
def test_diagonal_transposed_conv_equals_conv2d_transpose(size, stride, kind):
    x = images(2, 5, 7, 3)  # odd, non-square
    fast = DiagonalConv2DTranspose(3, size, strides=stride, use_bias=False,
                                   kernel_initializer=BilinearUpsamplingInitializer(), trainable=False)
    fast.build(x.shape)
    if kind != "bilinear":
        kernel = images(size, size, 3, 3)
        # A dense kernel (e.g. from learned upsampling) must silently take the dense path.
        fast.set_weights([kernel * np.eye(3) if kind == "random diagonal" else kernel])
    expected = plain_twin(fast, x.shape)(x)
    np.testing.assert_allclose(fast(x), expected, rtol=1e-5, atol=1e-5)
    assert fast(x).shape == ((2, (5 - 1) * stride + size, (7 - 1) * stride + size, 3))


@backend_agnostic
def test_diagonal_transposed_conv_keeps_bias_and_activation():
    x = images(1, 4, 6, 2)
    fast = DiagonalConv2DTranspose(2, 4, strides=2, activation="relu", bias_initializer="random_normal",
                                   kernel_initializer=BilinearUpsamplingInitializer(), trainable=False)
    fast.build(x.shape)
    np.testing.assert_allclose(fast(x), plain_twin(fast, x.shape)(x), rtol=1e-5, atol=1e-5)


def _one_sgd_step(layer_or_twin, x, y):
    model = keras.Sequential([keras.Input(x.shape[1:]), layer_or_twin])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.train_on_batch(x, y)
    return keras.ops.convert_to_numpy(layer_or_twin.kernel)


@backend_agnostic
def test_trainable_upsampling_trains_the_full_kernel():
    x, y = images(2, 3, 4, 3), images(2, 8, 10, 3)
    fast = DiagonalConv2DTranspose(3, 4, strides=2, use_bias=False,
                                   kernel_initializer=BilinearUpsamplingInitializer(), trainable=True)
    fast.build(x.shape)
    twin = plain_twin(fast, x.shape)
    before = keras.ops.convert_to_numpy(fast.kernel)
    trained, trained_twin = _one_sgd_step(fast, x, y), _one_sgd_step(twin, x, y)
    np.testing.assert_allclose(trained, trained_twin, rtol=1e-5, atol=1e-6)
    off_diagonal = (1 - np.eye(3)).astype(bool)
    assert np.abs(trained - before)[:, :, off_diagonal].max() > 0


@backend_agnostic
def test_fc6_matmul_trains_like_conv2d():
    x, y = images(2, 9, 8, 4), images(2, 3, 2, 5)
    fast = PatchMatmulConv2D(5, 7)
    fast.build(x.shape)
    twin = plain_twin(fast, x.shape)
    np.testing.assert_allclose(_one_sgd_step(fast, x, y), _one_sgd_step(twin, x, y), rtol=1e-5, atol=1e-6)


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
def test_winograd_conv_equals_conv2d(height, width, cin, filters):
    x = images(2, height, width, cin)
    fast = WinogradConv2D(filters, 3, padding="same", activation="relu", bias_initializer="random_normal",
                          algorithm="winograd")
    fast.build(x.shape)
    expected = keras.ops.convert_to_numpy(plain_twin(fast, x.shape)(x))
    assert fast._uses_winograd(cin)
    np.testing.assert_allclose(fast(x), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@backend_agnostic
@pytest.mark.parametrize("options", [{"strides": 2}, {"padding": "valid"}, {"dilation_rate": 2}])
def test_winograd_conv_runs_direct_where_it_does_not_apply(options):
    x = images(1, 11, 9, 4)
    fast = WinogradConv2D(3, 3, **{"padding": "same", **options}, algorithm="winograd")
    fast.build(x.shape)
    assert not fast._uses_winograd(4)
    np.testing.assert_allclose(fast(x), plain_twin(fast, x.shape)(x), rtol=1e-5, atol=1e-5)


@backend_agnostic
def test_winograd_auto_picks_wide_float32_layers_only():
    def auto(cin, filters, **options):
        return WinogradConv2D(filters, 3, padding="same", **options)._uses_winograd(cin)

    # Measured with TensorFlow's CPU kernels: other backends run direct unless asked.
    assert auto(256, 256) == auto(128, 256) == (keras.backend.backend() == "tensorflow")  # conv3_1 onwards
    assert auto(256, 256, algorithm="winograd")
    assert not auto(128, 128) and not auto(64, 64)  # conv1_2 ... conv2_2: the transforms cost more than they save
    assert not auto(256, 256, dtype="mixed_float16") and not auto(256, 256, dtype="mixed_bfloat16")
    assert not auto(256, 256, algorithm="direct")
    with pytest.raises(ValueError, match="algorithm"):
        WinogradConv2D(4, 3, algorithm="fast")


@backend_agnostic
def test_winograd_conv_trains_like_conv2d():
    x, y = images(2, 6, 9, 4), images(2, 6, 9, 5)
    fast = WinogradConv2D(5, 3, padding="same", algorithm="winograd")
    fast.build(x.shape)
    twin = plain_twin(fast, x.shape)
    np.testing.assert_allclose(_one_sgd_step(fast, x, y), _one_sgd_step(twin, x, y), rtol=1e-5, atol=1e-6)


def _randomise_scores(model):
    # weights=None leaves the score layers at zero, which would hide the upsampling path.
    for layer in model.layers:
        if layer.name.startswith("score") and layer.weights:
            layer.set_weights([RNG.normal(size=w.shape).astype("float32") * 0.05 for w in layer.get_weights()])


def _same_weights(source: keras.Model, target: keras.Model) -> keras.Model:
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    return target


@pytest.fixture(scope="module")
def fcn8s_pair():
    """The fast FCN-8s and the plain layer-by-layer one (``fast=False``) with the same weights."""
    model = build_fcn("fcn8s", num_classes=4)
    _randomise_scores(model)
    plain = _same_weights(model, build_fcn("fcn8s", num_classes=4, fast=False))
    fast_types = (PatchMatmulConv2D, DiagonalConv2DTranspose, WinogradConv2D, margin.MarginProxy)
    assert not any(isinstance(layer, fast_types) for layer in plain.layers)
    return model, plain


def test_fcn8s_equals_its_plain_formulation(fcn8s_pair):
    model, plain = fcn8s_pair
    winograd = [layer.name for layer in model.layers if isinstance(layer, WinogradConv2D)
                and layer._uses_winograd(layer.kernel.shape[2])]
    assert winograd == [f"conv{block}_{i}" for block in (3, 4, 5) for i in (1, 2, 3)]  # on TensorFlow
    # Every remainder of height and width modulo 4 (the margin's pooling alignment), a batch
    # of different images, and an image smaller than one Winograd tile.
    for shape in [(2, 27, 18), (1, 1, 2), (1, 6, 3), (2, 4, 5), (1, 11, 12), (1, 29, 20)]:
        x = images(*shape, 3) * 60
        expected = keras.ops.convert_to_numpy(plain(x))
        assert np.abs(expected).max() > 1e-3  # the heads contribute, not just the biases
        np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(), err_msg=shape)
    # The margin-free blocks hand over the full padded map: pool3 itself is equal.
    x = images(1, 13, 10, 3) * 60
    fast_pool3, plain_pool3 = (keras.ops.convert_to_numpy(keras.Model(m.inputs, m.get_layer("pool3").output)(x))
                               for m in (model, plain))
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
    x = images(2, 9, 14, 3).astype("float64") * 60
    y = np.stack([RNG.integers(0, 3, (9, 14)) for _ in range(2)])
    initial, trained = None, []
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        for fast in (True, False):
            model = build_fcn("fcn32s", num_classes=3, fast=fast)
            if initial is None:
                _randomise_scores(model)
                initial = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
            else:
                for w in model.weights:
                    w.assign(initial[w.path])
            for name in ("drop6", "drop7"):  # the same step for both: no random dropout masks
                model.get_layer(name).rate = 0.0
            model.compile(optimizer=keras.optimizers.SGD(1.0), loss=keras.losses.SparseCategoricalCrossentropy(True))
            model.train_on_batch(x, y)
            trained.append({w.path: keras.ops.convert_to_numpy(w) for w in model.weights})
    finally:
        keras.config.set_dtype_policy(policy)
    for name in ("conv1_1/kernel", "conv2_2/kernel", "conv3_3/bias", "fc6/kernel"):
        fast_step, plain_step = trained[0][name] - initial[name], trained[1][name] - initial[name]
        assert np.linalg.norm(plain_step) > 0, name
        assert np.linalg.norm(fast_step - plain_step) < 1e-7 * np.linalg.norm(plain_step), name


def test_variables_keep_the_reference_names_and_shapes(fcn8s_pair):
    model, plain = fcn8s_pair
    assert model.get_layer("fc6").kernel.shape == (7, 7, 512, 4096)
    assert model.get_layer("upscore8").kernel.shape == (16, 16, 4, 4)
    assert [(w.path, w.shape) for w in model.weights] == [(w.path, w.shape) for w in plain.weights]


@backend_agnostic
def test_fast_layers_round_trip_through_keras_files_in_safe_mode(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = PatchMatmulConv2D(4, 3, activation="relu", name="fc6")(inputs)
    x = DiagonalConv2DTranspose(4, 4, strides=2, use_bias=False, trainable=False,
                                kernel_initializer=BilinearUpsamplingInitializer(), name="upscore")(x)
    x = WinogradConv2D(3, 3, padding="same", algorithm="winograd", name="conv")(x)
    model = keras.Model(inputs, x)
    path = tmp_path / "fast.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.get_layer("fc6")) is PatchMatmulConv2D
    assert type(loaded.get_layer("upscore")) is DiagonalConv2DTranspose
    assert not loaded.get_layer("upscore").trainable
    assert type(loaded.get_layer("conv")) is WinogradConv2D and loaded.get_layer("conv").algorithm == "winograd"
    fast_types = (PatchMatmulConv2D, DiagonalConv2DTranspose, WinogradConv2D)
    assert not any(isinstance(layer, fast_types) for layer in plain_layers(model).layers)
    x = images(1, 9, 7, 3)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
