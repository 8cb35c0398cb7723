"""Trainer: exact resume, atomic checkpoints, timestep ranges, latent cache."""

import os

import pytest
import torch

from motiontune.backbones import load_backbone
from motiontune.data.dataset import LatentCache, Sample, TrainingData
from motiontune.diffusion.schedules import FlowMatchSchedule, DDPMSchedule, TimestepRange, ddpm_to_flow_t, scaled_linear_alphas_cumprod
from motiontune.errors import ConfigError
from motiontune.recipes import make_recipe
from motiontune.training.checkpoint import list_checkpoints
from motiontune.training.trainer import Trainer, TrainConfig

VIDEO = torch.rand(3, 5, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _trainer(folder, out, steps, dropout=0.1, **kw):
    spec = load_backbone(folder)
    recipe = make_recipe("lora", rank=4, alpha=4, dropout=dropout, attention=("joint",))
    cfg = TrainConfig(output_dir=str(out), steps=steps, progress=False, learning_rate=1e-3, checkpoint_every=3, **kw)
    return Trainer(spec, recipe, TrainingData([Sample(VIDEO, "a red circle moves left")]), cfg)


def test_interrupted_and_resumed_run_matches_uninterrupted(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("wan")
    full = _trainer(folder, tmp_path / "a", 8)
    full.train()
    part = _trainer(folder, tmp_path / "b", 5)
    part.train()
    assert [s for s, _ in list_checkpoints(str(tmp_path / "b"))] == [3, 5]
    resumed = _trainer(folder, tmp_path / "b", 8)
    result = resumed.train()
    assert result.resumed_from == 5
    a, b = full.recipe.state_dict(), resumed.recipe.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa, ob = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for i in oa:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(oa[i][key], ob[i][key])


def test_stop_at_then_resume_matches_an_uninterrupted_cosine_run(tiny_model_dir, tmp_path):
    """stop_at ends a run early on a checkpoint, with the schedule of all its steps; the rest resumes
    from there and ends where an uninterrupted run ends."""
    folder = tiny_model_dir("wan")
    kw = {"lr_schedule": "cosine", "warmup_steps": 2}
    full = _trainer(folder, tmp_path / "a", 8, **kw)
    full.train()
    part = _trainer(folder, tmp_path / "b", 8, stop_at=4, **kw)
    result = part.train()
    assert not result.finished and result.steps == 4 and len(result.losses) == 4
    assert [s for s, _ in list_checkpoints(str(tmp_path / "b"))] == [3, 4]  # one of its own where it stopped
    assert not os.path.exists(tmp_path / "b" / "motiontune.json")  # nothing final
    again = _trainer(folder, tmp_path / "b", 8, stop_at=4, **kw).train()  # already there: no step, no new checkpoint
    assert not again.finished and again.losses == [] and [s for s, _ in list_checkpoints(str(tmp_path / "b"))] == [3, 4]
    resumed = _trainer(folder, tmp_path / "b", 8, **kw)
    done = resumed.train()
    assert done.finished and done.resumed_from == 4 and os.path.isfile(tmp_path / "b" / "motiontune.json")
    a, b = full.recipe.state_dict(), resumed.recipe.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ConfigError, match="past this run's steps=6"):  # a finished run of 8 is not relabelled as 6
        _trainer(folder, tmp_path / "b", 6, **kw).train()
    with pytest.raises(ConfigError, match="stop_at"):
        TrainConfig(steps=8, stop_at=9)
    with pytest.raises(ConfigError, match="stop_at"):
        TrainConfig(steps=8, stop_at=0)


def test_crash_during_checkpoint_keeps_previous(tiny_model_dir, tmp_path, monkeypatch):
    folder = tiny_model_dir("wan")
    tr = _trainer(folder, tmp_path / "c", 7)
    tr.train()
    before = list_checkpoints(str(tmp_path / "c"))
    import motiontune.training.checkpoint as ck

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck, "save_tensors", boom)
    with pytest.raises(RuntimeError):
        ck.save_checkpoint(str(tmp_path / "c"), 9, tr.recipe.state_dict(), tr.optimizer)
    assert list_checkpoints(str(tmp_path / "c")) == before
    leftovers = [n for n in os.listdir(tmp_path / "c" / "checkpoints") if n.startswith(".tmp")]
    assert leftovers == []


