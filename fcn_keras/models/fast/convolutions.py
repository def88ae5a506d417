"""Exact, faster arithmetic for the convolutions FCNs spend their time on.

Pure functions of an input and a layer's own kernel (``keras.ops`` only, every
backend): they rearrange the arithmetic, never the result, which equals the
plain Keras layer's to float rounding.

- :func:`patch_matmul_conv`: a valid, stride-1 convolution as ONE matrix product
  over its ``kh*kw*cin`` input patches. fc6 (a 7x7 convolution with 4096
  filters over the small pool5 map) runs several times below the machine's
  matmul rate as a convolution on CPU (oneDNN and Eigen pick poor schedules for
  a 7x7x512 kernel over a ~20x20 map) and close to it as a matmul.
- :func:`diagonal_conv_transpose`: a channel-diagonal transposed convolution (the
  reference's fixed bilinear upsampling: class ``i`` upsamples into class ``i``
  only) per channel, as a depthwise convolution computing all ``stride**2``
  output phases at once, interleaved afterwards. ``channels`` times less
  arithmetic than the dense ``C x C`` transposed convolution.
- :func:`winograd_conv`: a 3x3, stride-1, "same" convolution with Winograd's
  minimal filtering F(4x4, 3x3) (Lavin and Gray, 2016): 4x4 output tiles from
  6x6 input tiles with 36 products per tile and channel pair instead of 144, as
  36 independent matrix products. The transforms cost memory traffic, so
  :func:`winograd_pays` uses it only where the channels are wide enough.
"""

from __future__ import annotations

import math

import numpy as np
import keras
from keras import ops


def patch_matmul_conv(inputs, kernel):
    """``conv2d(inputs, kernel, padding="valid")`` (stride 1, channels last) as one matmul over patches.

    The kernel ``(kh, kw, cin, filters)`` read as ``(kh * kw * cin, filters)``
    has exactly the patches' ``(dy, dx, channel)`` row order.

    Example:
        >>> import numpy as np
        >>> x, k = np.ones((1, 5, 6, 4), "float32"), np.ones((3, 3, 4, 8), "float32")
        >>> tuple(patch_matmul_conv(x, k).shape), float(patch_matmul_conv(x, k)[0, 0, 0, 0])
        ((1, 3, 4, 8), 36.0)
    """
    kh, kw, cin, filters = kernel.shape
    shape = ops.shape(inputs)
    out_h, out_w = shape[1] - kh + 1, shape[2] - kw + 1
    patches = ops.concatenate(
        [inputs[:, dy : dy + out_h, dx : dx + out_w, :] for dy in range(kh) for dx in range(kw)], axis=-1
    )
    flat = ops.reshape(patches, (-1, kh * kw * cin))
    outputs = ops.matmul(flat, ops.reshape(kernel, (kh * kw * cin, filters)))
    return ops.reshape(outputs, (shape[0], out_h, out_w, filters))


def diagonal_conv_transpose(inputs, kernel, strides: tuple[int, int], fallback):
    """``conv2d_transpose(inputs, kernel, strides, padding="valid")`` per channel while ``kernel`` is diagonal.

    ``kernel`` is ``(k, k, C, C)`` in Keras' transposed layout. Each call checks
    (a cheap reduction) that every off-diagonal value is zero and then runs the
    per-channel form; otherwise — a kernel trained with learned upsampling, say
    — it returns ``fallback()``, the dense transposed convolution. Either way
    the result is the plain layer's.

    Example:
        >>> import numpy as np
        >>> from fcn_keras.models.layers import bilinear_kernel
        >>> k = np.einsum("ij,cd->ijcd", bilinear_kernel(4), np.eye(3)).astype("float32")
        >>> tuple(diagonal_conv_transpose(np.ones((1, 5, 5, 3), "float32"), k, (2, 2), None).shape)
        (1, 12, 12, 3)
    """
    channels = kernel.shape[2]
    off_diagonal = ops.convert_to_tensor(1.0 - np.eye(channels), dtype=kernel.dtype)
    if fallback is None:  # the caller knows the kernel is diagonal
        return _per_channel(inputs, ops.sum(kernel * (1 - off_diagonal), axis=3), strides)
    is_diagonal = ops.all(ops.equal(kernel * off_diagonal, 0))
    return ops.cond(is_diagonal,
                    lambda: _per_channel(inputs, ops.sum(kernel * (1 - off_diagonal), axis=3), strides),
                    fallback)


