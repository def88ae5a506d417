"""Keras layers and initializers the FCN architectures are made of.

All are registered serializables (``package="fcn_keras"``), so models using them
save to ``.keras`` and load back with ``keras.models.load_model`` in safe mode,
without ``custom_objects``. Only ``keras`` and ``keras.ops`` are used: the layers
run on every Keras backend.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from fcn_keras.preprocessing import check_mode, preprocess

_PACKAGE = "fcn_keras"


def bilinear_kernel(size: int) -> np.ndarray:
    """The reference's 2-D bilinear interpolation kernel (surgery.py ``upsample_filt``).

    ``f = (size + 1) // 2``; ``c = f - 1`` for odd sizes, ``f - 0.5`` for even;
    ``w[i, j] = (1 - |i - c| / f) * (1 - |j - c| / f)``.

    Example:
        >>> bilinear_kernel(4)[0].tolist()
        [0.0625, 0.1875, 0.1875, 0.0625]
    """
    if size < 1:
        raise ValueError(f"bilinear_kernel: size must be >= 1, got {size}")
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.arange(size, dtype=np.float64)
    profile = 1.0 - np.abs(og - center) / factor
    return np.outer(profile, profile)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BilinearUpsamplingInitializer(keras.initializers.Initializer):
    """Initialises a ``Conv2DTranspose`` kernel to channel-diagonal bilinear upsampling.

    The kernel shape is ``(k, k, out_channels, in_channels)`` (Keras' transposed
    convolution layout); channel ``i`` upsamples into channel ``i`` and every
    off-diagonal entry is zero, as in the reference's ``interp_surgery``.

    Example:
        >>> w = BilinearUpsamplingInitializer()((4, 4, 2, 2))
        >>> float(w[0, 0, 0, 1]), float(w[1, 1, 0, 0])
        (0.0, 0.5625)
    """

    def __call__(self, shape, dtype=None):
        if len(shape) != 4 or shape[0] != shape[1]:
            raise ValueError(
                f"BilinearUpsamplingInitializer needs a square (k, k, out, in) kernel shape, got {tuple(shape)}"
            )
        kernel = np.zeros(shape, dtype=np.float64)
        filt = bilinear_kernel(shape[0])
        for channel in range(min(shape[2], shape[3])):
            kernel[:, :, channel, channel] = filt
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CropToReference(keras.layers.Layer):
    """Crops ``x`` to the runtime height and width of a reference tensor.

    ``CropToReference(offset)([x, ref])`` returns
    ``x[:, offset:offset + H_ref, offset:offset + W_ref, :]`` — the reference's
    Caffe ``Crop`` layer (axis 2). The amount left at the bottom/right depends on
    the input size, which a fixed ``Cropping2D`` cannot express.

    Example:
        >>> import numpy as np
        >>> x, ref = np.arange(36.0).reshape(1, 6, 6, 1), np.zeros((1, 3, 2, 5))
        >>> keras.ops.convert_to_numpy(CropToReference(2)([x, ref]))[0, :, :, 0].tolist()
        [[14.0, 15.0], [20.0, 21.0], [26.0, 27.0]]
    """

    def __init__(self, offset: int = 0, **kwargs):
        super().__init__(**kwargs)
        if int(offset) != offset or offset < 0:
            raise ValueError(f"CropToReference: offset must be a non-negative integer, got {offset!r}")
        self.offset = int(offset)

    def call(self, inputs):
        x, ref = inputs
        ref_shape = ops.shape(ref)
        o = self.offset
        return x[:, o : o + ref_shape[1], o : o + ref_shape[2], :]

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Scale(keras.layers.Layer):
    """Multiplies by a fixed scalar (the at-once model's ``scale_pool3``/``scale_pool4``)."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        return inputs * ops.cast(self.scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Preprocessing(keras.layers.Layer):
    """Maps RGB images with values 0-255 to a backbone's expected input, in float32.

    ``mode`` is a key of :data:`fcn_keras.preprocessing.MODES` (``"fcn"``: the
    reference FCN weights' BGR minus mean); the arithmetic is
    :func:`fcn_keras.preprocessing.preprocess`, the one definition. It always
    computes in float32 (a float16 mean subtraction would round the pixel
    values), whatever the global dtype policy.

    Example:
        >>> import numpy as np
        >>> [round(float(v), 3) for v in Preprocessing("fcn")(np.zeros((1, 1, 1, 3)))[0, 0, 0]]
        [-104.007, -116.669, -122.679]
    """

    def __init__(self, mode: str = "fcn", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mode = check_mode(mode, "Preprocessing: mode")

    def call(self, inputs):
        return preprocess(ops.cast(inputs, self.compute_dtype), self.mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PadToMultiple(keras.layers.Layer):
    """Zero-pads height and width at the bottom/right up to a multiple of ``multiple``.

    Lets backbones without the reference's 100-pixel pad (MobileNetV2, ResNet50)
    see inputs whose every stride-2 stage halves exactly; the head crops the
    padding away again, so the output keeps the input's size.
    """

    def __init__(self, multiple: int = 32, **kwargs):
        super().__init__(**kwargs)
        if int(multiple) != multiple or multiple < 1:
            raise ValueError(f"PadToMultiple: multiple must be a positive integer, got {multiple!r}")
        self.multiple = int(multiple)

    def call(self, inputs):
        shape = ops.shape(inputs)
        # (m - s % m) % m rather than (-s) % m: converters such as tf2onnx turn
        # FloorMod into a truncating Mod, wrong for negative operands.
        pad_h = (self.multiple - shape[1] % self.multiple) % self.multiple
        pad_w = (self.multiple - shape[2] % self.multiple) % self.multiple
        padded = ops.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        # Restate the static channel count: TFLite's converter loses it through a
        # pad by runtime amounts and then cannot lower the next convolution.
        channels = inputs.shape[-1] if inputs.shape[-1] is not None else shape[3]
        return ops.reshape(padded, (-1, shape[1] + pad_h, shape[2] + pad_w, channels))

    def compute_output_shape(self, input_shape):
        def padded(size):
            return None if size is None else -(-size // self.multiple) * self.multiple

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}
