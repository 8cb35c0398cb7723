"""follow_your_motion: head classification, head-split LoRA, the two stages, CLI and bad input."""

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from motiontune.adapters.head_split import HeadSplitLoraLinear, head_channels, inject_head_split_lora
from motiontune.analysis.heads import HeadTypes, classify_heads, head_scores, head_statistics, is_temporal
from motiontune.backbones import load_backbone
from motiontune.cli import main
from motiontune.data.dataset import Sample, TrainingData
from motiontune.data.video_io import write_video
from motiontune.errors import ConfigError
from motiontune.hooks.call import DenoiserCall, denoiser_call
from motiontune.losses.motion import motion_loss
from motiontune.recipes import load_recipe, make_recipe
from motiontune.recipes.follow_your_motion import sparse_positions
from motiontune.training.trainer import Trainer, TrainConfig

PROMPT = "a red circle moves left"
REFERENCE = os.path.join(os.path.dirname(__file__), "..", "motiontune", "toyworld", "assets", "reference_orbit.mp4")


# ---------------------------------------------------------------------- classification
def _dense(q, k, frames, hw, v0, mask=None):
    """The per-head sums of the full attention map, materialised (the reference)."""
    d = q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    nv = frames * hw
    p = scores.softmax(-1)[:, :, v0:v0 + nv, v0:v0 + nv]
    n = torch.arange(nv)
    fr, pos = n // hw, n % hw
    ms = (fr[:, None] == fr[None, :]).float()
    mt = ((pos[:, None] == pos[None, :]) & (fr[:, None] != fr[None, :])).float()
    return (p * ms).sum((0, 2, 3)), (p * mt).sum((0, 2, 3)), p


@pytest.mark.parametrize("text_position", ["none", "before", "after"])
def test_streamed_sums_match_the_dense_attention_map(text_position):
    torch.manual_seed(0)
    b, h, frames, hw, d = 2, 3, 3, 4, 8
    text = 0 if text_position == "none" else 5
    s = frames * hw + text
    q, k = torch.randn(b, h, s, d), torch.randn(b, h, s, d)
    mask = torch.ones(b, 1, 1, s, dtype=torch.bool)
    if text:
        mask[..., (0 if text_position == "before" else s - 1)] = False  # a padded text token
    v0 = text if text_position == "before" else 0
    ds, dt, p = _dense(q, k, frames, hw, v0, mask)
    for chunk in (1, 5, 100):
        st = head_statistics(q, k, frames, hw, text_position=text_position, attn_mask=mask, chunk=chunk)
        assert torch.allclose(st["spatial"].float(), ds, atol=1e-5) and torch.allclose(st["temporal"].float(), dt, atol=1e-5)
        assert torch.allclose(st["square"].float(), (p ** 2).sum((0, 2, 3)), atol=1e-5)
    sp, tp = head_scores(st, "cosine")
    n = frames * hw
    ms = torch.block_diag(*[torch.ones(hw, hw)] * frames)
    cos = [(p[:, i] * ms).sum() / (p[:, i].norm() * math.sqrt(b * n * hw)) for i in range(h)]
    assert torch.allclose(sp.float(), torch.stack(cos), atol=1e-5)
    mass_s, mass_t = head_scores(st, "mass")
    assert torch.allclose(mass_s.float(), ds / (b * n), atol=1e-6) and torch.allclose(mass_t.float(), dt / (b * n), atol=1e-6)


def test_criteria_follow_the_paper_and_the_code():
    s, t = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.7, 0.8, 1.0])
    # paper: temporal if Sim_s < 1.3 Sim_t
    assert is_temporal(s, t, "cosine", 1.3).tolist() == [False, True, True]
    # code: temporal if mass_t >= 1.3 mass_s
    assert is_temporal(torch.tensor([0.5, 0.5]), torch.tensor([0.64, 0.65]), "mass", 1.3).tolist() == [False, True]


