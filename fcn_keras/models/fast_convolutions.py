"""Exact, faster formulations of the convolutions FCNs spend their time on.

Both layers are drop-in subclasses of the Keras layer they replace: same
arguments, same config, same variables (names and shapes), so weights, the Caffe
conversion and ``.keras`` files move between them and the plain layers. Only the
arithmetic is rearranged; results equal the plain layer's to float rounding.

- :class:`PatchMatmulConv2D` computes a valid, stride-1 convolution as ONE
  matrix product over its ``kh*kw*cin`` input patches. fc6 (a 7x7 convolution
  with 4096 filters over the small pool5 map) runs several times below the
  machine's matmul rate as a convolution on CPU (oneDNN and Eigen pick poor
  schedules for a 7x7x512 kernel over a ~20x20 map) and close to it as a matmul.
- :class:`DiagonalConv2DTranspose` applies a channel-diagonal transposed
  convolution (the reference's fixed bilinear upsampling: class ``i`` upsamples
  into class ``i`` only) per channel: as a depthwise convolution computing all
  ``stride**2`` output phases at once, then interleaving them (depth to space).
  That is ``channels`` times less arithmetic than the dense ``C x C`` transposed
  convolution, and a layout CPUs run well.
- :class:`WinogradConv2D` computes a 3x3, stride-1, ``"same"`` convolution
  (conv1_2 ... conv5_3) with Winograd's minimal filtering F(4x4, 3x3) (Lavin
  and Gray, 2016): 4x4 output tiles from 6x6 input tiles with 36 products per
  tile and channel pair instead of 144, as 36 independent matrix products.
  The transforms cost memory traffic, so it is used where the channels are
  wide enough for the saved products to outweigh it (conv3_1 onwards in VGG16).
"""

from __future__ import annotations

import math

import numpy as np
import keras
from keras import ops

