"""The reference's 100-pixel pad, computed without convolving its constant margin.

conv1_1 pads the image with 100 zeros on every side, so at 500x500 the first
three VGG16 blocks run on 700x700 maps of which the image reaches only about
half. Away from the image and from the map's outer edge every such map is one
constant per channel (a convolution of a constant is a constant), and near the
outer edge it does not depend on the image at all. So the trunk computes:

- the *core*: only the windows the image reaches, each convolution fed its
  input bordered with the constant it would read there (:class:`ConstantBorder`);
- the *background*: the same layers run on a small all-zero "margin proxy"
  (:class:`MarginProxy`, about 75x75 pixels whatever the image size) whose
  outer edges behave exactly like the real map's, because its size has the
  same remainder modulo every pooling stride;

and after conv3_3 pastes the core into the background stretched to the real
map's size (:class:`PasteCore`). Every output value is computed by the same
layer from the same window of values as in the plain network; the saving is
about 45% of conv1_2 ... conv3_3's arithmetic at 500x500.

These are wiring layers of :func:`fcn_keras.models.backbones.vgg16_trunk`; they
hold no weights.
"""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "fcn_keras"


def _center(proxy):
    """The proxy's central pixel ``(1, 1, 1, C)``: the constant far from edges and image."""
    shape = ops.shape(proxy)
    y, x = shape[1] // 2, shape[2] // 2
    return proxy[:, y : y + 1, x : x + 1, :]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MarginProxy(keras.layers.Layer):
    """An all-zero stand-in for the padded image: ``size`` plus the padded size's remainder modulo ``period``.

    ``period`` is the product of the pooling strides the background passes
    through, so every pooling rounds at the proxy's bottom/right edge exactly as
    on the real map. The batch size is 1: the background is the same for every
    image of a batch.

    Example:
        >>> import numpy as np
        >>> tuple(MarginProxy(pad=100, period=4, size=72)(np.ones((2, 37, 50, 3), "float32")).shape)
        (1, 73, 74, 3)
    """

    def __init__(self, pad: int, period: int, size: int, **kwargs):
        super().__init__(**kwargs)
        self.pad, self.period, self.size = int(pad), int(period), int(size)

    def call(self, image):
        shape = ops.shape(image)
        height = self.size + (shape[1] + 2 * self.pad) % self.period
        width = self.size + (shape[2] + 2 * self.pad) % self.period
        return ops.zeros((1, height, width, shape[3]), dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        sizes = [None if s is None else self.size + (s + 2 * self.pad) % self.period for s in input_shape[1:3]]
        return (1, *sizes, input_shape[3])


    def get_config(self) -> dict:
        return {**super().get_config(), "pad": self.pad, "period": self.period, "size": self.size}

@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantBorder(keras.layers.Layer):
    """Borders the core ``[core, proxy]`` with the background constant: ``before``/``after`` pixels per side.

    ``after`` grows so that the bordered size is a multiple of ``multiple``
    (a 2x2 pooling then sees whole windows, as on the real map).

    Example:
        >>> import numpy as np
        >>> border = ConstantBorder(1, 0, multiple=2)
        >>> tuple(border([np.zeros((2, 5, 6, 3), "float32"), np.ones((1, 9, 9, 3), "float32")]).shape)
        (2, 6, 8, 3)
    """

    def __init__(self, before: int, after: int, multiple: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.before, self.after, self.multiple = int(before), int(after), int(multiple)

    def _extent(self, size):
        return self.before + size + self.after + (-(self.before + size + self.after)) % self.multiple

    def call(self, inputs):
        core, proxy = inputs
        constant = _center(proxy)
        shape = ops.shape(core)
        n, h, w, c = shape[0], shape[1], shape[2], shape[3]
        out_h, out_w = self._extent(h), self._extent(w)
        rows = [ops.broadcast_to(constant, (n, h, self.before, c)), core,
                ops.broadcast_to(constant, (n, h, out_w - w - self.before, c))]
        x = ops.concatenate(rows, axis=2)
        columns = [ops.broadcast_to(constant, (n, self.before, out_w, c)), x,
                   ops.broadcast_to(constant, (n, out_h - h - self.before, out_w, c))]
        return ops.concatenate(columns, axis=1)

    def compute_output_shape(self, input_shapes):
        shape = input_shapes[0]
        return (shape[0], *[None if s is None else self._extent(s) for s in shape[1:3]], shape[3])


    def get_config(self) -> dict:
        return {**super().get_config(), "before": self.before, "after": self.after, "multiple": self.multiple}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PasteCore(keras.layers.Layer):
    """``[core, proxy, image]`` -> the full map: the proxy stretched to the real size, the core pasted at ``offset``.

    The real map's size follows from the image's: ``+ 2 * pad - shrink`` (the
    padded first convolution), then halved with rounding up ``pools`` times.
    The proxy is stretched by repeating its central row and column, which lie
    in the constant region; its halves keep the edge effects.

    Example:
        >>> import numpy as np
        >>> paste = PasteCore(offset=20, pad=100, shrink=2, pools=2)
        >>> core, proxy = np.ones((2, 135, 135, 4), "float32"), np.zeros((1, 18, 18, 4), "float32")
        >>> tuple(paste([core, proxy, np.zeros((2, 500, 500, 3), "float32")]).shape)
        (2, 175, 175, 4)
    """

    def __init__(self, offset: int, pad: int, shrink: int, pools: int, **kwargs):
        super().__init__(**kwargs)
        self.offset, self.pad, self.shrink, self.pools = int(offset), int(pad), int(shrink), int(pools)

    def _full_size(self, size):
        size = size + 2 * self.pad - self.shrink
        for _ in range(self.pools):
            size = (size + 1) // 2
        return size

    def call(self, inputs):
        core, proxy, image = inputs
        core_shape, image_shape = ops.shape(core), ops.shape(image)
        n, h, w = core_shape[0], core_shape[1], core_shape[2]
        background = _stretch(_stretch(proxy, 1, self._full_size(image_shape[1])), 2, self._full_size(image_shape[2]))
        background = ops.broadcast_to(background, (n, *ops.shape(background)[1:]))
        o = self.offset  # the same on both axes: the pad is symmetric
        band = ops.concatenate([background[:, o : o + h, :o], core, background[:, o : o + h, o + w :]], axis=2)
        return ops.concatenate([background[:, :o], band, background[:, o + h :]], axis=1)

    def compute_output_shape(self, input_shapes):
        core_shape, image_shape = input_shapes[0], input_shapes[2]
        return (core_shape[0], *[None if s is None else self._full_size(s) for s in image_shape[1:3]], core_shape[3])


    def get_config(self) -> dict:
        return {**super().get_config(), "offset": self.offset, "pad": self.pad, "shrink": self.shrink,
                "pools": self.pools}


def _stretch(x, axis: int, size):
    """``x`` grown to ``size`` along ``axis`` by repeating its central slice."""
    length = ops.shape(x)[axis]
    mid = length // 2
    head = (slice(None),) * axis
    center = x[head + (slice(mid, mid + 1),)]
    repeated_shape = list(ops.shape(x))
    repeated_shape[axis] = size - length + 1
    return ops.concatenate(
        [x[head + (slice(0, mid),)], ops.broadcast_to(center, repeated_shape), x[head + (slice(mid + 1, None),)]],
        axis=axis,
    )