def _per_channel(inputs, diagonal, strides):
    """The transposed convolution with the ``(k, k, C)`` per-channel kernels ``diagonal``."""
    kh, kw, channels = diagonal.shape
    sh, sw = strides
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
    return y


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
WINOGRAD_MIN_WIDTH = 80
_CPU_TENSORFLOW = None


def winograd_pays(cin: int, filters: int, dtype: str) -> bool:
    """Whether :func:`winograd_conv` beats the direct convolution here (the ``"auto"`` rule).

    Measured on TensorFlow's CPU kernels (oneDNN), where the direct convolution
    already runs at the matmul rate: float32, CPU-only, and
    ``cin * filters / (cin + filters) >= 80``. GPU convolution libraries choose
    their own (often Winograd) algorithms; half precision would lose too much to
    the transforms' coefficients (up to 8 and 1/24).

    Example:
        >>> winograd_pays(128, 128, "float32")  # conv2_2: faster direct
        False
    """
    global _CPU_TENSORFLOW
    if cin * filters / (cin + filters) < WINOGRAD_MIN_WIDTH or dtype != "float32":
        return False
    if _CPU_TENSORFLOW is None:
        cpu_only = all(device.lower().startswith("cpu") for device in keras.distribution.list_devices())
        _CPU_TENSORFLOW = cpu_only and keras.backend.backend() == "tensorflow"
    return _CPU_TENSORFLOW


def winograd_conv(inputs, kernel):
    """``conv2d(inputs, kernel, padding="same")`` for a 3x3 stride-1 kernel, by Winograd's F(4x4, 3x3).

    The image is cut into overlapping 6x6 tiles (stride 4); each tile ``d``
    becomes ``B^T d B``, each kernel ``g`` becomes ``G g G^T``, and the 36 tile
    positions are 36 independent ``(tiles, cin) x (cin, filters)`` matrix
    products whose results ``A^T m A`` are the 4x4 output tiles: 4x fewer
    multiplications (36 for 144), float32 rounding about ten times the direct convolution's
    (relative 1e-5). Differentiable in both arguments, by its own gradient
    (:func:`_winograd_gradients`): differentiating through the tiling's slices
    and stacks cost about twice the direct convolution's backward pass.

    Example:
        >>> import numpy as np
        >>> x, k = np.ones((1, 9, 7, 4), "float32"), np.ones((3, 3, 4, 8), "float32")
        >>> y = winograd_conv(x, k)
        >>> tuple(y.shape), round(float(y[0, 4, 3, 0]), 3), round(float(y[0, 0, 0, 0]), 3)
        ((1, 9, 7, 8), 36.0, 16.0)
    """
    return _winograd_conv_with_gradient(_tensor(inputs), _tensor(kernel))


def _tensor(x):
    # A variable read inside a TensorFlow custom gradient would need a gradient of its own: read it here.
    return ops.copy(x) if isinstance(x, keras.Variable) else ops.convert_to_tensor(x)


@ops.custom_gradient
def _winograd_conv_with_gradient(inputs, kernel):
    def gradient(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return _winograd_gradients(inputs, kernel, upstream)

    return _winograd_forward(inputs, kernel), gradient


def _winograd_gradients(inputs, kernel, upstream):
    """The "same" 3x3 convolution's gradients: by input, the upstream convolved with the flipped, transposed kernel
    (itself by Winograd); by kernel, per tap ``(dy, dx)`` the shifted input's channels against the upstream's, one
    ``(cin, N*H*W) x (N*H*W, filters)`` product each: the direct convolution's arithmetic at the matmul rate."""
    flipped = ops.transpose(ops.flip(ops.flip(kernel, axis=0), axis=1), (0, 1, 3, 2))
    input_gradient = _winograd_forward(upstream, flipped)
    shape = ops.shape(inputs)
    h, w = shape[1], shape[2]
    padded = ops.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]])
    taps = [ops.einsum("nhwc,nhwf->cf", padded[:, dy : dy + h, dx : dx + w, :], upstream)
            for dy in range(3) for dx in range(3)]
    kernel_gradient = ops.reshape(ops.stack(taps, axis=0), ops.shape(kernel))
    return input_gradient, kernel_gradient


def _winograd_forward(inputs, kernel):
    """:func:`winograd_conv`'s value."""
    cin, filters = kernel.shape[2], kernel.shape[3]
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
