"""The reference's 100-pixel pad, computed without convolving its constant margin.

conv1_1 pads the image with 100 zeros on every side, so at 500x500 the first
three VGG16 blocks run on 700x700 maps of which the image reaches only about
half. Away from the image and from the map's outer edge every such map is one
constant per channel (a convolution of a constant is a constant), and near the
outer edge it does not depend on the image at all. So the fast trunk computes:

- the *core*: only the windows the image reaches, each convolution fed its
  input bordered with the constant it would read there (:func:`constant_border`);
- the *background*: the same layers run on a small all-zero proxy
  (:func:`margin_proxy`, about 75x75 pixels whatever the image size) whose outer
  edges behave exactly like the real map's, because its size has the same
  remainder modulo every pooling stride;

and after conv3_3 pastes the core into the background stretched to the real
map's size (:func:`paste_core`). Every output value is computed by the same
layer from the same window of values as in the reference network; the saving is
about 45% of conv1_2 ... conv3_3's arithmetic at 500x500.
"""

from __future__ import annotations

from keras import ops


def margin_proxy(image, pad: int, period: int, size: int, dtype):
    """An all-zero stand-in for the padded image: ``size`` plus the padded size's remainder modulo ``period``.

    ``period`` is the product of the pooling strides the background passes
    through, so every pooling rounds at the proxy's bottom/right edge exactly as
    on the real map. Its batch size is 1: the background is the same for every
    image.

    Example:
        >>> import numpy as np
        >>> tuple(margin_proxy(np.ones((2, 37, 50, 3), "float32"), pad=100, period=4, size=72, dtype="float32").shape)
        (1, 73, 74, 3)
    """
    shape = ops.shape(image)
    height = size + (shape[1] + 2 * pad) % period
    width = size + (shape[2] + 2 * pad) % period
    return ops.zeros((1, height, width, shape[3]), dtype=dtype)


def _center(proxy):
    """The proxy's central pixel ``(1, 1, 1, C)``: the constant far from edges and image."""
    shape = ops.shape(proxy)
    y, x = shape[1] // 2, shape[2] // 2
    return proxy[:, y : y + 1, x : x + 1, :]


def constant_border(core, proxy, before: int, after: int, multiple: int = 1):
    """Borders ``core`` with the background constant: ``before``/``after`` pixels per side.

    ``after`` grows so that the bordered size is a multiple of ``multiple``
    (a 2x2 pooling then sees whole windows, as on the real map).

    Example:
        >>> import numpy as np
        >>> x = constant_border(np.zeros((2, 5, 6, 3), "float32"), np.ones((1, 9, 9, 3), "float32"), 1, 0, multiple=2)
        >>> tuple(x.shape), float(x[0, 0, 0, 0]), float(x[0, 1, 1, 0])
        ((2, 6, 8, 3), 1.0, 0.0)
    """
    constant = _center(proxy)
    shape = ops.shape(core)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]

    def extent(size):
        return before + size + after + (-(before + size + after)) % multiple

    out_h, out_w = extent(h), extent(w)
    x = ops.concatenate([ops.broadcast_to(constant, (n, h, before, c)), core,
                         ops.broadcast_to(constant, (n, h, out_w - w - before, c))], axis=2)
    return ops.concatenate([ops.broadcast_to(constant, (n, before, out_w, c)), x,
                            ops.broadcast_to(constant, (n, out_h - h - before, out_w, c))], axis=1)


def paste_core(core, proxy, image, offset: int, pad: int, shrink: int, pools: int):
    """The full map: the background stretched to the real size, ``core`` pasted at ``offset``.

    The real map's size follows from the image's: ``+ 2 * pad - shrink`` (the
    padded first convolution), then halved with rounding up ``pools`` times.
    The background is stretched by repeating its central row and column, which
    lie in the constant region; its halves keep the edge effects.

    Example:
        >>> import numpy as np
        >>> core, proxy = np.ones((2, 135, 135, 4), "float32"), np.zeros((1, 18, 18, 4), "float32")
        >>> tuple(paste_core(core, proxy, np.zeros((2, 500, 500, 3)), 20, pad=100, shrink=2, pools=2).shape)
        (2, 175, 175, 4)
    """

    def full_size(size):
        size = size + 2 * pad - shrink
        for _ in range(pools):
            size = (size + 1) // 2
        return size

    core_shape, image_shape = ops.shape(core), ops.shape(image)
    n, h, w = core_shape[0], core_shape[1], core_shape[2]
    background = _stretch(_stretch(proxy, 1, full_size(image_shape[1])), 2, full_size(image_shape[2]))
    background = ops.broadcast_to(background, (n, *ops.shape(background)[1:]))
    o = offset  # the same on both axes: the pad is symmetric
    band = ops.concatenate([background[:, o : o + h, :o], core, background[:, o : o + h, o + w :]], axis=2)
    return ops.concatenate([background[:, :o], band, background[:, o + h :]], axis=1)


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