class _ForcedProcessor:
    """Each head attends within its frame (spatial) or to its position in every frame (temporal)."""

    def __init__(self, kinds, hw):
        self.kinds, self.hw = kinds, hw

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        b, s, _ = hidden_states.shape
        d = attn.inner_dim // attn.heads
        n = torch.arange(s)
        q = torch.zeros(b, attn.heads, s, d)
        for head, kind in enumerate(self.kinds):
            q[:, head, n, (n % self.hw) if kind == "temporal" else (n // self.hw)] = 40.0
        v = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, q, v)
        return attn.to_out[0](out.transpose(1, 2).flatten(2))


@pytest.mark.parametrize("criterion", ["cosine", "mass"])
def test_known_answer_forced_heads_are_classified_exactly(criterion, specs):
    spec = specs("wan")
    kinds = [["spatial", "temporal"], ["temporal", "spatial"]]
    originals = [blk.attn1.processor for blk in spec.denoiser.blocks]
    try:
        for blk, ks in zip(spec.denoiser.blocks, kinds):
            blk.attn1.set_processor(_ForcedProcessor(ks, hw=4))
        x0 = torch.randn(1, 16, 3, 4, 4)  # 3 latent frames of 2x2 tokens
        types = classify_heads(spec, x0, PROMPT, criterion=criterion, chunk=5)
    finally:
        for blk, proc in zip(spec.denoiser.blocks, originals):
            blk.attn1.set_processor(proc)
    assert [layer["types"] for layer in types.layers] == kinds
    sp, tp = types.layers[0]["spatial_score"], types.layers[0]["temporal_score"]
    if criterion == "mass":  # spatial head: all mass in its frame; temporal head: 2/3 in the other frames
        assert sp[0] == pytest.approx(1.0) and tp[1] == pytest.approx(2 / 3) and sp[1] == pytest.approx(1 / 3)
    else:  # cosines: 1 and 0; sqrt(2/3) and 1/sqrt(12)
        assert sp[0] == pytest.approx(1.0) and tp[0] == pytest.approx(0.0, abs=1e-6)
        assert tp[1] == pytest.approx(math.sqrt(2 / 3)) and sp[1] == pytest.approx(1 / math.sqrt(12))


@pytest.mark.parametrize("family", ["cogvideox", "hunyuan_video", "toy"])
def test_classification_runs_on_every_joint_backbone(family, specs):
    spec = specs(family)
    c = spec.latent_channels
    x0 = torch.randn(1, c, 3, 4, 4) if family != "toy" else torch.randn(1, c, 3, 8, 8)
    types = classify_heads(spec, x0, PROMPT, criterion="mass")
    assert [layer["path"] for layer in types.layers] == [s.path for s in spec.sites("joint")]
    for layer in types.layers:  # masses: non-negative, at most one together
        for s, t in zip(layer["spatial_score"], layer["temporal_score"]):
            assert s >= 0 and t >= 0 and s + t <= 1 + 1e-6
    types.check(spec)


def test_latte_and_unet3d_have_nothing_to_classify(specs):
    for family in ("latte", "unet3d"):
        spec = specs(family)
        with pytest.raises(ConfigError, match="explicit temporal attention"):
            classify_heads(spec, torch.randn(1, spec.latent_channels, 3, 4, 4), PROMPT)


def test_too_small_a_grid_is_refused(specs):
    spec = specs("wan")
    with pytest.raises(ConfigError, match="at least 2 frames of at least 2 tokens"):
        classify_heads(spec, torch.randn(1, 16, 3, 2, 2), PROMPT)


# ---------------------------------------------------------------------- head-split LoRA
def test_head_split_layer_is_the_base_at_init_and_acts_only_on_its_heads():
    torch.manual_seed(0)
    heads, dim = 4, 3
    q = torch.nn.Linear(8, heads * dim)
    o = torch.nn.Linear(heads * dim, 8)
    model = torch.nn.ModuleDict({"q": q, "o": o})
    w_q, b_q, w_o, b_o = q.weight.clone(), q.bias.clone(), o.weight.clone(), o.bias.clone()
    x, y = torch.randn(2, 5, 8), torch.randn(2, 5, heads * dim)
    base_q, base_o = q(x), o(y)
    spatial, temporal = head_channels([0, 2], dim), head_channels([1, 3], dim)
    inject_head_split_lora(model, {"q": ("rows", spatial), "o": ("columns", spatial)}, rank=2, alpha=4.0, adapter_name="spatial")
    inject_head_split_lora(model, {"q": ("rows", temporal), "o": ("columns", temporal)}, rank=2, alpha=4.0, adapter_name="temporal")
    assert isinstance(model["q"], HeadSplitLoraLinear) and model["q"].adapter_names() == ["spatial", "temporal"]
    assert torch.equal(model["q"](x), base_q) and torch.equal(model["o"](y), base_o)  # no-op at init
    with torch.no_grad():
        for layer in (model["q"], model["o"]):
            layer.hs_up["spatial"].weight.normal_()
    out_q, out_o = model["q"](x), model["o"](y)
    # q: only the spatial heads' rows move, by s * B A x
    delta = 2.0 * model["q"].hs_up["spatial"](model["q"].hs_down["spatial"](x))
    assert torch.equal(out_q[..., temporal], base_q[..., temporal])
    assert torch.allclose(out_q[..., spatial], base_q[..., spatial] + delta, atol=1e-6)
    # o: reads only the spatial heads' columns
    y2 = y.clone()
    y2[..., temporal] += 1.0
    assert torch.allclose(model["o"](y2) - o(y2), out_o - base_o, atol=1e-6)
    # base weights and biases untouched and frozen; scale and switch per name
    assert torch.equal(q.weight, w_q) and torch.equal(q.bias, b_q) and torch.equal(o.weight, w_o) and torch.equal(o.bias, b_o)
    assert not q.weight.requires_grad and model["q"].hs_down["temporal"].weight.requires_grad
    model["q"].set_adapter_scale("spatial", 0.0)
    assert torch.equal(model["q"](x), base_q)
    model["q"].set_adapter_scale("spatial", 1.0)
    model["q"].set_adapter_enabled("spatial", False)
    assert torch.equal(model["q"](x), base_q)


@pytest.mark.parametrize("family", ["wan", "cogvideox", "hunyuan_video", "toy"])
def test_recipe_is_the_base_model_at_init_and_splits_by_the_head_types(family, tiny_model_dir, tiny_toy):
    spec = load_backbone(tiny_toy if family == "toy" else tiny_model_dir(family))
    c = spec.latent_channels
    x, t, cond = torch.randn(1, c, 3, 4, 4), torch.tensor([900.0]), spec.encode_prompt([PROMPT])
    with torch.no_grad():
        base = spec.predict(x, t, cond)
    recipe = make_recipe("follow_your_motion", rank=2)
    recipe.apply(spec)  # no reference: the fixed half split
    assert recipe.head_types.method == "half"
    with torch.no_grad():
        assert torch.equal(denoiser_call(spec, recipe, x, t, cond, DenoiserCall("train", t, tuple(x.shape))), base)
    modules = dict(spec.denoiser.named_modules())
    for site in spec.sites("joint"):
        layer = modules[f"{site.path}.{site.projections['q']}"]
        for name in ("spatial", "temporal"):
            heads = recipe.head_types.heads_of(site.path, name)
            assert layer.channels[name].tolist() == head_channels(heads, site.head_dim)


# ---------------------------------------------------------------------- training
def _clip_data(frames=41, size=32):
    g = torch.Generator().manual_seed(0)
    return TrainingData([Sample(torch.rand(3, frames, size, size, generator=g) * 2 - 1, PROMPT, source="clip")])


def test_stages_train_only_their_branch_with_sparse_frames_at_adaptive_positions(specs, tmp_path, monkeypatch):
    spec = load_backbone(specs("wan").source)
    recipe = make_recipe("follow_your_motion", rank=2, head_split="half", learning_rate=1e-2)
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), steps=4, progress=False, checkpoint_every=0)
    trainer = Trainer(spec, recipe, _clip_data(), cfg, {"size": [41, 32, 32]})
    assert [(s.stage.name, s.end - s.start, s.stage.frame_stride) for s in trainer.spans] == [("spatial", 2, 1), ("temporal", 2, 5)]
    seen = []
    real = spec.temporal_position_context
    monkeypatch.setattr(spec, "temporal_position_context", lambda pos: (seen.append(torch.as_tensor(pos)), real(pos))[1])
    shapes = []
    spec.denoiser.register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["hidden_states"].shape)), with_kwargs=True)
    branches = recipe.branches()
    for step in range(4):
        before = {b: {k: v.detach().clone() for k, v in ps.items()} for b, ps in branches.items()}
        trainer.train_step(step)
        moved = {b for b, ps in branches.items() if any(not torch.equal(before[b][k], p.detach()) for k, p in ps.items())}
        assert moved == ({"spatial"} if step < 2 else {"temporal"})
    # spatial: one frame; temporal: every 5th of 41 frames from a random offset, cut to 4k+1 (9 or 5 frames:
    # 3 or 2 latent frames of the full clip's 11), at the positions they span in the full clip
    frames = [s[2] for s in shapes]
    assert frames[:2] == [1, 1] and all(f in (2, 3) for f in frames[2:])
    assert len(seen) == 2 and all(torch.allclose(p, sparse_positions(11, f)) for p, f in zip(seen, frames[2:]))
    assert torch.allclose(sparse_positions(21, 5), torch.tensor([0.0, 4.2, 8.4, 12.6, 16.8], dtype=torch.float64))


