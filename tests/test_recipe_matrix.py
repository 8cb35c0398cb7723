"""Every registered recipe x every tiny backbone (and the toy model's architecture).

Shared checks, picked up by a new recipe without editing this file:
* every named adapter (every branch), made non-zero, changes the output (a branch that acts only
  through others, such as a controller weighting adapters, with those made non-zero too);
* all adapters at scale 0 give the base output exactly;
* a save/load round trip gives identical output (at the recipe's inference schedule);
* a training step changes only what its stage and passes declare: the branches it trained move,
  the others and their optimizer state stay bit for bit, the base weights never move (unless
  they are the recipe's branch, as in ``full``).

A recipe is built with its ``example_settings``; one that runs on some backbone families only
(``supported_families``) must refuse the others with a ConfigError.
"""

import pytest
import torch

from motiontune.backbones import load_backbone
from motiontune.data.dataset import Sample, TrainingData
from motiontune.errors import ConfigError
from motiontune.recipes import get_recipe_class, load_recipe, make_recipe, recipe_names
from motiontune.testing.tiny import tiny_families
from motiontune.training.trainer import Trainer, TrainConfig

BACKBONES = [*tiny_families(), "toy"]
RECIPES = recipe_names()
PROMPT = "a red circle moves left"
def _spec(backbone, tiny_model_dir, tiny_toy):
    return load_backbone(tiny_toy if backbone == "toy" else tiny_model_dir(backbone))


def _size(spec):
    rule = spec.frame_rule
    frames = rule.fixed if rule.fixed is not None else next(n for n in range(4, 64) if rule.is_valid(n))
    m = spec.size_multiple
    return frames, m, m


def _inputs(spec):
    f, h, w = _size(spec)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(spec.latent_shape(f, h, w), generator=g)
    return x, torch.tensor([999.0]), spec.encode_prompt([PROMPT])


def _out(spec, recipe, x, t, cond, schedule=True):
    from motiontune.hooks.call import DenoiserCall, denoiser_call

    spec.denoiser.eval()
    if recipe is not None and schedule:
        recipe.apply_schedule(float(t[0]))
    with torch.no_grad():
        out = denoiser_call(spec, recipe, x, t, cond, DenoiserCall("sample", t, tuple(x.shape)))
    if recipe is not None and schedule:
        recipe.reset_schedule()
    return out


def _make(recipe_name):
    return make_recipe(recipe_name, **get_recipe_class(recipe_name).example_settings)


def _supported(recipe_name, spec):
    families = get_recipe_class(recipe_name).supported_families
    return families is None or spec.family in families


def _set_all_scales(recipe, scale):
    names = recipe.adapter_names()
    if names:
        recipe.set_adapter_scales({n: scale for n in names})
    else:
        recipe.set_adapter_scale(scale)


def _perturb(params, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params.values():
            p.add_(0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("recipe_name", RECIPES)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_recipe_adapters_scale_zero_and_round_trip(recipe_name, backbone, tiny_model_dir, tiny_toy, tmp_path):
    spec = _spec(backbone, tiny_model_dir, tiny_toy)
    x, t, cond = _inputs(spec)
    base = _out(spec, None, x, t, cond)
    recipe = _make(recipe_name)
    torch.manual_seed(0)
    if not _supported(recipe_name, spec):
        with pytest.raises(ConfigError, match=spec.family):
            recipe.apply(spec)
        return
    recipe.apply(spec)
    branches = recipe.branches()
    assert branches and all(branches.values())
    # at initialisation every adapter that starts as a no-op gives the base output; then each
    # branch, made non-zero alone, changes the output
    # (a branch that acts only through others, Recipe.branch_prerequisites, with those made non-zero first)
    _set_all_scales(recipe, 1.0)
    for i, (name, params) in enumerate(branches.items()):
        needs = [branches[b] for b in recipe.branch_prerequisites.get(name, ())]
        before = {k: v.detach().clone() for ps in [params, *needs] for k, v in ps.items()}
        for j, ps in enumerate(needs):
            _perturb(ps, 50 + j)
        reference = _out(spec, recipe, x, t, cond, schedule=False)
        _perturb(params, i + 1)
        changed = _out(spec, recipe, x, t, cond, schedule=False)
        assert not torch.equal(changed, reference), f"branch {name!r} of {recipe_name} changes nothing on {backbone}"
        with torch.no_grad():
            for ps in [params, *needs]:
                for k, p in ps.items():
                    p.copy_(before[k])
    for i, params in enumerate(branches.values()):
        _perturb(params, 100 + i)
    # all adapters at scale 0: the base output exactly
    _set_all_scales(recipe, 0.0)
    assert torch.equal(_out(spec, recipe, x, t, cond, schedule=False), base)
    _set_all_scales(recipe, 1.0)
    # save / load round trip: the same output at the inference schedule
    expected = _out(spec, recipe, x, t, cond)
    folder = tmp_path / "adapter"
    recipe.save(str(folder), {"backbone": {"family": spec.family, "source": spec.source}})
    spec2 = _spec(backbone, tiny_model_dir, tiny_toy)
    loaded = load_recipe(str(folder), spec2)
    assert torch.equal(_out(spec2, loaded, x, t, cond), expected)


@pytest.mark.parametrize("recipe_name", RECIPES)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_recipe_step_changes_only_what_it_declares(recipe_name, backbone, tiny_model_dir, tiny_toy, tmp_path):
    spec = _spec(backbone, tiny_model_dir, tiny_toy)
    f, h, w = _size(spec)
    data = TrainingData([Sample(torch.rand(3, f, h, w) * 2 - 1, PROMPT)])
    recipe = _make(recipe_name)
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), steps=4, progress=False, learning_rate=1e-2, checkpoint_every=0,
                      gradient_accumulation_steps=2)
    if not _supported(recipe_name, spec):
        with pytest.raises(ConfigError, match=spec.family):
            Trainer(spec, recipe, data, cfg, {"size": [f, h, w]})
        return
    trainer = Trainer(spec, recipe, data, cfg, {"size": [f, h, w]})
    branch_params = {b: dict(recipe.branches()[b]) for b in trainer.branches}
    owned = {id(p) for ps in branch_params.values() for p in ps.values()}
    frozen = {n: p.detach().clone() for n, p in spec.denoiser.named_parameters() if id(p) not in owned}
    for step in range(cfg.steps):
        _, _, trained = trainer.step_plan(step)
        before = {b: {k: v.detach().clone() for k, v in ps.items()} for b, ps in branch_params.items()}
        opt_before = {k: {i: {s: v.clone() for s, v in st.items() if torch.is_tensor(v)} for i, st in enumerate(o.state.values())}
                      for k, o in trainer.optimizers.items()}
        trainer.train_step(step)
        for b, ps in branch_params.items():
            moved = any(not torch.equal(before[b][k], p.detach()) for k, p in ps.items())
            if b in trained:
                assert moved, f"step {step}: branch {b!r} was trained but did not move"
            else:
                assert not moved, f"step {step}: branch {b!r} was not trained but moved"
        for key, o in trainer.optimizers.items():
            branch = key.split(":")[0]
            if branch in trainer.branches and branch not in trained:
                now = {i: {s: v for s, v in st.items() if torch.is_tensor(v)} for i, st in enumerate(o.state.values())}
                assert now.keys() == opt_before[key].keys()
                for i in now:
                    assert all(torch.equal(now[i][s], opt_before[key][i][s]) for s in now[i])
    for n, p in spec.denoiser.named_parameters():
        if n in frozen:
            assert torch.equal(p.detach(), frozen[n]), f"{n} is not a branch of {recipe_name} but moved"
