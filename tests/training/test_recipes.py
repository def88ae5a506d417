"""Recipes: the shipped files, the reference and paper values, and errors naming key and file."""

from __future__ import annotations

import pytest

from fcn_keras.recipes import RecipeError, available_recipes, load_recipe

REFERENCE = {  # (architecture, learning rate, init) from the reference solvers
    "fcn32s_voc": ("fcn32s", 1e-10, "imagenet"),
    "fcn16s_voc": ("fcn16s", 1e-12, "recipe:fcn32s_voc"),
    "fcn8s_voc": ("fcn8s", 1e-14, "recipe:fcn16s_voc"),
    "fcn8s_atonce_voc": ("fcn8s_atonce", 1e-10, "imagenet"),
}


def test_shipped_recipes_hold_the_reference_solver():
    assert set(REFERENCE) | {"fcn32s_voc_paper", "tiny_synthetic"} <= set(available_recipes())
    for name, (architecture, lr, init) in REFERENCE.items():
        r = load_recipe(name)
        assert (r.model.architecture, r.optimizer.learning_rate, r.init.source) == (architecture, lr, init)
        assert (r.data.batch_size, r.data.crop_size, r.loss.reduction) == (1, [], "sum")
        assert (r.optimizer.momentum, r.optimizer.weight_decay, r.optimizer.bias_lr_multiplier) == (0.99, 5e-4, 2.0)
        assert (r.data.dataset, r.data.val_split, r.model.backbone) == ("sbd", "seg11valid", "vgg16")
    assert load_recipe("fcn8s_atonce_voc").training.steps == 300000
    paper = load_recipe("fcn32s_voc_paper")
    assert (paper.data.batch_size, paper.optimizer.momentum, paper.optimizer.learning_rate,
            paper.loss.reduction) == (20, 0.9, 1e-4, "mean")


def _write(tmp_path, text):
    path = tmp_path / "my_recipe.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, match", [
    ('[model]\narchitecture = "fcn8s"\nlayers = 3\n', r"my_recipe.toml: unknown key 'layers' in \[model\]"),
    ('[modle]\narchitecture = "fcn8s"\n', r"my_recipe.toml: unknown key 'modle'"),
    ('[optimizer]\nlearning_rate = "1e-10"\n', r"my_recipe.toml: \[optimizer\] learning_rate must be float, got str"),
    ('[data]\nbatch_size = 2.5\n', r"my_recipe.toml: \[data\] batch_size must be int, got float"),
    ('[model]\narchitecture = "fcn4s"\n', r"my_recipe.toml: \[model\] architecture must be one of"),
    ('[training]\nmixed_precision = "float16"\n', r"mixed_precision must be one of"),
    ('[data]\ncrop_size = [1, 2, 3]\n', r"\[data\] crop_size must have 0 or 2 entries"),
    ('[data]\nbatch_size = 4\n', r"batch_size > 1 needs crop_size"),
    ('[training]\nsteps = 10\nsteps_per_epoch = 3\n', r"must be a multiple of steps_per_epoch"),
    ('[loss]\nclass_weights = [1.0, 2.0]\n', r"class_weights has 2 entries for num_classes = 21"),
    ('[model\n', r"my_recipe.toml: not valid TOML"),
])
def test_bad_recipes_name_the_key_and_file(tmp_path, text, match):
    with pytest.raises(RecipeError, match=match):
        load_recipe(_write(tmp_path, text))


def test_unknown_name_and_replace():
    with pytest.raises(RecipeError, match="no recipe named 'fcn64s'.*fcn8s_voc"):
        load_recipe("fcn64s")
    r = load_recipe("fcn8s_voc").replace(training={"steps": 8, "steps_per_epoch": 4})
    assert (r.training.steps, r.epochs, r.optimizer.learning_rate) == (8, 2, 1e-14)
    with pytest.raises(RecipeError, match="steps must be int"):
        r.replace(training={"steps": "many"})