_PACKAGE = "fcn_keras"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PatchMatmulConv2D(keras.layers.Conv2D):
    """``Conv2D`` computed as one matrix product over input patches (im2col).

    Used when the convolution is channels-last, ``padding="valid"``, stride 1,
    dilation 1 and ungrouped (fc6 in the reference: 7x7, 512 -> 4096); any other
    configuration runs the plain ``Conv2D``. The kernel keeps its
    ``(kh, kw, cin, filters)`` shape and is trained as usual: the product reads it
    reshaped to ``(kh * kw * cin, filters)``, whose row order is exactly the
    patches' ``(dy, dx, channel)`` order.

    Example:
        >>> import numpy as np
        >>> layer = PatchMatmulConv2D(8, 3, name="fc6")
        >>> tuple(layer(np.ones((1, 5, 6, 4), "float32")).shape)
        (1, 3, 4, 8)
    """

    def _uses_matmul(self) -> bool:
        return (
            self.padding == "valid"
            and self.data_format == "channels_last"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
        )

    def convolution_op(self, inputs, kernel):
        if not self._uses_matmul():
            return super().convolution_op(inputs, kernel)
        kh, kw, cin, filters = kernel.shape
        shape = ops.shape(inputs)
        out_h, out_w = shape[1] - kh + 1, shape[2] - kw + 1
        # Channel-concatenated shifted windows: position (y, x) holds the patch
        # rows (dy, dx, c) in the kernel's own row-major order.
        patches = ops.concatenate(
            [inputs[:, dy : dy + out_h, dx : dx + out_w, :] for dy in range(kh) for dx in range(kw)], axis=-1
        )
        flat = ops.reshape(patches, (-1, kh * kw * cin))
        outputs = ops.matmul(flat, ops.reshape(kernel, (kh * kw * cin, filters)))
        return ops.reshape(outputs, (shape[0], out_h, out_w, filters))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiagonalConv2DTranspose(keras.layers.Conv2DTranspose):
    """``Conv2DTranspose`` that runs per channel while its kernel is channel-diagonal.

    The FCN upsampling kernels ``(k, k, C, C)`` are bilinear on the channel
    diagonal and zero elsewhere, fixed as in the reference. While the layer is
    not trainable, each call checks that the kernel is still diagonal (a cheap
    reduction over ``k*k*C*C`` values) and then computes, for every channel, the
    ``stride**2`` output phases as one depthwise convolution with
    ``ceil(k / stride)``-tap kernels, interleaved into the upsampled map. A
    kernel with any off-diagonal value — loaded from a model trained with
    learned upsampling, say — takes the plain dense path in the same call, so
    the result is always the plain layer's. A trainable layer always runs the
    dense transposed convolution, so that training updates the full kernel.

    The per-channel path covers channels-last, ``padding="valid"``, no
    dilation and no output padding (the reference geometry); otherwise the layer
    is the plain ``Conv2DTranspose``.

    Example:
        >>> import numpy as np
        >>> from fcn_keras.models.layers import BilinearUpsamplingInitializer
        >>> up = DiagonalConv2DTranspose(3, 4, strides=2, use_bias=False,
        ...                              kernel_initializer=BilinearUpsamplingInitializer(), trainable=False)
        >>> tuple(up(np.ones((1, 5, 5, 3), "float32")).shape)
        (1, 12, 12, 3)
    """

    def _uses_diagonal(self) -> bool:
        return (
            not self.trainable
            and self.padding == "valid"
            and self.data_format == "channels_last"
            and tuple(self.dilation_rate) == (1, 1)
            and self.output_padding is None
            and self.kernel.shape[2] == self.kernel.shape[3]
        )

    def call(self, inputs):
        if not self._uses_diagonal():
            return super().call(inputs)
        kernel = self.kernel
        channels = kernel.shape[2]
        off_diagonal = ops.convert_to_tensor(1.0 - np.eye(channels), dtype=kernel.dtype)
        is_diagonal = ops.all(ops.equal(kernel * off_diagonal, 0))
        outputs = ops.cond(
            is_diagonal,
            lambda: self._per_channel(inputs, ops.sum(kernel * (1 - off_diagonal), axis=3)),
            lambda: super(DiagonalConv2DTranspose, self).call(inputs),
        )
        return outputs

    def _per_channel(self, inputs, diagonal):
        """The transposed convolution with the ``(k, k, C)`` per-channel kernels ``diagonal``."""
        kh, kw, channels = diagonal.shape
        sh, sw = self.strides
        th, tw = math.ceil(kh / sh), math.ceil(kw / sw)  # taps per phase
        # Output row s*q + r sums input rows q - a (a < th) weighted by kernel row s*a + r.
        padded_kernel = ops.pad(diagonal, [[0, th * sh - kh], [0, tw * sw - kw], [0, 0]])
        phases = ops.reshape(padded_kernel, (th, sh, tw, sw, channels))
        phases = ops.flip(ops.flip(phases, axis=0), axis=2)  # a convolution reads input rows q - a as q' + a
        phases = ops.reshape(ops.transpose(phases, (0, 2, 4, 1, 3)), (th, tw, channels, sh * sw))
        padded = ops.pad(inputs, [[0, 0], [th - 1, th - 1], [tw - 1, tw - 1], [0, 0]])
        y = ops.depthwise_conv(padded, phases, strides=1, padding="valid")
        shape = ops.shape(y)
        # Depthwise output channel c * sh * sw + r * sw + t is phase (r, t) of channel c.
        y = ops.reshape(y, (shape[0], shape[1], shape[2], channels, sh, sw))
        y = ops.reshape(ops.transpose(y, (0, 1, 4, 2, 5, 3)), (shape[0], shape[1] * sh, shape[2] * sw, channels))
        in_shape = ops.shape(inputs)
        out_h, out_w = (in_shape[1] - 1) * sh + kh, (in_shape[2] - 1) * sw + kw
        if th * sh != kh or tw * sw != kw:
            y = y[:, :out_h, :out_w, :]
        if self.use_bias:
            y = y + ops.reshape(self.bias, (1, 1, 1, channels))
        return self.activation(y) if self.activation is not None else y