def test_timestep_range_is_respected():
    g = torch.Generator().manual_seed(0)
    flow = FlowMatchSchedule()
    t = flow.sample_timesteps(2000, g, "uniform", TimestepRange(700, 1000))
    assert t.min() >= 700 and t.max() <= 1000 and t.float().mean() > 800
    ddpm = DDPMSchedule(scaled_linear_alphas_cumprod())
    t = ddpm.sample_timesteps(2000, g, "logit_normal", TimestepRange(0, 300))
    assert t.dtype == torch.long and t.min() >= 0 and t.max() <= 300
    # a DDPM-unit range maps onto the flow noise level of equal SNR
    lo, hi = TimestepRange(700, 1000, unit="ddpm").native(flow)
    assert 0 < lo < hi == 1000  # the top of the DDPM scale is pure noise on the flow scale too
    ac = scaled_linear_alphas_cumprod()
    sigma = ddpm_to_flow_t(700) / 1000
    snr_flow = ((1 - sigma) / sigma) ** 2
    assert abs(snr_flow - float(ac[700] / (1 - ac[700]))) < 1e-6
    assert TimestepRange.parse("700") == TimestepRange(700, 1000)
    assert TimestepRange.parse(":300") == TimestepRange(0, 300)
    with pytest.raises(ConfigError):
        TimestepRange.parse("a:b")


def test_schedules_recover_x0():
    x0, n = torch.randn(2, 4, 3, 4, 4), torch.randn(2, 4, 3, 4, 4)
    t = torch.tensor([100, 900])
    for sched in (FlowMatchSchedule(), DDPMSchedule(scaled_linear_alphas_cumprod(), "epsilon"), DDPMSchedule(scaled_linear_alphas_cumprod(), "v_prediction")):
        xt = sched.add_noise(x0, n, t)
        rec = sched.predict_x0(xt, sched.target(x0, n, t), t)
        assert torch.allclose(rec, x0, atol=1e-4), type(sched).__name__


def test_target_for_inverts_the_x0_estimate():
    x0, n, other = torch.randn(2, 4, 3, 4, 4), torch.randn(2, 4, 3, 4, 4), torch.randn(2, 4, 3, 4, 4)
    for sched, t in ((FlowMatchSchedule(), torch.tensor([100.0, 900.0])), (DDPMSchedule(scaled_linear_alphas_cumprod(), "epsilon"), torch.tensor([100, 900])),
                     (DDPMSchedule(scaled_linear_alphas_cumprod(), "v_prediction"), torch.tensor([100, 900]))):
        xt = sched.add_noise(x0, n, t)
        # from the clip's own noisy input it is the ordinary target
        assert torch.allclose(sched.target_for(xt, x0, t), sched.target(x0, n, t), atol=1e-4), type(sched).__name__
        # from another clip's noisy input, its x0 estimate is still x0
        x_other = sched.add_noise(other, n, t)
        assert torch.allclose(sched.predict_x0(x_other, sched.target_for(x_other, x0, t), t), x0, atol=1e-4), type(sched).__name__
    with pytest.raises(ConfigError):
        FlowMatchSchedule().target_for(x0, x0, torch.tensor([0.0, 500.0]))


