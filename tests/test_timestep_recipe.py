"""The timestep-constrained recipe on every backbone's tiny configuration (shared matrix)."""

import json
import shutil

import pytest
import torch

from motiontune.backbones import load_backbone
from motiontune.data.dataset import Sample, TrainingData
from motiontune.diffusion.sampling import SamplingConfig, generate
from motiontune.diffusion.schedules import ddpm_to_flow_t
from motiontune.errors import ConfigError
from motiontune.recipes import load_recipe, make_recipe
from motiontune.testing.tiny import tiny_families
from motiontune.training.trainer import Trainer, TrainConfig

FAMILIES = tiny_families()
TEMPORAL_FAMILIES = ("unet3d", "latte")
PROMPT = "a red circle moves left"


def tiny_size(spec):
    rule = spec.frame_rule
    frames = rule.fixed if rule.fixed is not None else (5 if rule.k == 4 else 4)
    m = spec.size_multiple
    return frames, m, m


def sampling(spec, steps=3):
    f, h, w = tiny_size(spec)
    return SamplingConfig(num_inference_steps=steps, num_frames=f, height=h, width=w)


def grid(spec, steps=3):
    sch = spec.fresh_scheduler()
    sch.set_timesteps(steps)
    return [float(t) for t in sch.timesteps]


def mid_tau(spec, steps=3):
    """A native tau between the first and the second sampling timestep."""
    ts = grid(spec, steps)
    return (ts[0] + ts[1]) / 2


def train(spec, recipe, out, steps=2):
    f, h, w = tiny_size(spec)
    data = TrainingData([Sample(torch.rand(3, f, h, w) * 2 - 1, PROMPT)])
    cfg = TrainConfig(output_dir=str(out), steps=steps, progress=False, learning_rate=1e-2, checkpoint_every=0)
    return Trainer(spec, recipe, data, cfg, {"size": [f, h, w]}).train()


def spy_predict(spec, seen):
    original = spec.predict

    def predict(x_t, t, cond, **kw):
        seen.append(torch.as_tensor(t).detach().float().flatten().tolist())
        return original(x_t, t, cond, **kw)

    spec.predict = predict
    return original


def lora_module_paths(spec):
    return {n.rsplit(".lora_A", 1)[0] for n, _ in spec.denoiser.named_modules() if n.endswith("lora_A")}


@pytest.mark.parametrize("family", FAMILIES)
def test_default_tau_and_placement(family, tiny_model_dir):
    spec = load_backbone(tiny_model_dir(family))
    recipe = make_recipe("timestep")
    recipe.apply(spec)
    expected_tau = {"unet3d": 700.0, "latte": 700.0, "cogvideox": 950.0}.get(family, ddpm_to_flow_t(700))
    assert recipe.tau_native == pytest.approx(expected_tau)
    kind = "temporal" if family in TEMPORAL_FAMILIES else "joint"
    assert recipe.config.attention == (kind,)
    assert recipe.config.rank == 4 and recipe.config.alpha == 4.0
    expected = {m for s in spec.sites(kind) for m in s.module_names(tuple(r for r in "qkvo" if r in s.projections))}
    # exactly the Q, K, V, O projections of every site of the expected kind carry the adapter
    assert lora_module_paths(spec) == expected
    assert recipe.config.train_timesteps.low == pytest.approx(expected_tau)
    assert recipe.config.train_timesteps.high == 1000


@pytest.mark.parametrize("family", FAMILIES)
def test_vo_trains_half_of_qkvo(family, tiny_model_dir):
    folder = tiny_model_dir(family)
    full = make_recipe("timestep")
    full.apply(load_backbone(folder))
    vo = make_recipe("timestep", projections="v,o")
    vo.apply(load_backbone(folder))
    n_full = sum(p.numel() for p in full.trainable_parameters())
    n_vo = sum(p.numel() for p in vo.trainable_parameters())
    # V/O adapts exactly the V and O projections of the Q, K, V, O adapter
    proj = {name: name.split(".lora_")[0] for name in full.named_trainable()}
    vo_names = set(vo.named_trainable())
    expected = {n for n, m in proj.items() if any(m.endswith(s) for s in (".to_v", ".to_out.0"))}
    assert vo_names == expected
    if all(set(s.projections) >= {"q", "k", "v", "o"} for s in full.spec.sites(full.config.attention)):
        assert 2 * n_vo == n_full
    else:  # HunyuanVideo's single-stream blocks have no output projection
        assert n_vo < n_full


