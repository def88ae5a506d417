"""The FCN heads of net.py as a table: which pooled features are scored and fused, and how.

:data:`HEADS` describes the four reference models; :func:`head_layers` defines
their layers (by the reference's names) and :func:`fcn_head` wires them. The
same wiring builds the functional graph and runs the fast formulation.

Example:
    >>> [skip.score for skip in HEADS["fcn8s"].skips], HEADS["fcn8s"].upsample
    (['score_pool4', 'score_pool3'], 'upscore8')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from keras import layers

from fcn_keras.models.layers import BilinearUpsamplingInitializer, CropToReference, Scale


@dataclass(frozen=True)
class Skip:
    """A skip from a finer feature: score it, crop it to the upsampled coarser scores, sum."""

    score: str  # the 1x1 score layer, named after its source: "score_pool4" scores pool4
    stride: int  # stride of the source feature
    upsample: str  # the 2x upsampling applied to the coarser scores first
    offset: int  # reference crop offset of the scores against the upsampled ones
    scale: float | None = None  # at-once: fixed scaling of the source before scoring

    @property
    def source(self) -> str:
        return self.score.removeprefix("score_")


@dataclass(frozen=True)
class Head:
    skips: tuple[Skip, ...]
    upsample: str  # the final upsampling
    factor: int  # its stride (kernel 2 * factor)
    offset: int  # reference crop offset against the input


_POOL4 = Skip("score_pool4", 16, "upscore2", 5)
_POOL3 = Skip("score_pool3", 8, "upscore_pool4", 9)

HEADS: dict[str, Head] = {
    "fcn32s": Head((), "upscore", 32, 19),
    "fcn16s": Head((_POOL4,), "upscore16", 16, 27),
    "fcn8s": Head((_POOL4, _POOL3), "upscore8", 8, 31),
    "fcn8s_atonce": Head((Skip(**{**_POOL4.__dict__, "scale": 0.01}), Skip(**{**_POOL3.__dict__, "scale": 1e-4})),
                         "upscore8", 8, 31),
}


def fcn_head(head: Head, features: dict, image, layer: Callable[[str], Callable], reference: bool):
    """net.py's head over ``features`` (by stride); ``layer(name)`` is the callable of each named layer.

    The same wiring builds the functional graph (``layer`` creates the layers)
    and runs the fast formulation (``layer`` looks them up in a built model).

    Example:
        >>> import keras
        >>> image = keras.Input((64, 64, 3))
        >>> features = {s: keras.Input((64 // s, 64 // s, 8)) for s in (8, 16, 32)}
        >>> table = head_layers(HEADS["fcn8s"], 3, reference=False, trainable_upsampling=False)
        >>> fcn_head(HEADS["fcn8s"], features, image, table.__getitem__, reference=False).shape
        (None, 64, 64, 3)
    """
    scores = layer("score_fr")(features[32])
    for skip in head.skips:
        upsampled = layer(skip.upsample)(scores)
        source = features[skip.stride]
        if skip.scale is not None:
            source = layer(f"scale_{skip.source}")(source)
        skip_scores = layer(skip.score)(source)
        if reference:
            skip_scores = layer(f"{skip.score}c")([skip_scores, upsampled])
        scores = layer(f"fuse_{skip.source}")([upsampled, skip_scores])
    # The final crop also removes the non-reference backbones' bottom/right padding.
    return layer("score")([layer(head.upsample)(scores), image])


def head_layers(head: Head, num_classes: int, reference: bool, trainable_upsampling: bool) -> dict:
    """The head's layers by name, as the reference defines them (``reference=False``: padded backbones).

    Example:
        >>> sorted(head_layers(HEADS["fcn16s"], 21, reference=True, trainable_upsampling=False))
        ['fuse_pool4', 'score', 'score_fr', 'score_pool4', 'score_pool4c', 'upscore16', 'upscore2']
    """

    def upsampling(name, factor):
        # Bilinear, channel-diagonal, no bias; fixed (lr_mult 0) in the reference.
        return layers.Conv2DTranspose(num_classes, 2 * factor, strides=factor, padding="valid" if reference else "same",
                                      use_bias=False, kernel_initializer=BilinearUpsamplingInitializer(),
                                      trainable=trainable_upsampling, name=name)

    def score(name):
        return layers.Conv2D(num_classes, 1, kernel_initializer="zeros", bias_initializer="zeros", name=name)

    table = {"score_fr": score("score_fr")}
    for skip in head.skips:
        table[skip.upsample] = upsampling(skip.upsample, 2)
        if skip.scale is not None:
            table[f"scale_{skip.source}"] = Scale(skip.scale, name=f"scale_{skip.source}")
        table[skip.score] = score(skip.score)
        if reference:
            table[f"{skip.score}c"] = CropToReference(skip.offset, name=f"{skip.score}c")
        table[f"fuse_{skip.source}"] = layers.Add(name=f"fuse_{skip.source}")
    table[head.upsample] = upsampling(head.upsample, head.factor)
    # float32 logits under any mixed-precision policy.
    table["score"] = CropToReference(head.offset if reference else 0, dtype="float32", name="score")
    return table
