"""Unpooling by max-pooling switches (SegNet's ``Upsample``, DeconvNet's ``UNPOOLING``), in builtin ops.

SegNet and DeconvNet remember where each 2x2/stride-2 max pooling took its
maximum (the "switches", Caffe's ``pool*_mask``) and later put decoder values
back at exactly those positions, zeros elsewhere. ``tf.nn.max_pool_with_argmax``
is not a TFLite builtin and is TensorFlow only, so :class:`Unpooling2D` keeps no
indices: it recomputes the switches from the tensor that went into the pooling,
with strided slices, maxima, comparisons and reshapes, which every Keras
backend and TFLite's builtin op set have.

The switches are Caffe's (``pooling_layer.cpp``/``.cu``, used by caffe-segnet
and DeconvNet's Caffe): the maximum is updated only on a strictly greater
value, so among equal maxima the *first* position of the window in row-major
order wins, and exactly one position per window gets a value. Pooling rounds
up (Caffe's ceil mode): a map of odd height or width has a partial last
window, which ``keras.layers.MaxPooling2D(2, 2, padding="same")`` computes the
same way (its padding is at the bottom/right and never wins), and the unpooled
map has the pooled input's own size (SegNet's ``upsample_h``/``upsample_w``,
e.g. 23 -> 45 for CamVid's 360x480 images).
"""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "fcn_keras"


def _quarters(x):
    # The four positions of every 2x2 window as maps of the pooled size, in row-major order: (0,0), (0,1),
    # (1,0), (1,1). A -inf row/column at the bottom/right completes the partial windows of odd sizes (Caffe's
    # ceil mode clips them) without ever being a maximum.
    size = ops.shape(x)
    h, w = (size[1] + 1) // 2, (size[2] + 1) // 2
    x = ops.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=float("-inf"))
    return [x[:, r : r + 2 * h : 2, c : c + 2 * w : 2, :] for r in (0, 1) for c in (0, 1)]


def _unpool(values, x):
    # Caffe's max pooling updates only on a strictly greater value, so each window's first maximum in
    # row-major order takes the value; the later positions take it only if no earlier one holds the maximum.
    quarters = _quarters(x)
    maximum = ops.maximum(ops.maximum(quarters[0], quarters[1]), ops.maximum(quarters[2], quarters[3]))
    zeros = ops.zeros_like(values)
    taken = None
    placed = []
    for quarter in quarters:
        here = ops.equal(quarter, maximum)
        if taken is not None:
            here = ops.logical_and(here, ops.logical_not(taken))
        taken = here if taken is None else ops.logical_or(taken, here)
        placed.append(ops.where(here, values, zeros))
    # Interleave the four maps back into the 2h x 2w grid, then crop to the input's size.
    n, h, w, c = ops.shape(values)
    top = ops.reshape(ops.stack(placed[:2], axis=3), (n, h, 2 * w, c))
    bottom = ops.reshape(ops.stack(placed[2:], axis=3), (n, h, 2 * w, c))
    grid = ops.reshape(ops.stack([top, bottom], axis=2), (n, 2 * h, 2 * w, c))
    size = ops.shape(x)
    return grid[:, : size[1], : size[2], :]


def switches(pooled_input):
    """A 0/1 map of ``pooled_input``'s shape: 1 where Caffe's 2x2/stride-2 max pooling takes each window's maximum.

    Exactly one position per window (the first maximum in row-major order),
    in the input's dtype.

    Example:
        >>> import numpy as np
        >>> x = np.array([[3, 3, 1], [3, 0, 2], [5, 5, 5]], "float32").reshape(1, 3, 3, 1)
        >>> keras.ops.convert_to_numpy(switches(x))[0, :, :, 0].astype(int).tolist()
        [[1, 0, 0], [0, 0, 1], [1, 0, 1]]
    """
    x = ops.convert_to_tensor(pooled_input)
    return _unpool(ops.ones_like(_quarters(x)[0]), x)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Unpooling2D(keras.layers.Layer):
    """Places ``values`` at the switches of the 2x2/stride-2 max pooling of ``pooled_input``, zeros elsewhere.

    Called on ``[values, pooled_input]``: ``pooled_input`` (N, H, W, C) is the
    map that went *into* the pooling (SegNet's ``conv5_3``, not ``pool5``),
    ``values`` (N, ceil(H/2), ceil(W/2), C) is the decoder's map of the pooled
    size. The result has ``pooled_input``'s shape and ``values``' dtype; each
    value lands on the position where Caffe's max pooling found its window's
    maximum (:func:`switches`). Gradients flow to ``values`` only, as through
    Caffe's ``Upsample`` layer.

    Example:
        >>> import numpy as np
        >>> encoder = np.array([[1, 4, 2], [3, 0, 9], [7, 7, 8]], "float32").reshape(1, 3, 3, 1)
        >>> values = np.array([[10, 20], [30, 40]], "float32").reshape(1, 2, 2, 1)
        >>> out = Unpooling2D()([values, encoder])
        >>> keras.ops.convert_to_numpy(out)[0, :, :, 0].astype(int).tolist()
        [[0, 10, 0], [0, 0, 20], [30, 0, 40]]
    """

    def call(self, inputs):
        values, pooled_input = inputs
        values = ops.convert_to_tensor(values, dtype=self.compute_dtype)
        pooled_input = ops.convert_to_tensor(pooled_input, dtype=self.compute_dtype)
        return _unpool(values, pooled_input)

    def compute_output_shape(self, input_shapes):
        values_shape, input_shape = (tuple(s) for s in input_shapes)
        if len(values_shape) != 4 or len(input_shape) != 4:
            raise ValueError(f"Unpooling2D takes [values, pooled_input] of rank 4, got shapes {input_shapes}")
        for axis, name in ((1, "height"), (2, "width")):
            if values_shape[axis] is not None and input_shape[axis] is not None:
                if values_shape[axis] != -(-input_shape[axis] // 2):
                    raise ValueError(
                        f"Unpooling2D: values' {name} {values_shape[axis]} is not the 2x2/2 ceil-mode pooled "
                        f"{name} of pooled_input ({input_shape[axis]} -> {-(-input_shape[axis] // 2)}); "
                        f"shapes {values_shape} and {input_shape}"
                    )
        if values_shape[3] is not None and input_shape[3] is not None and values_shape[3] != input_shape[3]:
            raise ValueError(f"Unpooling2D: values and pooled_input need the same channels, got shapes "
                             f"{values_shape} and {input_shape}")
        return (values_shape[0], input_shape[1], input_shape[2], values_shape[3])
