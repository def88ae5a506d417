"""Training recipes: small declarative TOML files (``zoo/recipes/<name>.toml``) loaded into a checked dataclass.

A recipe says what to train (architecture, backbone, classes), from what
(``init``: ImageNet, nothing, a previous stage's checkpoint), on what data
(dataset kind, splits, crop and batch), with which loss, optimizer and
schedule, for how long, and under which mixed-precision policy. Dataset
*locations* are not part of a recipe: they differ per machine and are given to
:func:`fcn_keras.training.train`.

Example:
    >>> recipe = load_recipe("fcn32s_voc")
    >>> recipe.model.architecture, recipe.optimizer.learning_rate, recipe.loss.reduction
    ('fcn32s', 1e-10, 'sum')
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fcn_keras.resources import zoo_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FCN_ARCHITECTURES = ("fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce")
DATASETS = ("synthetic", "voc", "sbd", "prepared", "folder")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
SCHEDULES = ("fixed", "poly", "step")
OPTIMIZERS = ("caffe_sgd", "adamw")


class RecipeError(ValueError):
    """A recipe file that does not fit the schema; the message names the file and the key."""


@dataclass(frozen=True)
class ModelSection:
    architecture: str = "fcn8s"
    backbone: str = "vgg16"
    num_classes: int = 21
    trainable_upsampling: bool = False
    # > 0: overrides the BatchNorm momentum of a BN backbone (short runs from scratch; Keras' 0.99/0.999
    # leave moving statistics unusable for hundreds of steps). 0 keeps the backbone's.
    batchnorm_momentum: float = 0.0
    # The family's architectures (segnet, deeplab_largefov, ...): the width multiplier and the builder's own
    # arguments (e.g. unet's padding); checked by the builder when the model is built.
    alpha: float = 1.0
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InitSection:
    # "imagenet", "none", "recipe:<name>" (that recipe's final weights, staged training) or a weights file.
    source: str = "imagenet"


@dataclass(frozen=True)
class DataSection:
    dataset: str = "voc"
    train_split: str = "train"  # folder datasets: <root>/<split>.txt, or a split file's path
    val_split: str = "val"
    metadata: str = ""  # folder datasets: class names, colours, void value (a TOML path or a shipped name)
    batch_size: int = 1
    crop_size: list = field(default_factory=list)  # [] = native size, else [h, w]
    flip: bool = False
    scale_range: list = field(default_factory=list)  # [] = none, else [low, high]
    # synthetic datasets only: what write_synthetic_voc draws
    synthetic_images: int = 16
    synthetic_size: list = field(default_factory=lambda: [96, 128])


@dataclass(frozen=True)
class LossSection:
    reduction: str = "sum"
    class_weights: list = field(default_factory=list)  # [] = unweighted


@dataclass(frozen=True)
class OptimizerSection:
    # caffe_sgd: the reference solver (coupled L2 decay, bias multiplier). adamw: Keras' AdamW, for training
    # from scratch; momentum is its beta_1, weight_decay is decoupled and spares biases and BatchNorm.
    name: str = "caffe_sgd"
    learning_rate: float = 1e-10
    momentum: float = 0.99
    weight_decay: float = 5e-4
    bias_lr_multiplier: float = 2.0


@dataclass(frozen=True)
class ScheduleSection:
    name: str = "fixed"
    power: float = 0.9  # poly: lr * (1 - step / steps) ** power
    step_size: int = 0  # step: lr * gamma ** (step // step_size)
    gamma: float = 0.1


@dataclass(frozen=True)
class TrainingSection:
    steps: int = 100000
    steps_per_epoch: int = 1000
    validation_steps: int = 0  # 0 = the whole validation split
    mixed_precision: str = "float32"
    seed: int = 0
    deterministic: bool = False  # TensorFlow op determinism (bit-exact resume and reruns)
    checkpoint_every: int = 1000  # steps between resume checkpoints (and at every epoch end)
    # BatchNorm models: training batches the moving statistics are re-estimated from before each validation
    # (fcn_keras.training.batchnorm); 0 keeps the moving averages of training.
    batchnorm_batches: int = 16


@dataclass(frozen=True)
class Recipe:
    """A training recipe. Build one with :func:`load_recipe` or :func:`parse_recipe`."""

    name: str
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    init: InitSection = field(default_factory=InitSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    source: str = ""  # the file it was read from

    @property
    def epochs(self) -> int:
        """Number of Keras epochs: ``steps / steps_per_epoch``."""
        return self.training.steps // self.training.steps_per_epoch

    def replace(self, **sections) -> "Recipe":
        """A copy with some values changed: ``recipe.replace(training={"steps": 10})``.

        Values are checked as in a file.

        Example:
            >>> short = load_recipe("fcn32s_voc").replace(training={"steps": 20, "steps_per_epoch": 10})
            >>> short.training.steps, short.epochs, short.optimizer.learning_rate
            (20, 2, 1e-10)
        """
        data = recipe_to_dict(self)
        for section, values in sections.items():
            if isinstance(values, dict):
                data.setdefault(section, {}).update(values)
            else:
                data[section] = values
        return parse_recipe(data, name=self.name, source=self.source or "<replace>")


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Recipe)}
_SECTION_CLASSES = {
    "model": ModelSection, "init": InitSection, "data": DataSection, "loss": LossSection,
    "optimizer": OptimizerSection, "schedule": ScheduleSection, "training": TrainingSection,
}
_CHOICES = {
    ("model", "architecture"): lambda: _architectures(),
    ("data", "dataset"): DATASETS,
    ("loss", "reduction"): ("sum", "mean"),
    ("optimizer", "name"): OPTIMIZERS,
    ("schedule", "name"): SCHEDULES,
    ("training", "mixed_precision"): POLICIES,
}
_POSITIVE = {("model", "num_classes"), ("data", "batch_size"), ("training", "steps"),
             ("training", "steps_per_epoch"), ("training", "checkpoint_every"), ("data", "synthetic_images")}
_LENGTHS = {("data", "crop_size"): (0, 2), ("data", "scale_range"): (0, 2), ("data", "synthetic_size"): (2,)}


def recipe_path(name: str) -> Path:
    """The file of a shipped recipe, ``zoo/recipes/<name>.toml``.

    Example:
        >>> recipe_path("fcn8s_voc").name
        'fcn8s_voc.toml'
    """
    return zoo_path("recipes", f"{name}.toml")


def available_recipes() -> list[str]:
    """Names of the shipped recipes.

    Example:
        >>> "fcn8s_voc" in available_recipes()
        True
    """
    return sorted(p.stem for p in zoo_path("recipes").glob("*.toml"))


def load_recipe(name_or_path: str | os.PathLike) -> Recipe:
    """Loads a shipped recipe by name (``"fcn8s_voc"``) or any recipe file by path.

    Raises :class:`RecipeError` naming the file and the offending key for an
    unknown key, a wrong type or a value outside the allowed choices.

    Example:
        >>> load_recipe("fcn16s_voc").init.source
        'recipe:fcn32s_voc'
        >>> load_recipe("fcn4s_voc")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fcn_keras.recipes.RecipeError: no recipe named 'fcn4s_voc'; shipped recipes: [...]
    """
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        path = recipe_path(str(name_or_path))
        if not path.is_file():
            raise RecipeError(f"no recipe named {str(name_or_path)!r}; shipped recipes: {available_recipes()}")
    if not path.is_file():
        raise RecipeError(f"recipe file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from exc
    return parse_recipe(data, name=path.stem, source=str(path))


def parse_recipe(data: dict, name: str, source: str = "<dict>") -> Recipe:
    """Builds a :class:`Recipe` from a parsed TOML dict, checking every key and type.

    Example:
        >>> parse_recipe({"model": {"architecture": "fcn16s", "num_classes": 5}}, name="mine").model.num_classes
        5
        >>> parse_recipe({"data": {"batch_size": 0}}, name="mine")
        Traceback (most recent call last):
        ...
        fcn_keras.recipes.RecipeError: <dict>: [data] batch_size must be >= 1, got 0
    """
    values: dict = {"name": name, "source": source}
    for key, value in data.items():
        if key not in _SECTIONS or key in ("name", "source"):
            raise RecipeError(f"{source}: unknown key {key!r}; allowed: {sorted(set(_SECTIONS) - {'name', 'source'})}")
        if key == "description":
            if not isinstance(value, str):
                raise RecipeError(f"{source}: 'description' must be a string, got {type(value).__name__}")
            values[key] = value
            continue
        if not isinstance(value, dict):
            raise RecipeError(f"{source}: [{key}] must be a table, got {type(value).__name__}")
        values[key] = _parse_section(key, value, source)
    recipe = Recipe(**values)
    _check_recipe(recipe)
    return recipe


def _parse_section(section: str, table: dict, source: str):
    cls = _SECTION_CLASSES[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs = {}
    for key, value in table.items():
        where = f"{source}: [{section}] {key}"
        if key not in fields:
            raise RecipeError(f"{source}: unknown key {key!r} in [{section}]; allowed: {sorted(fields)}")
        expected = getattr(defaults, key)
        if isinstance(expected, bool):
            ok = isinstance(value, bool)
        elif isinstance(expected, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(expected, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(expected))
        if not ok:
            raise RecipeError(f"{where} must be {type(expected).__name__}, got {type(value).__name__} {value!r}")
        if isinstance(value, list):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise RecipeError(f"{where} must be a list of numbers, got {value!r}")
            lengths = _LENGTHS.get((section, key))
            if lengths and len(value) not in lengths:
                raise RecipeError(f"{where} must have {' or '.join(map(str, lengths))} entries, got {value!r}")
        choices = _CHOICES.get((section, key))
        choices = choices() if callable(choices) else choices
        if choices and value not in choices:
            raise RecipeError(f"{where} must be one of {list(choices)}, got {value!r}")
        if (section, key) in _POSITIVE and value < 1:
            raise RecipeError(f"{where} must be >= 1, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def _architectures() -> tuple[str, ...]:
    from fcn_keras.models.architectures import ARCHITECTURES  # the registry: builds need Keras anyway

    return tuple(ARCHITECTURES)


def _check_recipe(recipe: Recipe) -> None:
    src = recipe.source
    m = recipe.model
    if m.architecture in FCN_ARCHITECTURES and (m.alpha != 1.0 or m.options):
        raise RecipeError(f"{src}: [model] alpha and options are the family architectures' arguments; an FCN's "
                          f"width is its backbone's (backbone = {m.backbone!r})")
    if m.alpha <= 0:
        raise RecipeError(f"{src}: [model] alpha must be > 0, got {m.alpha}")
    weights = recipe.loss.class_weights
    if weights and len(weights) != recipe.model.num_classes:
        raise RecipeError(f"{src}: [loss] class_weights has {len(weights)} entries for "
                          f"num_classes = {recipe.model.num_classes}")
    if recipe.data.batch_size > 1 and not recipe.data.crop_size:
        raise RecipeError(f"{src}: [data] batch_size > 1 needs crop_size = [h, w] (images differ in size)")
    if recipe.schedule.name == "step" and recipe.schedule.step_size < 1:
        raise RecipeError(f"{src}: [schedule] step_size must be >= 1 for the 'step' schedule")
    if recipe.training.steps % recipe.training.steps_per_epoch:
        raise RecipeError(f"{src}: [training] steps ({recipe.training.steps}) must be a multiple of "
                          f"steps_per_epoch ({recipe.training.steps_per_epoch})")
    if not 0 <= recipe.optimizer.momentum < 1:
        raise RecipeError(f"{src}: [optimizer] momentum must be in [0, 1), got {recipe.optimizer.momentum}")


def recipe_to_dict(recipe: Recipe) -> dict:
    """The recipe as the dict a TOML file would hold (for logs and :meth:`Recipe.replace`).

    Example:
        >>> recipe_to_dict(load_recipe("fcn8s_voc"))["optimizer"]["learning_rate"]
        1e-14
    """
    result = {"description": recipe.description}
    for section in _SECTION_CLASSES:
        result[section] = dataclasses.asdict(getattr(recipe, section))
    return result
