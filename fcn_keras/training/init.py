"""The recipe's model and its initialisation: ImageNet, nothing, or a previous stage's layers by name."""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import keras

from fcn_keras.models import SegmentationModel, build_fcn
from fcn_keras.models.architectures import build
from fcn_keras.recipes import FCN_ARCHITECTURES, Recipe, RecipeError


def iter_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer of ``model``, depth first, including the layers of nested models (a backbone).

    Walks the public ``Model.layers`` of each nested model; each layer comes once.

    Example:
        >>> inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")], name="inner")
        >>> outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(1, name="out")])
        >>> [layer.name for layer in iter_layers(outer)]
        ['inner', 'd', 'out']
    """
    seen: set[int] = set()

    def walk(parent: keras.Model) -> Iterator[keras.layers.Layer]:
        for layer in parent.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            yield layer
            if isinstance(layer, keras.Model):
                yield from walk(layer)

    return walk(model)


def build_model(recipe: Recipe, init: str | os.PathLike | None = None,
                class_names: Sequence[str] | None = None, palette=None) -> SegmentationModel:
    """The recipe's model, initialised from ``init`` (default: the recipe's ``[init] source``).

    ``init`` is ``"imagenet"`` (or a local copy of keras.applications' ImageNet
    ``.h5`` file), ``"none"``, or a ``.keras`` model file whose
    layers are copied by name (:func:`init_from_model`; the staged-training
    init of FCN-16s from FCN-32s and FCN-8s from FCN-16s). The recipe's
    BatchNorm momentum is applied by :func:`fcn_keras.training.batchnorm.settle_batchnorm`
    (:func:`~fcn_keras.training.train` calls it). ``class_names`` and ``palette`` name and colour the
    classes (default ``"class 0"`` ... and the VOC colour map; :func:`~fcn_keras.training.train` passes
    the dataset's).

    Example:
        >>> from fcn_keras.recipes import load_recipe
        >>> model = build_model(load_recipe("tiny_synthetic"), init="none")
        >>> model.name, model.class_names
        ('fcn8s_mobilenet_v2', ('class 0', 'class 1', 'class 2', 'class 3'))
    """
    m = recipe.model
    source = str(init if init is not None else recipe.init.source)
    if source.startswith("recipe:"):
        raise ValueError(
            f"{recipe.source}: [init] source = {source!r} is a previous stage; pass its model file, "
            f"e.g. train(..., init='runs/{source[7:]}/model.keras')"
        )
    # ImageNet weights: downloaded, or a local copy of keras.applications' file (.h5 with top, for VGG16).
    imagenet = source == "imagenet" or (source.endswith(".h5") and not source.endswith(".keras"))
    weights = source if imagenet else None
    if m.architecture in FCN_ARCHITECTURES:
        model = build_fcn(m.architecture, num_classes=m.num_classes, trainable_upsampling=m.trainable_upsampling,
                          weights=weights, backbone=m.backbone, class_names=class_names, palette=palette)
    else:
        model = _build_family_member(recipe, weights, class_names, palette)
    if not imagenet and source != "none":
        init_from_model(model, source)
    return model



def _build_family_member(recipe: Recipe, weights, class_names, palette) -> SegmentationModel:
    m, where = recipe.model, f"{recipe.source}: [model]"
    if m.trainable_upsampling:
        raise RecipeError(f"{where} trainable_upsampling is an FCN argument; {m.architecture} has no such option")
    try:
        return build(m.architecture, num_classes=m.num_classes, weights=weights, alpha=m.alpha,
                     class_names=class_names, palette=palette, **m.options)
    except TypeError as exc:  # an option the builder does not take
        raise RecipeError(f"{where} options = {m.options!r} do not fit {m.architecture}: {exc}") from None
    except ValueError as exc:
        raise RecipeError(f"{where} {exc}") from None


def init_from_model(model: keras.Model, source: keras.Model | str | os.PathLike) -> list[str]:
    """Copies every layer of ``source`` that ``model`` has by name; returns the copied names.

    New layers of ``model`` (FCN-16s' ``score_pool4`` when initialised from
    FCN-32s) keep their initialisation — zero for score layers, bilinear for
    upsampling. Raises ``ValueError`` listing the layers whose shapes do not
    fit (another number of classes or backbone), or when no layer is shared.

    Example:
        >>> fcn16 = build_fcn("fcn16s", num_classes=3, backbone="mobilenet_v2")
        >>> "score_fr" in init_from_model(fcn16, build_fcn("fcn32s", num_classes=3, backbone="mobilenet_v2"))
        True
    """
    where = str(source) if not isinstance(source, keras.Model) else f"model {source.name!r}"
    if not isinstance(source, keras.Model):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"init checkpoint {where} does not exist")
        source = keras.models.load_model(source, compile=False)
    own = {layer.name: layer for layer in model.layers if layer.weights}
    misfits, pending = [], []
    for layer in source.layers:
        if not layer.weights or layer.name not in own:
            continue
        values = layer.get_weights()
        target = own[layer.name]
        expected = [tuple(w.shape) for w in target.weights]
        if expected != [v.shape for v in values]:
            misfits.append(f"{layer.name} (checkpoint {[v.shape for v in values]}, model {expected})")
        else:
            pending.append((target, values))
    if misfits:
        raise ValueError(f"init checkpoint {where} does not fit {model.name}: these layers differ in shape: "
                         + "; ".join(misfits))
    if not pending:
        raise ValueError(f"init checkpoint {where} shares no layer with {model.name} "
                         f"(checkpoint layers: {[l.name for l in source.layers if l.weights][:8]}...)")
    for target, values in pending:
        target.set_weights(values)
    return [target.name for target, _ in pending]
