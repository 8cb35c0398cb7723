"""A model folder's recommended customization learning rate (motiontune_defaults.json)."""

import json
import shutil

import numpy as np
import pytest

from motiontune import api
from motiontune.backbones import load_backbone
from motiontune.errors import ModelLoadError
from motiontune.recipes import make_recipe
from motiontune.training.trainer import Trainer

CAPTION = "a red circle moves left on a black background"


@pytest.fixture
def folder(tiny_model_dir, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(tiny_model_dir("wan"), path)
    (path / "motiontune_defaults.json").write_text(json.dumps({"default_learning_rate": 0.003}))
    return path


def _clip():
    return np.random.default_rng(0).integers(0, 255, (9, 32, 32, 3), dtype=np.uint8)


def _trained_lr(folder, out, **kwargs):
    api.train(str(folder), videos=[_clip()], captions=CAPTION, output_dir=str(out), steps=1, progress=False,
              checkpoint_every=0, num_frames=9, height=32, width=32, **kwargs)
    return Trainer.read_metadata(str(out))["training"]["learning_rate"]


def test_folder_learning_rate_applies_unless_a_rate_is_given(folder, tmp_path):
    assert load_backbone(str(folder)).default_learning_rate == 0.003
    assert _trained_lr(folder, tmp_path / "a", recipe="lora") == 0.003
    # a rate given as a training setting or as a recipe setting wins
    assert _trained_lr(folder, tmp_path / "b", recipe="lora", learning_rate=5e-4) == 5e-4
    out = tmp_path / "c"
    _trained_lr(folder, out, recipe="lora", recipe_settings={"learning_rate": 2e-4})
    assert json.loads((out / "motiontune.json").read_text())["config"]["learning_rate"] == 2e-4


def test_train_returns_the_recipe_it_trained(folder, tmp_path):
    spec = load_backbone(str(folder))
    result = api.train(str(folder), videos=[_clip()], captions=CAPTION, output_dir=str(tmp_path / "a"), steps=1, progress=False,
                       checkpoint_every=0, num_frames=9, height=32, width=32, recipe="lora", spec=spec)
    assert result.recipe.name == "lora"
    assert Trainer.read_metadata(str(tmp_path / "a"))["training"]["learning_rate"] == 0.003  # the folder's rate
    assert result.recipe.trainable_parameters() and any("lora" in n for n, _ in spec.denoiser.named_parameters())


def test_no_folder_default_keeps_the_recipe_rate(tiny_model_dir):
    spec = load_backbone(tiny_model_dir("wan"))
    assert spec.default_learning_rate is None
    assert make_recipe("lora").config.learning_rate == 1e-4


@pytest.mark.parametrize("bad", [0, -1e-3, "fast", True])
def test_bad_folder_learning_rate_is_refused(folder, bad):
    (folder / "motiontune_defaults.json").write_text(json.dumps({"default_learning_rate": bad}))
    with pytest.raises(ModelLoadError, match="default_learning_rate"):
        load_backbone(str(folder))
