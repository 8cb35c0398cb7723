"""The full fine-tuning recipe: trains only the chosen weights; scale 0 restores the base bit for bit."""

import torch

from motiontune.backbones import load_backbone
from motiontune.data.dataset import Sample, TrainingData
from motiontune.diffusion.sampling import SamplingConfig, generate
from motiontune.recipes import load_recipe, make_recipe
from motiontune.training.trainer import Trainer, TrainConfig


def test_full_recipe_train_scale_save_load(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("wan")
    spec = load_backbone(folder)
    before = {k: v.clone() for k, v in spec.denoiser.state_dict().items()}
    recipe = make_recipe("full", attention=("joint",), projections=("v", "o"))
    data = TrainingData([Sample(torch.rand(3, 5, 16, 16) * 2 - 1, "a red circle moves left")])
    Trainer(spec, recipe, data, TrainConfig(output_dir=str(tmp_path), steps=2, learning_rate=1e-2, progress=False, checkpoint_every=0), {"size": [5, 16, 16]}).train()
    after = spec.denoiser.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed and all(".attn1.to_v." in k or ".attn1.to_out.0." in k for k in changed)
    cfg = SamplingConfig(num_inference_steps=2, num_frames=5, height=16, width=16)
    tuned = generate(spec, ["a dog"], recipe=recipe, config=cfg, progress=False)
    recipe.set_adapter_scale(0.0)
    for k in before:
        assert torch.equal(spec.denoiser.state_dict()[k], before[k])
    recipe.set_adapter_scale(1.0)
    base = generate(load_backbone(folder), ["a dog"], config=cfg, progress=False)
    off = generate(spec, ["a dog"], recipe=recipe, config=cfg, progress=False, scale_fn=lambda t: 0.0)
    assert torch.equal(off, base)
    again = generate(spec, ["a dog"], recipe=recipe, config=cfg, progress=False)
    assert torch.equal(again, tuned)
    spec2 = load_backbone(folder)
    loaded = load_recipe(str(tmp_path), spec2)
    assert torch.allclose(generate(spec2, ["a dog"], recipe=loaded, config=cfg, progress=False), tuned, atol=1e-6)
