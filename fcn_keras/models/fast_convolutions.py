"""Exact, faster formulations of two convolutions FCNs spend their time on.

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
        >>> layer(np.ones((1, 5, 6, 4), "float32")).shape
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
        >>> up(np.ones((1, 5, 5, 3), "float32")).shape
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



_PLAIN_TWINS = {PatchMatmulConv2D: keras.layers.Conv2D, DiagonalConv2DTranspose: keras.layers.Conv2DTranspose}


def plain_layers(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with every fast layer replaced by the plain Keras layer, same weights.

    For checking the fast formulations against the plain ones, and for
    measuring what they gain.

    Example:
        >>> from fcn_keras.models import fcn32s
        >>> type(plain_layers(fcn32s(num_classes=2)).get_layer("fc6")).__name__
        'Conv2D'
    """
    clone = keras.models.clone_model(
        model, clone_function=lambda layer: _PLAIN_TWINS.get(type(layer), type(layer)).from_config(layer.get_config())
    )
    clone.set_weights(model.get_weights())
    return clone
