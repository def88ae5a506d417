"""Resampling layers of runtime-sized maps: adaptive average pooling to fixed bins, and Caffe's ``Interp``.

PSPNet's pyramid pooling averages the feature map into 1x1, 2x2, 3x3 and 6x6
bins and resizes each result back to the map's size, whatever that size is.
Both are linear maps along each axis, so both are computed here as two matrix
products with matrices built from the runtime shape: only ``range``,
arithmetic, comparisons and ``matmul`` — operations every Keras backend has and
that TFLite runs as builtins, for any input size (no ``tf.image`` or
``AdaptiveAvgPool`` kernels needed).

Example:
    >>> import numpy as np
    >>> x = np.arange(5.0).reshape(1, 5, 1, 1)
    >>> keras.ops.convert_to_numpy(AdaptiveAveragePooling2D(2)(x))[0, :, 0, 0].tolist()
    [1.0, 3.0]
"""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "fcn_keras"


def adaptive_bins(size: int, bins: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` rows of each of ``bins`` bins over ``size`` rows (PyTorch's adaptive pooling).

    ``start = floor(i * size / bins)``, ``end = ceil((i + 1) * size / bins)``:
    neighbouring bins overlap by a row where ``bins`` does not divide ``size``,
    every row is in some bin, and a map smaller than ``bins`` repeats rows. On
    PSPNet's 60x60 map (473x473 input) these are the release's fixed pooling
    windows: kernel and stride 60, 30, 20, 10.

    Example:
        >>> adaptive_bins(5, 3), adaptive_bins(60, 6)[:2]
        ([(0, 2), (1, 4), (3, 5)], [(0, 10), (10, 20)])
    """
    if size < 1 or bins < 1:
        raise ValueError(f"adaptive_bins: size and bins must be >= 1, got size={size}, bins={bins}")
    return [((i * size) // bins, -(-((i + 1) * size) // bins)) for i in range(bins)]


def _pooling_matrix(size, bins: int):
    """``(bins, size)`` float32: row ``i`` averages :func:`adaptive_bins`' bin ``i`` of a runtime ``size``."""
    # ``size`` stays as ops.shape gives it: a Python int where static (JAX traces need it concrete).
    index = ops.arange(bins, dtype="int32")
    start = ops.floor_divide(index * size, bins)
    end = ops.floor_divide((index + 1) * size + (bins - 1), bins)
    rows = ops.arange(size, dtype="int32")[None, :]
    inside = ops.logical_and(ops.greater_equal(rows, start[:, None]), ops.less(rows, end[:, None]))
    return ops.cast(inside, "float32") / ops.cast(end - start, "float32")[:, None]


def _interp_matrix(out_size, in_size):
    """``(out_size, in_size)`` float32: bilinear align-corners weights, as Caffe's ``caffe_cpu_interp2`` computes them.

    Output row ``o`` reads source row ``r = o * (in - 1) / (out - 1)`` (0 for a
    single output row): ``(1 - t) * x[floor(r)] + t * x[min(floor(r) + 1, in - 1)]``
    with ``t = r - floor(r)``, the ratio and product in float32 as in Caffe.
    """
    ratio = ops.cast(in_size - 1, "float32") / ops.cast(ops.maximum(out_size - 1, 1), "float32")
    source = ops.cast(ops.arange(out_size, dtype="int32"), "float32") * ratio
    low = ops.minimum(ops.cast(ops.floor(source), "int32"), in_size - 1)
    high = ops.minimum(low + 1, in_size - 1)
    weight = (source - ops.cast(low, "float32"))[:, None]
    columns = ops.arange(in_size, dtype="int32")[None, :]
    return (ops.cast(ops.equal(columns, low[:, None]), "float32") * (1.0 - weight)
            + ops.cast(ops.equal(columns, high[:, None]), "float32") * weight)


def _apply_separable(x, rows, columns):
    """``x`` ``(N, H, W, C)`` mapped by ``rows`` ``(H', H)`` along the height and ``columns`` ``(W', W)`` along the width."""
    shape = ops.shape(x)
    channels = x.shape[-1] if x.shape[-1] is not None else shape[3]
    rows, columns = ops.cast(rows, x.dtype), ops.cast(columns, x.dtype)
    out_h, out_w = ops.shape(rows)[0], ops.shape(columns)[0]
    # One matmul per axis over (N, axis, everything else): batch-broadcast 3-D products, builtin in TFLite.
    y = ops.matmul(rows[None], ops.reshape(x, (-1, shape[1], shape[2] * channels)))
    y = ops.transpose(ops.reshape(y, (-1, out_h, shape[2], channels)), (0, 2, 1, 3))
    y = ops.matmul(columns[None], ops.reshape(y, (-1, shape[2], out_h * channels)))
    return ops.transpose(ops.reshape(y, (-1, out_w, out_h, channels)), (0, 2, 1, 3))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Averages each of ``bins x bins`` cells of a map of any size (:func:`adaptive_bins` along each axis).

    ``(N, H, W, C) -> (N, bins, bins, C)``; PSPNet's ``conv5_3_pool1`` ...
    ``conv5_3_pool6``, which the release writes as fixed average pooling for its
    60x60 map.

    Example:
        >>> import numpy as np
        >>> y = AdaptiveAveragePooling2D(3)(np.ones((2, 7, 4, 5)))
        >>> tuple(y.shape), float(keras.ops.convert_to_numpy(y).max())
        ((2, 3, 3, 5), 1.0)
    """

    def __init__(self, bins: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(bins, bool) or int(bins) != bins or bins < 1:
            raise ValueError(f"AdaptiveAveragePooling2D: bins must be a positive integer, got {bins!r}")
        self.bins = int(bins)

    def call(self, inputs):
        shape = ops.shape(inputs)
        return _apply_separable(inputs, _pooling_matrix(shape[1], self.bins), _pooling_matrix(shape[2], self.bins))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bins, self.bins, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "bins": self.bins}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Interp(keras.layers.Layer):
    """Caffe's ``Interp`` layer (DeepLab, PSPNet): bilinear resizing with aligned corners, to a reference's size.

    ``Interp()([x, reference])`` resizes ``x`` to the runtime height and width of
    ``reference``: the corner pixels of input and output coincide, as in
    ``caffe_cpu_interp2``. (Keras' ``Resizing`` and ``tf.image.resize`` align
    pixel centres instead.) With the reference ``8 (h - 1) + 1`` high, this is
    ``Interp`` with ``zoom_factor: 8``.

    Example:
        >>> import numpy as np
        >>> x, reference = np.array([0.0, 3.0]).reshape(1, 2, 1, 1), np.zeros((1, 4, 1, 1))
        >>> keras.ops.convert_to_numpy(Interp()([x, reference]))[0, :, 0, 0].tolist()
        [0.0, 1.0, 2.0, 3.0]
    """

    def call(self, inputs):
        x, reference = inputs
        x_shape, ref_shape = ops.shape(x), ops.shape(reference)
        return _apply_separable(x, _interp_matrix(ref_shape[1], x_shape[1]), _interp_matrix(ref_shape[2], x_shape[2]))

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