def test_input_latents_change_the_noisy_input_within_their_levels(tiny_model_dir, tmp_path):
    """The toy bank's samples with input_latents are noised from those at levels within input_levels
    and trained towards their own latents (target_for), through the trainer's ``training_input``
    hook of a data source; at other levels they train as usual."""
    from motiontune.toyworld.training import BankSample, LatentBank

    class Source(TrainingData):
        training_input = staticmethod(LatentBank.training_input)

    spec = load_backbone(tiny_model_dir("wan"))
    z = spec.encode_video(VIDEO[None]).float()[0]
    other = torch.randn_like(z)
    seen = []
    orig = spec.predict

    def spy(x, t, cond, **kw):
        seen.append((x.detach().clone(), t.clone()))
        return orig(x, t, cond, **kw)

    spec.predict = spy
    recipe = make_recipe("lora", rank=2, attention=("joint",))
    captured = []
    orig_losses = recipe.losses

    def losses(ctx):
        captured.append(ctx)
        return orig_losses(ctx)

    recipe.losses = losses
    sample = BankSample(None, "x", latents=z, input_latents=other, input_levels=(0.5, 1.0))
    cfg = TrainConfig(output_dir=str(tmp_path), steps=12, progress=False, checkpoint_every=0, batch_size=1)
    Trainer(spec, recipe, Source([sample]), cfg).train()
    sched = spec.schedule
    high = low = 0
    for (x_t, t), ctx in zip(seen, captured):
        level = float(t[0]) / sched.num_train_timesteps
        source = other if level >= 0.5 else z
        assert torch.allclose(x_t[0], sched.add_noise(source[None], ctx.noise, t)[0], atol=1e-5)
        assert torch.allclose(ctx.target, sched.target_for(x_t, z[None], t), atol=1e-4)
        assert torch.allclose(ctx.x0[0], z)
        high, low = high + (level >= 0.5), low + (level < 0.5)
    assert high and low  # both kinds of step were exercised
    with pytest.raises(ConfigError):
        BankSample(None, "x", latents=z, input_latents=other[:, :1])
    with pytest.raises(ConfigError):
        BankSample(None, "x", latents=z, input_latents=other, input_levels=(0.8, 0.2))


def test_training_only_uses_timesteps_in_range(tiny_model_dir, tmp_path):
    seen = []
    spec = load_backbone(tiny_model_dir("wan"))
    recipe = make_recipe("lora", rank=2, attention=("joint",), train_timesteps="600:900")
    orig = spec.predict

    def spy(x, t, cond, **kw):
        seen.extend(t.tolist())
        return orig(x, t, cond, **kw)

    spec.predict = spy
    cfg = TrainConfig(output_dir=str(tmp_path), steps=6, progress=False, checkpoint_every=0)
    Trainer(spec, recipe, TrainingData([Sample(VIDEO, "x")]), cfg).train()
    assert len(seen) == 6 and all(600 <= t <= 900 for t in seen)


def test_latent_cache_on_disk(tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir("wan"))
    cache = LatentCache(spec, str(tmp_path))
    s = Sample(VIDEO, "a red circle")
    a = cache.latents(s)
    cache2 = LatentCache(spec, str(tmp_path))
    b = cache2.latents(s)
    assert cache.misses == 1 and cache2.hits == 1 and cache2.misses == 0
    assert torch.equal(a, b)
    c = cache2.latents(Sample(VIDEO * 0.5, "a red circle"))
    assert cache2.misses == 1 and not torch.equal(a, c)
    p1 = cache2.prompt("a red circle")
    assert torch.equal(p1["encoder_hidden_states"], LatentCache(spec, str(tmp_path)).prompt("a red circle")["encoder_hidden_states"])


def test_bad_train_settings():
    with pytest.raises(ConfigError):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        TrainConfig(min_lr_ratio=1.5)
    with pytest.raises(ConfigError, match="no training data"):
        TrainingData([], [])


def test_learning_rate_schedules():
    from types import SimpleNamespace

    from motiontune.training.trainer import Trainer

    def factors(**kw):
        fake = SimpleNamespace(config=TrainConfig(steps=12, **kw))
        return [Trainer._lr_factor(fake, s) for s in range(12)]

    assert factors() == [1.0] * 12
    assert factors(warmup_steps=4)[:4] == [0.25, 0.5, 0.75, 1.0] and factors(warmup_steps=4)[4:] == [1.0] * 8
    cos = factors(lr_schedule="cosine", warmup_steps=1, min_lr_ratio=0.1)
    assert cos[0] == 1.0 and cos[-1] == pytest.approx(0.1)
    assert cos[1] == pytest.approx(1.0) and all(a > b for a, b in zip(cos[1:], cos[2:]))
    # halfway through the decay (steps 1..11): the mean of the two ends
    assert cos[6] == pytest.approx(0.55)


def test_validation_videos_and_tensorboard(tiny_model_dir, tmp_path):
    pytest.importorskip("tensorboard")
    spec = load_backbone(tiny_model_dir("wan"))
    recipe = make_recipe("lora", rank=2, attention=("joint",))
    cfg = TrainConfig(output_dir=str(tmp_path), steps=4, progress=False, checkpoint_every=0, tensorboard=True, log_every=1,
                      validation_every=2, validation_prompts=["a dog moves left"], validation_steps=2)
    Trainer(spec, recipe, TrainingData([Sample(VIDEO, "x")]), cfg, {"size": [5, 16, 16]}).train()
    for step in (2, 4):
        assert (tmp_path / "validation" / f"step-{step:06d}" / "00.mp4").is_file()
    events = [f for _, _, files in os.walk(tmp_path) for f in files if f.startswith("events.out.tfevents")]
    assert events, "no TensorBoard event file written"


def test_gradient_checkpointing_matches_and_accumulation_counts(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("wan")
    results = []
    for gc in (False, True):
        tr = _trainer(folder, tmp_path / f"gc{gc}", 2, gradient_checkpointing=gc)
        tr.train()
        results.append(tr.recipe.state_dict())
    for k in results[0]:
        assert torch.allclose(results[0][k], results[1][k], atol=1e-6), k
    calls = []
    tr = _trainer(folder, tmp_path / "acc", 3, gradient_accumulation_steps=2, batch_size=2)
    orig = tr.spec.predict
    tr.spec.predict = lambda x, t, c, **kw: (calls.append(x.shape[0]), orig(x, t, c, **kw))[1]
    tr.train()
    assert calls == [2] * 6  # 3 steps x 2 micro-batches of 2 samples


def test_compiled_denoiser_trains_like_the_eager_one_and_saves_the_same_names(tiny_model_dir, tmp_path):
    """TrainConfig.compile: the denoiser is compiled in place, so a run gives the eager run's weights
    (to float tolerance; no LoRA dropout, whose masks compiled code draws from another stream) under
    the same names, and its checkpoint resumes in an eager run."""
    folder = tiny_model_dir("wan")
    eager = _trainer(folder, tmp_path / "eager", 3, dropout=0.0)
    eager_losses = eager.train().losses
    compiled = _trainer(folder, tmp_path / "compiled", 3, dropout=0.0, compile=True)
    assert compiled.spec.denoiser._compiled_call_impl is not None
    result = compiled.train()
    a, b = eager.recipe.state_dict(), compiled.recipe.state_dict()
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in b)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    assert len(result.losses) == 3 and result.losses == pytest.approx(eager_losses, rel=1e-4)
    resumed = _trainer(folder, tmp_path / "compiled", 4, dropout=0.0)  # eager run going on from the compiled run's step 3
    assert resumed.train().resumed_from == 3
    assert resumed.spec.denoiser._compiled_call_impl is None


def test_per_sample_loss_weights(tiny_model_dir, tmp_path):
    from motiontune.recipes.base import diffusion_loss

    pred, target = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    target[:, :, :2] = 3.0  # squared error 9 on the first half, 1 on the second
    assert float(diffusion_loss(pred, target)) == pytest.approx(5.0)
    w = torch.zeros(2, 1, 4)
    w[..., 2:] = 1.0
    assert float(diffusion_loss(pred, target, w)) == pytest.approx(1.0)
    assert float(diffusion_loss(pred, target, torch.full((2, 1, 4), 7.0))) == pytest.approx(5.0)
    with pytest.raises(ConfigError, match="loss_weight"):
        Sample(VIDEO, "x", loss_weight=-torch.ones(1, 2, 8, 8))

    folder = tiny_model_dir("wan")
    with torch.no_grad():
        latents = load_backbone(folder).encode_video(VIDEO[None])[0]

    def step_loss(weight):
        spec = load_backbone(folder)
        recipe = make_recipe("lora", rank=2, attention=("joint",))
        cfg = TrainConfig(output_dir=str(tmp_path / "w"), steps=1, progress=False, checkpoint_every=0, resume=False)
        sample = Sample(None, "x", latents=latents, loss_weight=weight)
        return Trainer(spec, recipe, TrainingData([sample]), cfg).train_step(0)[0]

    plain = step_loss(None)
    ones = torch.ones(1, *latents.shape[1:])
    assert step_loss(3.0 * ones) == pytest.approx(plain, rel=1e-5)  # uniform weights are the plain loss
    spot = ones.clone()
    spot[:, 0] = 10.0  # the first latent frame counts ten times
    assert step_loss(spot) != pytest.approx(plain, rel=1e-3)


def test_flow_shift_warps_training_noise_levels_as_the_closed_form():
    sched = FlowMatchSchedule(shift=3.0)
    gen = torch.Generator().manual_seed(0)
    t = sched.sample_timesteps(4000, torch.Generator().manual_seed(0), "uniform")
    u = torch.rand(4000, generator=gen, dtype=torch.float64)
    assert torch.allclose(t, (1000 * 3 * u / (1 + 2 * u)).float())
    # a third of the draws above sigma 0.8 at shift 2 (u > 2/3), against 8% for logit-normal(0, 1)
    s2 = FlowMatchSchedule(shift=2.0).sample_timesteps(20000, torch.Generator().manual_seed(1), "uniform") / 1000
    ln = FlowMatchSchedule().sample_timesteps(20000, torch.Generator().manual_seed(1), "logit_normal") / 1000
    assert abs(float((s2 > 0.8).double().mean()) - 1 / 3) < 0.015
    assert abs(float((ln > 0.8).double().mean()) - 0.0828) < 0.01


def test_timestep_phases_switch_distribution_and_shift(tiny_model_dir, tmp_path):
    cfg = TrainConfig(timestep_distribution="logit_normal", logit_std=0.5,
                      timestep_phases=[{"from_step": 3, "distribution": "uniform", "shift": 3.0}])
    assert cfg.timestep_settings(2) == {"distribution": "logit_normal", "shift": 1.0, "logit_mean": 0.0, "logit_std": 0.5}
    assert cfg.timestep_settings(3) == {"distribution": "uniform", "shift": 3.0, "logit_mean": 0.0, "logit_std": 0.5}
    seen = []
    spec = load_backbone(tiny_model_dir("wan"))
    orig = spec.schedule.sample_timesteps

    def spy(batch, generator=None, distribution="uniform", trange=None, logit_mean=0.0, logit_std=1.0, device="cpu"):
        seen.append((distribution, spec.schedule.shift, logit_std))
        return orig(batch, generator, distribution, trange, logit_mean, logit_std, device)

    spec.schedule.sample_timesteps = spy
    recipe = make_recipe("lora", rank=2, attention=("joint",))
    cfg = TrainConfig(output_dir=str(tmp_path), steps=5, progress=False, checkpoint_every=0, timestep_distribution="logit_normal",
                      logit_std=0.5, timestep_phases=[{"from_step": 3, "distribution": "uniform", "shift": 3.0}])
    Trainer(spec, recipe, TrainingData([Sample(VIDEO, "x")]), cfg).train()
    assert seen == [("logit_normal", 1.0, 0.5)] * 3 + [("uniform", 3.0, 0.5)] * 2


@pytest.mark.parametrize("phases, match", [
    ([{"distribution": "uniform"}], "from_step"),
    ([{"from_step": 0}], "from_step must be an integer above"),
    ([{"from_step": 5}, {"from_step": 5}], "from_step must be an integer above"),
    ([{"from_step": 5, "distribution": "beta"}], "distribution must be"),
    ([{"from_step": 5, "shift": 0}], "shift must be > 0"),
    ([{"from_step": 5, "sigma": 1}], "expected a mapping"),
])
def test_bad_timestep_phases(phases, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(timestep_phases=phases)


def test_video_recipe_on_reference_images_alone_trains_on_image_batches(tiny_model_dir, tmp_path):
    """A recipe whose steps ask for video batches (plain LoRA) trains on the images when only
    reference images are given (appearance customization); with neither it is a config error."""
    spec = load_backbone(tiny_model_dir("wan"))
    recipe = make_recipe("lora", rank=4, alpha=4, attention=("joint",))
    kinds = []
    recipe.on_step_start = lambda step, kind: kinds.append(kind)
    image = VIDEO[:, 0]
    cfg = TrainConfig(output_dir=str(tmp_path / "img"), steps=3, progress=False, learning_rate=1e-3, checkpoint_every=0)
    trainer = Trainer(spec, recipe, TrainingData(images=[Sample(image, "a photo of a red circle", "image")]), cfg)
    before = {k: v.clone() for k, v in recipe.state_dict().items()}
    result = trainer.train()
    assert kinds == ["image"] * 3 and result.steps == 3
    assert any(not torch.equal(before[k], v) for k, v in recipe.state_dict().items())
    with pytest.raises(ConfigError, match="no training data"):
        TrainingData()