# F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
# Y = A^T [(G g G^T) * (B^T d B)] A for a 6x6 input tile d and a 3x3 kernel g.
_WINOGRAD_TILE = 4
_B_T = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], "float32")
_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], "float32")
_A_T = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], "float32")
# Kernel transform for both axes at once: row (w, h) of the 36 tile positions, column (dy, dx).
_G_2D = np.einsum("hi,wj->whij", _G, _G).reshape(36, 9)

# Multiply-adds per transformed value, cin * filters / (cin + filters), above which the
# saved products outweigh the transforms' memory traffic (measured, bench/README.md):
# conv3_1 (128 -> 256) is 85; conv2_2 (128 -> 128) is 64 and runs faster directly.
_WINOGRAD_MIN_WIDTH = 80


def _winograd_pays() -> bool:
    """Whether ``algorithm="auto"`` picks Winograd on this machine and backend.

    Measured on TensorFlow's CPU kernels (oneDNN), where the direct convolution
    already runs at the matmul rate. GPU convolution libraries choose their own
    (often Winograd) algorithms, far faster than one spelled out in framework
    ops; other backends' CPU convolutions were not measured against it.
    """
    global _WINOGRAD_PAYS
    if _WINOGRAD_PAYS is None:
        cpu_only = all(device.lower().startswith("cpu") for device in keras.distribution.list_devices())
        _WINOGRAD_PAYS = cpu_only and keras.backend.backend() == "tensorflow"
    return _WINOGRAD_PAYS


