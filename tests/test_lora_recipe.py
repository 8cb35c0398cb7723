"""The plain LoRA recipe on every backbone's tiny configuration (shared matrix)."""

import json

import pytest
import torch

from motiontune.backbones import load_backbone
from motiontune.data.dataset import Sample, TrainingData
from motiontune.diffusion.sampling import SamplingConfig, generate
from motiontune.errors import ConfigError
from motiontune.recipes import load_recipe, make_recipe
from motiontune.testing.tiny import tiny_families
from motiontune.training.trainer import Trainer, TrainConfig

FAMILIES = tiny_families()


def tiny_size(spec):
    rule = spec.frame_rule
    frames = rule.fixed if rule.fixed is not None else (5 if rule.k == 4 else 4)
    m = spec.size_multiple
    return frames, m, m


def sampling(spec, **kw):
    f, h, w = tiny_size(spec)
    return SamplingConfig(num_inference_steps=2, num_frames=f, height=h, width=w, **kw)


def lora_recipe(spec, **kw):
    kinds = tuple(k for k in ("spatial", "temporal", "joint") if spec.sites(k))
    return make_recipe("lora", rank=4, alpha=8, attention=kinds, **kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_train_save_load_generate(family, tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir(family))
    f, h, w = tiny_size(spec)
    recipe = lora_recipe(spec)
    base_weights = {k: v.clone() for k, v in spec.denoiser.state_dict().items()}

    # scale 0 at every t reproduces the base model exactly, before and after injection
    torch.manual_seed(0)
    base = generate(spec, ["a red circle moves left"], config=sampling(spec), progress=False)
    recipe.apply(spec)
    injected = [n for n, _ in spec.denoiser.named_modules() if n.endswith("lora_A")]
    assert injected, "LoRA was not injected"

    data = TrainingData([Sample(torch.rand(3, f, h, w) * 2 - 1, "a red circle moves left")])
    out = tmp_path / "run"
    cfg = TrainConfig(output_dir=str(out), steps=2, progress=False, learning_rate=1e-2, checkpoint_every=0)
    Trainer(spec, recipe, data, cfg, {"size": [f, h, w]}).train()

    # a training step changes only adapter weights
    after = spec.denoiser.state_dict()
    lora_keys = [k for k in after if "lora_" in k]
    assert lora_keys
    for k, v in base_weights.items():
        key = k if k in after else k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(after[key], v), f"frozen weight {k} changed"
    assert any(after[k].abs().sum() > 0 for k in lora_keys if "lora_B" in k), "LoRA B stayed zero: no training happened"

    with_lora = generate(spec, ["a red circle moves left"], recipe=recipe, config=sampling(spec), progress=False)
    off = generate(spec, ["a red circle moves left"], recipe=recipe, config=sampling(spec), progress=False, scale_fn=lambda t: 0.0)
    assert torch.equal(off, base), "adapter scale 0 for all t must reproduce the base model exactly"
    assert (with_lora - base).abs().max() > 0
    assert with_lora.shape == (1, 3, f, h, w) or with_lora.shape[:2] == (1, 3)

    # files: weights + motiontune.json with everything needed to reproduce a generation
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    meta = json.loads((out / "motiontune.json").read_text())
    assert meta["recipe"] == "lora" and meta["backbone"]["family"] == family
    assert meta["config"]["rank"] == 4 and meta["size"] == [f, h, w]

    # save -> load into a fresh backbone -> identical output
    spec2 = load_backbone(tiny_model_dir(family))
    recipe2 = load_recipe(str(out), spec2)
    again = generate(spec2, ["a red circle moves left"], recipe=recipe2, config=sampling(spec2), progress=False)
    assert torch.allclose(again, with_lora, atol=1e-5)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f in ("wan", "cogvideox", "hunyuan_video")])
def test_diffusers_load_lora_weights_matches(family, tiny_model_dir, tmp_path):
    """The saved folder loads with the diffusers pipeline's load_lora_weights and gives the same denoiser output."""
    folder = tiny_model_dir(family)
    spec = load_backbone(folder)
    recipe = make_recipe("lora", rank=4, alpha=8, attention=("joint",))
    recipe.apply(spec)
    with torch.no_grad():
        for p in recipe.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    recipe.save(str(tmp_path))

    other = load_backbone(folder)
    other.pipe.load_lora_weights(str(tmp_path))
    f, h, w = tiny_size(spec)
    x = torch.randn(spec.latent_shape(f, h, w))
    t = torch.tensor([400.0]) if spec.schedule.prediction_type == "flow" else torch.tensor([400])
    cond = spec.encode_prompt(["a dog runs"])
    with torch.no_grad():
        a = spec.predict(x, t, cond)
        b = other.predict(x, t, cond)
        plain = load_backbone(folder).predict(x, t, cond)
    assert (a - plain).abs().max() > 1e-4, "the adapter must change the output"
    assert torch.allclose(a, b, atol=1e-5)


def test_lora_bad_settings():
    with pytest.raises(ConfigError, match="projection"):
        make_recipe("lora", projections=("q", "x"))
    with pytest.raises(ConfigError, match="attention kind"):
        make_recipe("lora", attention="diagonal")
    with pytest.raises(ConfigError, match="unknown setting"):
        make_recipe("lora", rnak=3)
    with pytest.raises(ConfigError, match="unknown recipe"):
        make_recipe("nope")
    with pytest.raises(ConfigError, match="timestep range"):
        make_recipe("lora", train_timesteps="900:100")


def test_missing_attention_kind_is_reported(tiny_model_dir):
    spec = load_backbone(tiny_model_dir("wan"))
    with pytest.raises(ConfigError, match="has no temporal attention"):
        make_recipe("lora", attention=("temporal",)).apply(spec)