@pytest.mark.parametrize("family", FAMILIES)
def test_train_infer_save_load(family, tiny_model_dir, tmp_path):
    folder = tiny_model_dir(family)
    spec = load_backbone(folder)
    tau = mid_tau(spec)
    base = generate(spec, [PROMPT], config=sampling(spec), progress=False)
    recipe = make_recipe("timestep", tau=tau)

    # training only sees t >= tau
    seen: list[list[float]] = []
    original = spy_predict(spec, seen)
    out = tmp_path / "run"
    train(spec, recipe, out, steps=4)
    spec.predict = original
    flat = [t for call in seen for t in call]
    assert len(seen) == 4 and min(flat) >= tau - 1e-3, flat
    assert any(p.abs().sum() > 0 for n, p in recipe.named_trainable().items() if "lora_B" in n)

    # inference: the adapter is on exactly while t >= tau
    scales: list[float] = []
    set_scale = recipe.set_adapter_scale
    recipe.set_adapter_scale = lambda s: (scales.append(s), set_scale(s))[1]
    seen.clear()
    spy_predict(spec, seen)
    tuned = generate(spec, [PROMPT], recipe=recipe, config=sampling(spec), progress=False)
    spec.predict = original
    del recipe.set_adapter_scale
    step_t = [call[0] for call in seen]
    assert scales[:-1] == [1.0 if t >= tau else 0.0 for t in step_t] and scales[-1] == 1.0
    assert 0.0 in scales[:-1] and 1.0 in scales[:-1]
    assert (tuned - base).abs().max() > 0

    # with the adapter active only below tau's complement (never), output equals the base exactly
    off = generate(spec, [PROMPT], recipe=recipe, config=sampling(spec), progress=False, scale_fn=lambda t: 0.0)
    assert torch.equal(off, base)
    above_all = make_recipe("timestep", tau=1000)
    above_all.apply(load_backbone(folder))  # placement only; weights copied below
    spec_hi = above_all.spec
    above_all.load_state_dict(recipe.state_dict())
    if max(grid(spec)) < 1000:
        hi = generate(spec_hi, [PROMPT], recipe=above_all, config=sampling(spec), progress=False)
        assert torch.equal(hi, base), "an adapter outside every sampling timestep must leave the base output unchanged"

    # files and round trip
    meta = json.loads((out / "motiontune.json").read_text())
    assert meta["recipe"] == "timestep" and meta["config"]["tau"] == pytest.approx(tau)
    assert meta["config"]["train_timesteps"]["low"] == pytest.approx(tau)
    spec2 = load_backbone(folder)
    loaded = load_recipe(str(out), spec2)
    assert loaded.name == "timestep" and loaded.tau_native == pytest.approx(recipe.tau_native)
    again = generate(spec2, [PROMPT], recipe=loaded, config=sampling(spec2), progress=False)
    assert torch.equal(again, tuned)


@pytest.mark.parametrize("family", FAMILIES)
def test_full_mode_scale_zero_restores_base(family, tiny_model_dir, tmp_path):
    folder = tiny_model_dir(family)
    spec = load_backbone(folder)
    before = {k: v.clone() for k, v in spec.denoiser.state_dict().items()}
    recipe = make_recipe("timestep", mode="full", projections=("v", "o"), tau=mid_tau(spec))
    assert recipe.config.learning_rate == 1e-5
    seen: list[list[float]] = []
    original = spy_predict(spec, seen)
    train(spec, recipe, tmp_path, steps=2)
    spec.predict = original
    assert min(t for call in seen for t in call) >= recipe.tau_native - 1e-3
    after = spec.denoiser.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    kind = "temporal" if family in TEMPORAL_FAMILIES else "joint"
    allowed = [m for s in spec.sites(kind) for m in s.module_names(tuple(r for r in ("v", "o") if r in s.projections))]
    assert changed and all(any(k.startswith(m + ".") for m in allowed) for k in changed)
    tuned = generate(spec, [PROMPT], recipe=recipe, config=sampling(spec), progress=False)
    recipe.set_adapter_scale(0.0)
    for k, v in before.items():
        assert torch.equal(spec.denoiser.state_dict()[k], v), f"{k} not restored"
    recipe.set_adapter_scale(1.0)
    spec2 = load_backbone(folder)
    loaded = load_recipe(str(tmp_path), spec2)
    assert loaded.config.mode == "full"
    assert torch.equal(generate(spec2, [PROMPT], recipe=loaded, config=sampling(spec2), progress=False), tuned)


def test_tau_from_model_folder_defaults(tiny_model_dir, tmp_path):
    folder = tmp_path / "toyish"
    shutil.copytree(tiny_model_dir("wan"), folder)
    (folder / "motiontune_defaults.json").write_text(json.dumps({"timestep_tau": 555}))
    spec = load_backbone(str(folder))
    recipe = make_recipe("timestep")
    recipe.apply(spec)
    assert recipe.tau_native == 555 and recipe.tau_source == "model folder"
    explicit = make_recipe("timestep", tau=800)
    explicit.apply(load_backbone(str(folder)))
    assert explicit.tau_native == 800
    ddpm = make_recipe("timestep", tau=700, tau_unit="ddpm")
    ddpm.apply(load_backbone(str(folder)))
    assert ddpm.tau_native == pytest.approx(ddpm_to_flow_t(700))
    assert ddpm.config.train_timesteps.high == 1000  # T stays T on the flow model


def test_timestep_recipe_bad_settings():
    with pytest.raises(ConfigError, match="mode"):
        make_recipe("timestep", mode="half")
    with pytest.raises(ConfigError, match="tau must lie"):
        make_recipe("timestep", tau=1200)
    with pytest.raises(ConfigError, match="tau_unit"):
        make_recipe("timestep", tau_unit="sigma")
    with pytest.raises(ConfigError, match="disagrees"):
        make_recipe("timestep", tau=700, train_timesteps="600:1000")
    with pytest.raises(ConfigError, match="trains on"):
        make_recipe("timestep", train_timesteps="0:500")
    with pytest.raises(ConfigError, match="attention kind"):
        make_recipe("timestep", attention="all")  # "all" is for full fine-tuning only
    with pytest.raises(ConfigError, match="projection"):
        make_recipe("timestep", projections="q,x")
    assert make_recipe("timestep", train_timesteps="650:1000").config.tau == 650