def test_motion_loss_paper_and_code_variants():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 4, 5, 5, generator=g)
    pred = torch.randn(2, 3, 4, 5, 5, generator=g)
    assert motion_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    assert motion_loss(2 * target + 1.0, target).item() == pytest.approx(0.0, abs=1e-6)  # scale and offset free
    dp, dt = pred.diff(dim=2), target.diff(dim=2)
    by_frame = [1 - F.cosine_similarity(dp[b, :, i].flatten(), dt[b, :, i].flatten(), dim=0) for b in range(2) for i in range(3)]
    assert motion_loss(pred, target).item() == pytest.approx(torch.stack(by_frame).mean().item(), rel=1e-5)
    over_frames = 1 - F.cosine_similarity(dp.abs(), dt.abs(), dim=2)
    assert motion_loss(pred, target, "abs").item() == pytest.approx(over_frames.mean().item(), rel=1e-5)


# ---------------------------------------------------------------------- CLI
def _train(model, video, out, *extra):
    return main(["train", "--backbone", model, "--recipe", "follow_your_motion", "--video", video, "--caption", PROMPT,
                 "--steps", "2", "--rank", "2", "--output", str(out), "--quiet", *extra])


@pytest.fixture(scope="module")
def wan_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "ref.mp4"
    write_video(torch.rand(3, 41, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1, path, fps=8)
    return str(path)


def test_cli_heads_then_train_and_generate_on_the_toy_model(tmp_path, capsys):
    assert main(["heads", "--backbone", "toy", "--video", REFERENCE, "--caption", "a red circle orbits on a black background",
                 "--output", str(tmp_path / "heads")]) == 0
    printed = capsys.readouterr().out
    assert "blocks.0.attn1:" in printed and "temporal heads" in printed
    types = HeadTypes.load(str(tmp_path / "heads" / "head_types.json"))
    assert len(types.layers) == 6 and all(layer["heads"] == 4 for layer in types.layers) and types.info["timestep"] > 900
    from PIL import Image

    with Image.open(tmp_path / "heads" / "heads.png") as im:
        assert im.size[0] > 50 and im.size[1] > 50
    out = tmp_path / "run"
    # the 17-frame toy clip: every 3rd frame (every 5th leaves fewer than 5 frames from some offsets)
    assert _train("toy", REFERENCE, out, "--set", f"head_types={tmp_path / 'heads' / 'head_types.json'}", "--set", "sparse_stride=3") == 0
    info = json.loads((out / "motiontune.json").read_text())
    assert list(info["adapters"]) == ["temporal"] and info["adapters"]["temporal"]["kind"] == "head_split_lora"
    assert HeadTypes.load(str(out / "head_types.json")).layers == types.layers
    assert info["stages"][1]["name"] == "temporal" and info["config"]["learning_rate"] == 1e-3  # the toy folder's
    with safe_open(str(out / "adapter_temporal.safetensors"), "pt") as fh:
        assert fh.metadata()["format"] == "motiontune.head_split_lora"
    assert main(["generate", "--adapter", str(out), "--prompt", "a blue square orbits on a black background", "--steps", "2",
                 "--output", str(tmp_path / "gen"), "--quiet"]) == 0
    assert len([p for p in os.listdir(tmp_path / "gen") if p.endswith(".mp4")]) == 1


def test_cli_train_and_generate_on_a_tiny_dit_with_classification(tiny_model_dir, wan_clip, tmp_path):
    model = tiny_model_dir("wan")
    size = ["--num-frames", "41", "--height", "32", "--width", "32"]
    out = tmp_path / "run"
    assert _train(model, wan_clip, out, *size, "--set", "head_criterion=mass", "--set", "head_alpha=2.5") == 0
    info = json.loads((out / "motiontune.json").read_text())
    assert info["follow_your_motion"]["source"].startswith("classified from")
    assert main(["generate", "--adapter", str(out), "--prompt", PROMPT, "--steps", "2", "--output", str(tmp_path / "gen"),
                 "--quiet", *size]) == 0
    spec = load_backbone(model)
    recipe = load_recipe(str(out), spec)
    assert recipe.adapter_names() == ["temporal"] and recipe.adapter_scales(500.0) == {"temporal": 0.5}


def test_bad_input_is_refused_in_one_line(tiny_model_dir, tiny_toy, wan_clip, tmp_path, capsys):
    model = tiny_model_dir("wan")
    size = ["--num-frames", "41", "--height", "32", "--width", "32"]

    def refused(message, *args):
        capsys.readouterr()
        assert _train(model, wan_clip, tmp_path / "x", *size, *args) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("motiontune: ") and message in err, err
        assert not (tmp_path / "x").exists()

    refused("sparse_stride must be", "--set", "sparse_stride=0")
    refused("too few for sparse_stride=5", "--num-frames", "13")
    refused("left no temporal heads", "--set", "head_alpha=0.000001")
    # a head types file of another model (the toy model: 6 layers of 4 heads)
    other = tmp_path / "toy_types.json"
    layers = [{"path": f"blocks.{i}.attn1", "heads": 4, "types": ["spatial", "spatial", "temporal", "temporal"]} for i in range(6)]
    HeadTypes(layers).save(str(other))
    refused("made for a model with 6 attention layers of 4 heads; this wan model has 2 of 2 heads", "--set", f"head_types={other}")
    # an adapter trained on one model, loaded onto another with other heads
    good = tmp_path / "good"
    assert _train(model, wan_clip, good, *size, "--set", "head_split=half") == 0
    capsys.readouterr()
    assert main(["generate", "--adapter", str(good), "--backbone", tiny_toy, "--prompt", "x", "--output", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "this wan model has 1 of 2 heads" in err
    assert not (tmp_path / "g").exists()


def test_wan_frame_rule_is_what_its_vae_encodes_whole():
    spec = load_backbone("toy")  # a Wan VAE compressing time by 2: only 4k+1 frames encode whole
    assert not spec.frame_rule.is_valid(7) and spec.frame_rule.is_valid(9)
    with torch.no_grad():
        for n in (5, 9):
            assert spec.encode_video(torch.zeros(1, 3, n, 32, 32)).shape[2] == spec.latent_shape(n, 32, 32)[2]


def test_ablation_switches(specs):
    spec = load_backbone(specs("wan").source)
    recipe = make_recipe("follow_your_motion", rank=2, head_split="none", adaptive_rope=False, motion_loss="none")
    recipe.apply(spec)
    modules = dict(spec.denoiser.named_modules())
    site = spec.sites("joint")[0]
    layer = modules[f"{site.path}.to_q"]
    assert layer.channels["spatial"].tolist() == layer.channels["temporal"].tolist() == list(range(site.heads * site.head_dim))
    recipe._full_frames = 11
    call = DenoiserCall("train", torch.tensor([500.0]), (1, 16, 3, 4, 4), pass_name="temporal")
    import contextlib

    assert isinstance(recipe.forward_context(call), contextlib.nullcontext)  # raw positions
    recipe.config.adaptive_rope = True
    assert not isinstance(recipe.forward_context(call), contextlib.nullcontext)
    from motiontune.recipes.base import LossContext

    pred, target = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 16, 3, 4, 4)
    ctx = LossContext(spec, "video", target, target, target, call.t, {}, pred, target, 0, pass_name="temporal")
    assert set(recipe.losses(ctx)) == {"diffusion"}
    recipe.config.motion_loss = "abs"
    assert set(recipe.losses(ctx)) == {"diffusion", "motion"}
    with pytest.raises(ConfigError, match="takes exactly"):
        make_recipe("follow_your_motion")._check_stride(specs("latte"), [Sample(torch.zeros(3, 16, 8, 8), PROMPT)])