_WINOGRAD_PAYS = None


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WinogradConv2D(keras.layers.Conv2D):
    """``Conv2D`` computed with Winograd's F(4x4, 3x3) minimal filtering where that is faster.

    Covers 3x3, stride-1, undilated, ungrouped, channels-last convolutions with
    ``padding="same"`` (every VGG16 convolution after conv1_1). The image is cut
    into overlapping 6x6 tiles (stride 4); each tile ``d`` becomes
    ``B^T d B``, each kernel ``g`` becomes ``G g G^T``, and the 36 tile
    positions are 36 independent ``(tiles, cin) x (cin, filters)`` matrix
    products whose results ``A^T m A`` are the 4x4 output tiles. That is 2.25x
    less arithmetic than the direct convolution, with float32 rounding about ten
    times the direct convolution's (relative 1e-5: far inside the architecture
    tests' tolerance). The kernel keeps its ``(3, 3, cin, filters)`` shape and
    trains as usual: the transforms are differentiable ops on it.

    ``algorithm="auto"`` (default) uses it for float32 computation with
    TensorFlow on CPU-only machines, where it was measured, when the channels
    are wide enough for it to pay (``cin * filters / (cin + filters) >= 80``);
    ``"winograd"`` always (where covered, on any backend), ``"direct"`` never. Half-precision policies always run direct:
    the transforms' coefficients (up to 8 and 1/24) cost too much precision.

    Example:
        >>> import numpy as np
        >>> layer = WinogradConv2D(8, 3, padding="same", algorithm="winograd")
        >>> tuple(layer(np.ones((1, 9, 7, 4), "float32")).shape)
        (1, 9, 7, 8)
    """

    def __init__(self, *args, algorithm: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if algorithm not in ("auto", "winograd", "direct"):
            raise ValueError(f"algorithm must be 'auto', 'winograd' or 'direct', got {algorithm!r}")
        self.algorithm = algorithm

    def get_config(self) -> dict:
        return {**super().get_config(), "algorithm": self.algorithm}

    def _uses_winograd(self, cin: int) -> bool:
        covered = (
            tuple(self.kernel_size) == (3, 3)
            and self.padding == "same"
            and self.data_format == "channels_last"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
        )
        if not covered or self.algorithm == "direct":
            return False
        if self.algorithm == "winograd":
            return True
        wide = cin * self.filters / (cin + self.filters) >= _WINOGRAD_MIN_WIDTH
        return wide and self.compute_dtype == "float32" and _winograd_pays()

    def convolution_op(self, inputs, kernel):
        cin, filters = kernel.shape[2], kernel.shape[3]
        if not self._uses_winograd(cin):
            return super().convolution_op(inputs, kernel)
        m, a = _WINOGRAD_TILE, _WINOGRAD_TILE + 2
        shape = ops.shape(inputs)
        n, h, w = shape[0], shape[1], shape[2]
        tiles_h, tiles_w = (h + m - 1) // m, (w + m - 1) // m
        # One pixel of "same" padding on top/left; bottom/right up to whole tiles (at most 2m - 2).
        padded = ops.pad(inputs, [[0, 0], [1, 2 * m - 2], [1, 2 * m - 2], [0, 0]])
        rows = ops.tensordot(_B_T, _tiles(padded, 1, tiles_h), axes=1)  # (a, n, tiles_h, w + 2m - 1, cin)
        tiles = ops.tensordot(_B_T, _tiles(rows, 3, tiles_w), axes=1)  # (a_w, a_h, n, tiles_h, tiles_w, cin)
        transformed_kernel = ops.matmul(ops.convert_to_tensor(_G_2D, kernel.dtype), ops.reshape(kernel, (9, -1)))
        products = ops.matmul(
            ops.reshape(tiles, (a * a, -1, cin)), ops.reshape(transformed_kernel, (a * a, cin, filters))
        )
        products = ops.reshape(products, (a, a, n, tiles_h, tiles_w, filters))
        y = ops.tensordot(_A_T, products, axes=[[1], [1]])  # (m_h, a_w, n, tiles_h, tiles_w, filters)
        y = ops.tensordot(_A_T, y, axes=[[1], [1]])  # (m_w, m_h, n, tiles_h, tiles_w, filters)
        y = ops.reshape(ops.transpose(y, (2, 3, 1, 4, 0, 5)), (n, tiles_h * m, tiles_w * m, filters))
        return y[:, :h, :w, :]


def _tiles(x, axis: int, count):
    """The ``a = m + 2`` overlapping tile rows along ``axis``, stacked first: ``x[..., m*t + k, ...]`` for ``t < count``.

    Reads them through a reshape into ``(count + 1, m)`` blocks rather than strided
    slices, which TensorFlow's CPU kernels copy element by element.
    """
    m = _WINOGRAD_TILE
    shape = ops.shape(x)
    head = (slice(None),) * axis
    blocks = ops.reshape(x[head + (slice(0, m * (count + 1)),)], (*shape[:axis], count + 1, m, *shape[axis + 1:]))
    return ops.stack([blocks[head + (slice(k // m, k // m + count), k % m)] for k in range(m + 2)], axis=0)


_PLAIN_TWINS = {
    PatchMatmulConv2D: keras.layers.Conv2D,
    DiagonalConv2DTranspose: keras.layers.Conv2DTranspose,
    WinogradConv2D: keras.layers.Conv2D,
}


def plain_layers(model: keras.Model, kinds: tuple[type, ...] | None = None) -> keras.Model:
    """A copy of ``model`` with its fast layers replaced by the plain Keras layers, same weights.

    ``kinds`` limits the replacement to those fast layer classes (default: all).
    For checking the fast formulations against the plain ones, for measuring
    what they gain, and for runtimes with convolution kernels of their own
    (TFLite converts plain convolutions; see ``fcn_keras.export.tflite``).

    Example:
        >>> from fcn_keras.models import fcn32s
        >>> type(plain_layers(fcn32s(num_classes=2)).get_layer("fc6")).__name__
        'Conv2D'
    """
    replaced = {fast: plain for fast, plain in _PLAIN_TWINS.items() if kinds is None or fast in kinds}

    def clone_layer(layer):
        twin = replaced.get(type(layer))
        if twin is None:
            return type(layer).from_config(layer.get_config())
        return twin.from_config({key: value for key, value in layer.get_config().items() if key != "algorithm"})

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone
