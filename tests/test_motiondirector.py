"""The motiondirector recipe and the core blocks it stands on (named adapters, passes, branches)."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from motiontune.adapters.base import AdapterSet
from motiontune.adapters.lora import inject_lora, lora_layers, lora_parameters
from motiontune.backbones import load_backbone
from motiontune.cli import main
from motiontune.data.dataset import Sample, TrainingData
from motiontune.data.video_io import write_video
from motiontune.errors import ConfigError
from motiontune.losses import debiased_loss
from motiontune.recipes import load_recipe, make_recipe
from motiontune.testing.tiny import tiny_families
from motiontune.training.plan import Pass, Stage
from motiontune.training.trainer import Trainer, TrainConfig
from motiontune.utils.files import load_tensors

HERE = os.path.dirname(__file__)


def _inputs(spec, frames=5, size=16):
    x = torch.randn(spec.latent_shape(frames, size, size), generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([900.0]), spec.encode_prompt(["a red circle moves left"])


def test_two_named_lora_adapters_are_both_active_and_trainable(tiny_model_dir):
    """diffusers' add_adapter used to activate only the newest adapter: the first one had no
    trainable parameters and changed nothing."""
    spec = load_backbone(tiny_model_dir("wan"))
    targets = [f"{s.path}.to_q" for s in spec.sites("joint")]
    inject_lora(spec.denoiser, targets, 4, 4, adapter_name="spatial")
    inject_lora(spec.denoiser, targets, 4, 4, adapter_name="temporal")
    for layer in lora_layers(spec.denoiser):
        assert list(layer.active_adapters) == ["spatial", "temporal"]
    spatial = lora_parameters(spec.denoiser, "spatial")
    assert spatial and all(p.requires_grad for p in spatial.values())
    x, t, cond = _inputs(spec)
    spec.denoiser.eval()
    with torch.no_grad():
        base = spec.predict(x, t, cond)
        for n, p in spatial.items():
            if "lora_B" in n:
                p.normal_(0, 0.5)
        changed = spec.predict(x, t, cond)
    assert (changed - base).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="already"):
        inject_lora(spec.denoiser, targets, 4, 4, adapter_name="spatial")


def test_adapter_set_scales_switches_and_subset_files(tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir("wan"))
    targets = [f"{s.path}.{r}" for s in spec.sites("joint") for r in ("to_q", "to_v")]
    aset = AdapterSet(spec)
    aset.add_lora("identity", targets, 4, 4)
    aset.add_lora("motion", targets, 4, 8)
    x, t, cond = _inputs(spec)
    spec.denoiser.eval()
    with torch.no_grad():
        base = spec.predict(x, t, cond)
        g = torch.Generator().manual_seed(1)
        for name in aset.names:
            for p in aset.parameters(name).values():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        both = spec.predict(x, t, cond)
        aset.disable("identity")
        motion_only = spec.predict(x, t, cond)
        aset.set_scale("identity", 0.0)
        aset.enable("identity")
        assert torch.equal(spec.predict(x, t, cond), motion_only)  # scale 0 = off
        aset.set_scales({"motion": 0.0})
        assert torch.equal(spec.predict(x, t, cond), base)
        aset.set_scales({"identity": 1.0, "motion": 1.0})
        assert torch.equal(spec.predict(x, t, cond), both)
    assert not torch.equal(both, motion_only) and not torch.equal(motion_only, base)
    written = aset.save(str(tmp_path), ["motion"])
    assert list(written) == ["motion"] and written["motion"]["alpha"] == 8.0
    assert os.path.isfile(tmp_path / "adapter_motion.safetensors") and not os.path.exists(tmp_path / "adapter_identity.safetensors")
    saved = load_tensors(str(tmp_path / "adapter_motion.safetensors"))
    assert saved and all(k.startswith("transformer.") and "identity" not in k for k in saved)
    with pytest.raises(ConfigError, match="no adapter named 'spatial'"):
        aset.set_scale("spatial", 1.0)
    with pytest.raises(ConfigError, match="adapter_identity"):
        aset.load(str(tmp_path), ["identity"])


def test_debiased_loss_matches_the_formula():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(2, 4, 5, 3, 3, generator=g), torch.randn(2, 4, 5, 3, 3, generator=g)
    anchor = int(torch.randint(5, (1,), generator=torch.Generator().manual_seed(7)))
    a = math.sqrt(2.0)
    p = a * pred - pred[:, :, anchor : anchor + 1]
    q = a * target - target[:, :, anchor : anchor + 1]
    expected = float(((p - q) ** 2).mean())
    got = float(debiased_loss(pred, target, torch.Generator().manual_seed(7)))
    assert got == pytest.approx(expected, rel=1e-6)
    # an error common to every frame (an appearance offset) weighs less than under the plain loss
    offset = torch.ones_like(pred)
    assert float(debiased_loss(target + offset, target, torch.Generator())) == pytest.approx((a - 1) ** 2, rel=1e-6)
    with pytest.raises(ConfigError):
        debiased_loss(pred[:, :, 0], target[:, :, 0], g)


def test_passes_drop_and_pools():
    rec = make_recipe("motiondirector", spatial_dropout=0.0)
    p = rec.passes(0, Stage(), torch.Generator().manual_seed(0))
    assert [x.name for x in p] == ["spatial", "temporal"]
    assert p[0].pool == "frame" and p[0].train == ("spatial",) and p[0].scales == {"temporal": 0.0} and p[0].flip == 0.5
    assert p[1].pool == "video" and p[1].train == ("temporal",) and p[1].scales == {"spatial": 1.0}
    rec = make_recipe("motiondirector", spatial_dropout=1.0)
    p = rec.passes(0, Stage(), torch.Generator().manual_seed(0))
    assert [x.name for x in p] == ["temporal"] and p[0].scales == {"spatial": 0.0}
    drops = [len(make_recipe("motiondirector").passes(s, Stage(), torch.Generator().manual_seed(s))) == 1 for s in range(2000)]
    assert 0.17 < sum(drops) / len(drops) < 0.23


def test_spatial_pass_sees_single_frames_and_temporal_loss_is_debiased(tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir("wan"))
    rec = make_recipe("motiondirector", rank=4, spatial_dropout=0.0)
    seen = []
    orig = rec.losses

    def spy(ctx):
        terms = orig(ctx)
        seen.append((ctx.pass_name, ctx.pool, tuple(ctx.x0.shape), sorted(terms)))
        return terms

    rec.losses = spy
    data = TrainingData([Sample(torch.rand(3, 5, 16, 16) * 2 - 1, "a red circle moves left")])
    Trainer(spec, rec, data, TrainConfig(output_dir=str(tmp_path), steps=2, progress=False, checkpoint_every=0)).train()
    assert seen[0] == ("spatial", "frame", (1, 16, 1, 2, 2), ["diffusion"])
    assert seen[1] == ("temporal", "video", (1, 16, 2, 2, 2), ["debiased", "diffusion"])


def test_frozen_branch_does_not_move_over_many_steps_with_accumulation(tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir("wan"))
    rec = make_recipe("motiondirector", rank=4, spatial_dropout=0.5)
    data = TrainingData([Sample(torch.rand(3, 5, 16, 16) * 2 - 1, "a red circle moves left")])
    cfg = TrainConfig(output_dir=str(tmp_path), steps=16, progress=False, learning_rate=1e-2, checkpoint_every=0,
                      gradient_accumulation_steps=2)
    tr = Trainer(spec, rec, data, cfg)
    assert set(tr.optimizers) == {"spatial", "temporal"}
    assert all(g["weight_decay"] == 1e-2 for o in tr.optimizers.values() for g in o.param_groups)
    dropped = trained = 0
    for step in range(cfg.steps):
        _, _, branches = tr.step_plan(step)
        before = [p.detach().clone() for p in tr.branches["spatial"]]
        moments = [v.clone() for st in tr.optimizers["spatial"].state.values() for v in st.values() if torch.is_tensor(v)]
        tr.train_step(step)
        same = all(torch.equal(a, p.detach()) for a, p in zip(before, tr.branches["spatial"]))
        now = [v for st in tr.optimizers["spatial"].state.values() for v in st.values() if torch.is_tensor(v)]
        if "spatial" in branches:
            trained += 1
            assert not same
        else:
            dropped += 1
            assert same and len(now) == len(moments) and all(torch.equal(a, b) for a, b in zip(moments, now))
    assert dropped and trained


def test_two_process_run_keeps_the_dropped_branch_still(tiny_model_dir, tmp_path):
    model = tiny_model_dir("wan")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29541"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29541",
           os.path.join(HERE, "scripts", "ddp_motiondirector.py"), model, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [json.load(open(tmp_path / f"log{r}.json")) for r in (0, 1)]
    assert logs[0] == logs[1]  # both ranks trained the same branches on the same steps
    frozen = [e for e in logs[0] if not e["trained"]]
    assert frozen and all(e["weights_same"] and e["optimizer_same"] for e in frozen)
    assert any(not e["weights_same"] for e in logs[0] if e["trained"])
    a, b = load_tensors(str(tmp_path / "rank0.safetensors")), load_tensors(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _clip(spec, path):
    rule = spec.frame_rule
    f = rule.fixed if rule.fixed is not None else next(n for n in range(4, 64) if rule.is_valid(n))
    m = spec.size_multiple
    write_video(torch.rand(3, f, m, m) * 2 - 1, path, fps=8)
    return f, m


@pytest.mark.parametrize("backbone", [*tiny_families(), "toy"])
def test_cli_train_then_generate(backbone, tiny_model_dir, tiny_toy, tmp_path, capsys):
    model = tiny_toy if backbone == "toy" else tiny_model_dir(backbone)
    spec = load_backbone(model)
    f, m = _clip(spec, str(tmp_path / "ref.mp4"))
    size = ["--num-frames", str(f), "--height", str(m), "--width", str(m)]
    out = tmp_path / "run"
    assert main(["train", "--backbone", model, "--recipe", "motiondirector", "--video", str(tmp_path / "ref.mp4"),
                 "--caption", "a red circle moves left", "--steps", "2", "--rank", "4", "--output", str(out), "--quiet", *size]) == 0
    info = json.loads((out / "motiontune.json").read_text())
    assert info["recipe"] == "motiondirector" and list(info["adapters"]) == ["temporal"]
    assert info["stages"] == [{"name": "dual-path", "steps": 2, "from_step": 0, "train": [], "pool": "video"}]
    assert main(["generate", "--adapter", str(out), "--prompt", "a blue square moves left", "--steps", "2",
                 "--output", str(tmp_path / "gen"), "--quiet", *size]) == 0
    written = [p for p in os.listdir(tmp_path / "gen") if p.endswith(".mp4")]
    assert len(written) == 1


def test_bad_input_is_refused_by_name(tiny_model_dir, tmp_path, capsys):
    spec = load_backbone(tiny_model_dir("wan"))
    data = TrainingData([Sample(torch.rand(3, 5, 16, 16) * 2 - 1, "a red circle moves left")])

    class Staged(type(make_recipe("motiondirector"))):
        def __init__(self, stages, passes=None, **kw):
            super().__init__(**kw)
            self._stages, self._passes = stages, passes

        def stages(self):
            return self._stages

        def passes(self, step, stage, generator):
            return self._passes or super().passes(step, stage, generator)

    def run(recipe, steps=2):
        Trainer(load_backbone(tiny_model_dir("wan")), recipe, data, TrainConfig(output_dir=str(tmp_path / "x"), steps=steps, progress=False, checkpoint_every=0)).train()

    with pytest.raises(ConfigError, match="not a branch"):
        run(Staged([Stage(train=("motion",))], rank=4))
    with pytest.raises(ConfigError, match="steps must be"):
        Stage(steps=0)
    with pytest.raises(ConfigError, match="left with 0 steps"):
        run(Staged([Stage("a", steps=2), Stage("b")], rank=4))
    with pytest.raises(ConfigError, match="add up to 3"):
        run(Staged([Stage("a", steps=1), Stage("b", steps=2)], rank=4), steps=4)
    with pytest.raises(ConfigError, match="unknown data pool"):
        run(Staged([Stage(pool="clips")], rank=4))
    with pytest.raises(ConfigError, match="not an adapter"):
        run(Staged([Stage()], [Pass(scales={"identity": 0.0})], rank=4))
    with pytest.raises(ConfigError, match="every 4-th frame .* leaves 2 of 5"):
        run(Staged([Stage(frame_stride=4)], rank=4))
    with pytest.raises(ConfigError, match="ship"):
        make_recipe("motiondirector", ship=("spatial",))
    # a folder without the temporal branch is refused by name, and nothing in it is touched
    good = tmp_path / "good"
    Trainer(spec, make_recipe("motiondirector", rank=4), data, TrainConfig(output_dir=str(good), steps=1, progress=False)).train()
    info = json.loads((good / "motiontune.json").read_text())
    info["adapters"] = {"spatial": info["adapters"]["temporal"]}
    (good / "motiontune.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="lacks the 'temporal' branch"):
        load_recipe(str(good), load_backbone(tiny_model_dir("wan")))
    assert main(["generate", "--adapter", str(good), "--prompt", "x", "--output", str(tmp_path / "g")]) == 2
    assert "lacks the 'temporal' branch" in capsys.readouterr().err
    assert (good / "adapter_temporal.safetensors").is_file()


def test_frame_pools_flip_and_stride_keep_indices():
    from motiontune.backbones.base import FrameRule

    clip = torch.rand(3, 9, 4, 6) * 2 - 1
    data = TrainingData([Sample(clip, "c")])
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        (s,) = data.draw("video", g, 1, frame_stride=2, frame_rule=FrameRule(k=1))
        idx = s.frame_indices.tolist()
        assert idx in ([0, 2, 4, 6, 8], [1, 3, 5, 7])
        assert torch.equal(s.pixels, clip[:, idx])
        seen.add(tuple(idx))
    assert len(seen) == 2
    with pytest.raises(ConfigError, match="every 4-th frame leaves"):
        data.draw("video", torch.Generator().manual_seed(0), 1, frame_stride=4, frame_rule=FrameRule(k=4, r=1))
    flips = 0
    for i in range(40):
        (s,) = data.draw("frame", torch.Generator().manual_seed(i), 1, flip=0.5)
        f = int(s.frame_indices[0])
        assert s.kind == "image"
        if torch.equal(s.pixels, clip[:, f].flip(-1)):
            flips += 1
        else:
            assert torch.equal(s.pixels, clip[:, f])
    assert 8 < flips < 32
    # draws without flip or stride keep their random stream
    a = data.draw("image", torch.Generator().manual_seed(5), 3)
    g = torch.Generator().manual_seed(5)
    for s in a:
        assert int(torch.randint(1, (1,), generator=g)) == 0
        assert torch.equal(s.pixels, clip[:, int(torch.randint(9, (1,), generator=g))])


def test_recipe_default_steps_apply_when_none_given(tiny_model_dir, monkeypatch):
    from motiontune import api

    seen = []

    class Capture:
        def __init__(self, spec, recipe, data, config, metadata=None):
            seen.append(config.steps)

        def train(self):
            return None

    monkeypatch.setattr(api, "Trainer", Capture)
    clip = (torch.rand(5, 16, 16, 3) * 255).byte().numpy()
    kw = dict(captions="a red circle", output_dir="unused", num_frames=5, height=16, width=16)
    api.train(tiny_model_dir("wan"), videos=[clip], recipe="motiondirector", **kw)
    api.train(tiny_model_dir("wan"), videos=[clip], recipe="motiondirector", steps=7, **kw)
    api.train(tiny_model_dir("wan"), videos=[clip], recipe="lora", **kw)
    assert seen == [150, 7, 300]


class TwoStage(type(make_recipe("motiondirector"))):
    """A two-stage variant: the spatial branch on single frames first, then the temporal one on clips."""

    def stages(self):
        return [Stage("appearance", steps=3, train=("spatial",), pool="frame", flip=0.5, learning_rate=2e-2),
                Stage("motion", train=("temporal",), weight_decay=0.0, optimizer="adam")]

    def passes(self, step, stage, generator):
        return [Pass(pool=stage.pool, train=stage.train, name=stage.name,
                     scales={"temporal": 0.0} if stage.name == "appearance" else {})]


def test_two_stage_run_resumes_exactly_across_the_stage_boundary(tiny_model_dir, tmp_path):
    data = TrainingData([Sample(torch.rand(3, 5, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1, "a red circle")])

    def run(folder, stop_at=None):
        spec = load_backbone(tiny_model_dir("wan"))
        rec = TwoStage(rank=4)
        cfg = TrainConfig(output_dir=str(folder), steps=6, progress=False, learning_rate=1e-2, checkpoint_every=0, stop_at=stop_at)
        tr = Trainer(spec, rec, data, cfg)
        res = tr.train()
        return rec, tr, res

    rec_a, tr_a, _ = run(tmp_path / "a")
    assert [s.stage.name for s in tr_a.spans] == ["appearance", "motion"]
    assert set(tr_a.optimizers) == {"spatial", "temporal:adam"}
    _, _, res = run(tmp_path / "b", stop_at=3)
    assert res.finished is False and res.steps == 3
    rec_b, tr_b, res = run(tmp_path / "b")
    assert res.resumed_from == 3 and res.finished
    a, b = rec_a.state_dict(), rec_b.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in tr_a.optimizers:
        sa, sb = tr_a.optimizers[key].state_dict(), tr_b.optimizers[key].state_dict()
        for pid in sa["state"]:
            for name, v in sa["state"][pid].items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb["state"][pid][name])), (key, name)
    # the stages are recorded with the adapter
    info = json.loads((tmp_path / "a" / "motiontune.json").read_text())
    assert [s["name"] for s in info["stages"]] == ["appearance", "motion"] and info["stages"][1]["from_step"] == 3


def test_inversion_noise_prior(tiny_model_dir, tmp_path):
    from motiontune import api
    from motiontune.diffusion.sampling import SamplingConfig, initial_noise
    from motiontune.probe.inversion import encode, invert

    model = tiny_model_dir("wan")
    ref = str(tmp_path / "ref.mp4")
    write_video(torch.rand(3, 5, 16, 16) * 2 - 1, ref, fps=8)
    out = str(tmp_path / "run")
    api.train(model, videos=[ref], captions="a red circle moves left", output_dir=out, recipe="motiondirector",
              recipe_settings={"rank": 4}, steps=2, num_frames=5, height=16, width=16, progress=False)
    spec, recipe, meta = api.load(adapter=out)
    cfg = SamplingConfig(num_inference_steps=3, num_frames=5, height=16, width=16).resolved(spec)
    assert recipe.initial_latents(spec, cfg, ["a", "b"], meta) is None  # off by default
    recipe.config.noise_prior = 0.5
    got = recipe.initial_latents(spec, cfg, ["a", "b"], meta)
    from motiontune.data.frames import prepare_video

    inverted = invert(spec, encode(spec, prepare_video(ref, 5, 16, 16, frame_rule=spec.frame_rule)), "a red circle moves left", 3,
                      recipe=recipe).latents[0]
    expected = math.sqrt(0.5) * inverted + math.sqrt(0.5) * initial_noise(spec, cfg, 2)
    assert torch.allclose(got, expected, atol=1e-6)
    a = api.generate(["a blue square"], adapter=out, steps=3, progress=False).videos
    # the adapter's LoRA dropout (0.1) is off at sampling: the same seed gives the same video
    assert torch.equal(api.generate(["a blue square"], adapter=out, steps=3, progress=False).videos, a)
    b = api.generate(["a blue square"], adapter=out, steps=3, progress=False, noise_prior=0.5).videos
    assert not torch.equal(a, b)
    with pytest.raises(ConfigError, match="training size"):
        api.generate(["x"], adapter=out, steps=3, num_frames=9, progress=False, noise_prior=0.5)
    with pytest.raises(ConfigError, match=r"noise_prior must lie in \[0, 1\]"):
        api.generate(["x"], adapter=out, steps=3, progress=False, noise_prior=1.5)
    os.remove(ref)
    with pytest.raises(ConfigError, match="reference clip .* not there"):
        api.generate(["x"], adapter=out, steps=3, progress=False, noise_prior=0.5)
    lora = str(tmp_path / "lora")
    api.train(model, videos=[torch.rand(3, 5, 16, 16) * 2 - 1], captions="x", output_dir=lora, steps=1, num_frames=5,
              height=16, width=16, progress=False)
    with pytest.raises(ConfigError, match="noise_prior needs an adapter"):
        api.generate(["x"], adapter=lora, steps=2, progress=False, noise_prior=0.5)


def test_motiondirector_trains_on_reference_images_alone(tiny_model_dir, tmp_path):
    """Appearance customization from still images: the spatial pass takes the images as its frames
    and the temporal pass becomes an image pass (the trainer's rule for image-only data)."""
    spec = load_backbone(tiny_model_dir("wan"))
    rec = make_recipe("motiondirector", rank=4, spatial_dropout=0.0)
    seen = []
    orig = rec.losses

    def spy(ctx):
        seen.append((ctx.pass_name, ctx.pool, ctx.x0.shape[2]))
        return orig(ctx)

    rec.losses = spy
    images = [Sample(torch.rand(3, 16, 16) * 2 - 1, "a pink square", "image") for _ in range(2)]
    Trainer(spec, rec, TrainingData([], images), TrainConfig(output_dir=str(tmp_path), steps=2, progress=False)).train()
    assert seen == [("spatial", "frame", 1), ("temporal", "image", 1)] * 2
