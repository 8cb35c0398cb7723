"""Interop: LoRA export in the original key naming (checked with diffusers' own loader for such files)."""

import json
import os

import pytest
import torch
from safetensors import safe_open

from motiontune.backbones import load_backbone
from motiontune.cli import main
from motiontune.errors import ConfigError
from motiontune.interop.comfyui import export, hunyuan_state, LowRank
from motiontune.recipes import load_recipe, make_recipe


def tiny_size(spec):
    rule = spec.frame_rule
    frames = rule.fixed if rule.fixed is not None else next(n for n in (5, 4, 3, 9) if rule.is_valid(n))
    return frames, spec.size_multiple, spec.size_multiple


def trained_folder(folder, tmp_path, recipe, seed=0, name="adapter"):
    """``recipe`` applied to the model in ``folder`` with random non-zero weights, saved like a run."""
    spec = load_backbone(folder)
    recipe.apply(spec)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in recipe.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    out = str(tmp_path / name)
    recipe.save(out, {"backbone": {"family": spec.family, "source": folder}})
    return out


def outputs(spec, cond, seed=0):
    f, h, w = tiny_size(spec)
    x = torch.randn(spec.latent_shape(f, h, w), generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([400.0])
    spec.denoiser.eval()  # LoRA dropout off, as in sampling
    with torch.no_grad():
        return spec.predict(x, t, cond)


def keys_of(path):
    with safe_open(path, "pt") as fh:
        return set(fh.keys()), fh.metadata()


@pytest.mark.parametrize("name,settings", [
    ("lora", dict(rank=4, alpha=8.0, attention=("joint", "cross"), scale=0.7)),
    ("motiondirector", dict(rank=4, alpha=2.0, ship=("spatial", "temporal"))),
])
def test_wan_export_loads_in_diffusers_with_the_same_output(name, settings, tiny_model_dir, tmp_path):
    folder = tiny_model_dir("wan")
    adapter = trained_folder(folder, tmp_path, make_recipe(name, **settings))
    out = str(tmp_path / "comfy.safetensors")
    result = export(adapter, "comfyui", out)
    keys, meta = keys_of(out)
    assert all(k.startswith("diffusion_model.blocks.") for k in keys)
    assert "diffusion_model.blocks.0.self_attn.q.lora_A.weight" in keys and "diffusion_model.blocks.1.self_attn.o.alpha" in keys
    if name == "lora":
        assert "diffusion_model.blocks.0.cross_attn.k.lora_B.weight" in keys
    else:  # only the temporal branch is applied at inference
        assert result.layers == 8 and any("spatial" in n for n in result.notes)
    assert meta["modelspec.architecture"] == "wan2.1/lora"

    ours = load_backbone(folder)
    recipe = load_recipe(adapter, ours)
    recipe.apply_schedule(400.0)  # the inference scales (motiondirector: the spatial branch off)
    theirs = load_backbone(folder)
    theirs.pipe.load_lora_weights(out)  # diffusers' converter for non-diffusers Wan LoRA files
    cond = ours.encode_prompt(["a dog runs"])
    a, b, plain = outputs(ours, cond), outputs(theirs, cond), outputs(load_backbone(folder), cond)
    assert (a - plain).abs().max() > 1e-3, "the adapter must change the output"
    assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())


def test_wan_export_same_video_through_the_sampler(tiny_toy, tmp_path):
    from motiontune.diffusion.sampling import SamplingConfig, generate

    adapter = trained_folder(tiny_toy, tmp_path, make_recipe("lora", rank=2, alpha=4.0))
    out = str(tmp_path / "toy.safetensors")
    assert main(["export", adapter, "--format", "comfyui", "--output", out]) == 0
    ours = load_backbone(tiny_toy)
    recipe = load_recipe(adapter, ours)
    theirs = load_backbone(tiny_toy)
    theirs.pipe.load_lora_weights(out)
    cfg = SamplingConfig(num_inference_steps=2, num_frames=5, height=16, width=16, seed=3)
    a = generate(ours, ["a red circle moves left"], recipe=recipe, config=cfg, progress=False)
    b = generate(theirs, ["a red circle moves left"], config=cfg, progress=False)
    assert torch.allclose(a, b, atol=1e-5)


def test_hunyuan_export_fuses_projections_exactly(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("hunyuan_video")
    adapter = trained_folder(folder, tmp_path, make_recipe("lora", rank=3, alpha=6.0))
    out = str(tmp_path / "hv.safetensors")
    export(adapter, "comfyui", out)
    keys, _ = keys_of(out)
    assert "diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight" in keys
    assert "diffusion_model.single_blocks.0.linear1.lora_B.weight" in keys
    assert not any(k.endswith(".alpha") for k in keys)  # the scale is folded into B
    from motiontune.utils.files import load_tensors

    state = load_tensors(out)
    spec = load_backbone(folder)
    recipe = load_recipe(adapter, spec)
    layers = dict(spec.denoiser.named_modules())

    def delta(module):
        m = layers[module]
        return m.scaling["default"] * m.lora_B["default"].weight @ m.lora_A["default"].weight

    def fused(name):
        return state[f"diffusion_model.{name}.lora_B.weight"] @ state[f"diffusion_model.{name}.lora_A.weight"]

    q, k, v = (delta(f"transformer_blocks.0.attn.to_{p}") for p in "qkv")
    assert torch.allclose(fused("double_blocks.0.img_attn_qkv"), torch.cat([q, k, v]), atol=1e-6)
    q, k, v = (delta(f"single_transformer_blocks.0.attn.to_{p}") for p in "qkv")
    d = fused("single_blocks.0.linear1")
    base = layers["single_transformer_blocks.0.attn.to_q"].base_layer.weight
    mlp = layers["single_transformer_blocks.0.proj_mlp"].weight
    assert d.shape == (3 * base.shape[0] + mlp.shape[0], base.shape[1])  # linear1's shape in the original model
    assert torch.allclose(d[: 3 * base.shape[0]], torch.cat([q, k, v]), atol=1e-6)
    assert d[3 * base.shape[0]:].abs().max() == 0
    assert recipe is not None


def test_hunyuan_export_double_blocks_load_in_diffusers(tiny_model_dir, tmp_path):
    """diffusers' HunyuanVideo converter splits single_blocks.linear1 at a fixed width of 3072 (the
    full model's), so on a tiny model it is checked with the dual-stream blocks' layers only."""
    folder = tiny_model_dir("hunyuan_video")
    spec = load_backbone(folder)
    recipe = make_recipe("lora", rank=3, alpha=6.0)
    recipe.apply(spec)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in recipe.named_trainable().items():
            if n.startswith("transformer_blocks.") and "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    adapter = str(tmp_path / "a")
    recipe.save(adapter, {"backbone": {"family": spec.family, "source": folder}})
    out = str(tmp_path / "hv.safetensors")
    export(adapter, "comfyui", out)
    from motiontune.utils.files import load_tensors

    state = {k: v for k, v in load_tensors(out).items() if "single_blocks" not in k}
    theirs = load_backbone(folder)
    theirs.pipe.load_lora_weights(state)
    cond = spec.encode_prompt(["a dog runs"])
    a, b, plain = outputs(spec, cond), outputs(theirs, cond), outputs(load_backbone(folder), cond)
    assert (a - plain).abs().max() > 1e-3
    assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())


def test_hunyuan_linear1_without_mlp_adapter_gets_zero_rows():
    u = [LowRank("single_transformer_blocks.0.attn.to_q", torch.ones(2, 5), torch.ones(5, 2), 0.5)]
    s = hunyuan_state(u, mlp=7)
    assert s["diffusion_model.single_blocks.0.linear1.lora_B.weight"].shape == (22, 2)
    d = s["diffusion_model.single_blocks.0.linear1.lora_B.weight"] @ s["diffusion_model.single_blocks.0.linear1.lora_A.weight"]
    assert torch.equal(d[:5], torch.full((5, 5), 1.0)) and d[5:].abs().max() == 0


def test_gated_lora_without_gate_folds_exactly_and_gated_ones_are_refused(tiny_toy, tmp_path):
    adapter = trained_folder(tiny_toy, tmp_path, make_recipe("jointtuner", rank=2, alpha=1.5, gate="none", dropout=0.0))
    out = str(tmp_path / "g.safetensors")
    result = export(adapter, "comfyui", out)
    assert any("folded exactly" in n for n in result.notes)
    ours = load_backbone(tiny_toy)
    recipe = load_recipe(adapter, ours)
    recipe.apply_schedule(400.0)
    theirs = load_backbone(tiny_toy)
    theirs.pipe.load_lora_weights(out)
    cond = ours.encode_prompt(["a red circle"])
    assert torch.allclose(outputs(ours, cond), outputs(theirs, cond), atol=1e-5)

    gated = trained_folder(tiny_toy, tmp_path, make_recipe("jointtuner", rank=2, alpha=1.5), name="gated")
    with pytest.raises(ConfigError, match="gate.*depends on each layer's input"):
        export(gated, "comfyui", out)


def test_non_low_rank_adapters_and_bad_input_are_refused(tiny_toy, tiny_model_dir, tmp_path, capsys):
    block = trained_folder(tiny_toy, tmp_path, make_recipe("dualreal", hidden=4), name="dualreal")
    with pytest.raises(ConfigError, match="bottleneck block adapter"):
        export(block, "comfyui", str(tmp_path / "x.safetensors"))
    full = trained_folder(tiny_toy, tmp_path, make_recipe("timestep", mode="full"), name="full")
    with pytest.raises(ConfigError, match="full fine-tuning"):
        export(full, "comfyui", str(tmp_path / "x.safetensors"))
    cog = trained_folder(tiny_model_dir("cogvideox"), tmp_path, make_recipe("lora", rank=2, alpha=2.0, attention=("joint",)), name="cog")
    with pytest.raises(ConfigError, match="CogVideoX"):
        export(cog, "comfyui", str(tmp_path / "x.safetensors"))
    with pytest.raises(ConfigError, match="unknown export format"):
        export(block, "kohya", str(tmp_path / "x.safetensors"))
    with pytest.raises(ConfigError, match=".safetensors"):
        export(block, "comfyui", str(tmp_path / "x.pt"))
    assert main(["export", str(tmp_path / "nope"), "--format", "comfyui", "--output", str(tmp_path / "x.safetensors")]) == 2
    assert "not an adapter folder" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x.safetensors")


def test_timestep_recipe_export_notes_the_window(tiny_toy, tmp_path, capsys):
    adapter = trained_folder(tiny_toy, tmp_path, make_recipe("timestep", tau=500.0))
    out = str(tmp_path / "t.safetensors")
    assert main(["export", adapter, "--format", "comfyui", "--output", out]) == 0
    printed = capsys.readouterr().out
    assert "applies at every step" in printed
    _, meta = keys_of(out)
    assert "applies at every step" in meta["motiontune.notes"] and json.loads(json.dumps(meta))


# ------------------------------------------------------------------------------------------ presets
from motiontune.interop.presets import apply_generate_preset, apply_train_preset, get_preset, presets  # noqa: E402


def test_every_shipped_preset_is_valid():
    from motiontune.training.trainer import TrainConfig

    shipped = presets()
    assert {"jointtuner-cogvideox-5b", "dualreal-cogvideox-5b", "motiondirector-zeroscope-v2-576w", "timestep-cogvideox-5b",
            "lora-toy"} <= set(shipped)
    for name, p in shipped.items():
        assert p.gpu_memory and p.source and p.reference
        if p.backbone != "toy":
            assert p.gpu_memory == "not measured here"
        if not p.available:
            continue
        recipe = make_recipe(p.recipe, **p.recipe_settings)
        for key in ("rank", "alpha"):
            if key in p.recipe_settings:
                assert getattr(recipe.config, key) == p.recipe_settings[key]
        t = p.train
        TrainConfig(output_dir="unused", **{({"lr": "learning_rate"}).get(k, k): v for k, v in t.items()
                                            if k in ("steps", "lr", "batch_size", "mixed_precision")})
    jt = shipped["jointtuner-cogvideox-5b"]
    assert (jt.recipe_settings["rank"], jt.recipe_settings["alpha"], jt.train["lr"], jt.train["steps"]) == (128, 1.0, 2e-4, 1000)
    assert (jt.train["num_frames"], jt.train["height"], jt.train["width"], jt.generate["guidance"]) == (49, 480, 720, 6.0)
    assert shipped["lora-toy"].train["lr"] == 1e-3


def test_preset_settings_are_overridden_by_flags_and_set():
    s = apply_train_preset({"preset": "motiondirector-zeroscope-v2-576w", "steps": 7, "rank": 8, "set": ["dropout=0.0"]})
    assert s["recipe"] == "motiondirector" and s["backbone"] == "zeroscope-v2-576w"
    assert s["steps"] == 7 and s["rank"] == 8 and s["lr"] == 5e-4 and s["num_frames"] == 16
    assert s["recipe_settings"] == {"weight_decay": 1e-2}  # dropout given with --set wins over the preset
    g = apply_generate_preset({"preset": "motiondirector-zeroscope-v2-576w", "guidance": 3.0, "adapter": "runs/x"})
    assert g["guidance"] == 3.0 and g["steps"] == 30 and g["noise_prior"] == 0.5 and "backbone" not in g
    with pytest.raises(ConfigError, match="is for the motiondirector recipe"):
        apply_train_preset({"preset": "motiondirector-zeroscope-v2-576w", "recipe": "lora"})
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("nope")
    absent = [n for n, p in presets().items() if not p.available]
    for name in absent:
        with pytest.raises(ConfigError, match="not in this version"):
            get_preset(name)


def test_train_with_a_preset_from_the_cli(tiny_toy, tmp_path, capsys):
    import numpy as np

    from motiontune.data.video_io import write_video

    frames = np.zeros((8, 16, 16, 3), np.uint8)
    for i in range(8):
        frames[i, 4:10, i:i + 6] = (255, 0, 0)
    video = str(tmp_path / "ref.mp4")
    write_video(frames, video)
    out = tmp_path / "run"
    rc = main(["train", "--preset", "lora-toy", "--backbone", tiny_toy, "--video", video, "--caption", "a red circle moves right",
               "--steps", "1", "--num-frames", "5", "--height", "16", "--width", "16", "--output", str(out), "--quiet"])
    assert rc == 0
    meta = json.loads((out / "motiontune.json").read_text())
    assert meta["recipe"] == "lora" and meta["training"]["steps"] == 1 and meta["training"]["learning_rate"] == 1e-3
    assert meta["size"] == [5, 16, 16]
    assert main(["list", "presets"]) == 0
    listed = capsys.readouterr().out
    assert "jointtuner-cogvideox-5b" in listed and "not measured here" in listed and "code" in listed
    if any(not p.available for p in presets().values()):
        assert "skipped: recipe" in listed
    assert main(["train", "--preset", "nope", "--video", video, "--caption", "c", "--output", str(out)]) == 2


# ------------------------------------------------------------------------- the stock WanPipeline
def stock_video(folder, prompt, steps, frames, size, guidance, seed, lora=None, max_sequence_length=16):
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(lora)
    video = pipe(prompt, num_frames=frames, height=size, width=size, num_inference_steps=steps, guidance_scale=guidance,
                 generator=torch.Generator().manual_seed(seed), output_type="pt", max_sequence_length=max_sequence_length)
    return video.frames[0].permute(1, 0, 2, 3)  # (3, F, H, W) in [0, 1]


def motiontune_video(folder, prompt, steps, frames, size, guidance, seed, adapter=None):
    from motiontune.diffusion.sampling import SamplingConfig, generate

    spec = load_backbone(folder)
    recipe = load_recipe(adapter, spec) if adapter else None
    cfg = SamplingConfig(num_inference_steps=steps, num_frames=frames, height=size, width=size, seed=seed, guidance_scale=guidance)
    return ((generate(spec, [prompt], recipe=recipe, config=cfg, progress=False)[0] + 1) / 2).clamp(0, 1)


def test_stock_wan_pipeline_matches_motiontune_on_the_toy_architecture(tiny_toy, tmp_path):
    prompt, args = "a red circle moves left", (3, 5, 16, 2.0, 3)
    ours = motiontune_video(tiny_toy, prompt, *args)
    assert (stock_video(tiny_toy, prompt, *args) - ours).abs().max() * 255 < 0.01
    # the pipeline's default max_sequence_length (512) pads the text with zero tokens the model attends to
    assert (stock_video(tiny_toy, prompt, *args, max_sequence_length=512) - ours).abs().max() * 255 > 1
    adapter = trained_folder(tiny_toy, tmp_path, make_recipe("lora", rank=2, alpha=4.0))
    with_lora = motiontune_video(tiny_toy, prompt, *args, adapter=adapter)
    assert (with_lora - ours).abs().max() * 255 > 1, "the adapter must change the video"
    assert (stock_video(tiny_toy, prompt, *args, lora=adapter) - with_lora).abs().max() * 255 < 0.01
    exported = str(tmp_path / "comfy.safetensors")
    export(adapter, "comfyui", exported)
    assert (stock_video(tiny_toy, prompt, *args, lora=exported) - with_lora).abs().max() * 255 < 0.01


def test_packaged_toy_model_in_the_stock_pipeline_and_its_model_card():
    from motiontune.backbones import resolve_model_alias
    from motiontune.toyworld.model_card import MODEL_CARD

    folder = resolve_model_alias("toy")[0]
    with open(os.path.join(folder, "README.md"), encoding="utf-8") as fh:
        assert fh.read() == MODEL_CARD
    assert "max_sequence_length=16" in MODEL_CARD
    with open(os.path.join(folder, "tokenizer", "tokenizer_config.json"), encoding="utf-8") as fh:
        assert json.load(fh)["model_max_length"] == 16
    prompt, args = "a red circle moves right on a gray background", (2, 5, 32, 4.0, 0)
    ours = motiontune_video(folder, prompt, *args)
    assert (stock_video(folder, prompt, *args) - ours).abs().max() * 255 < 0.05


# --------------------------------------------------------------------- learned point tracker metric
from typing import Tuple  # noqa: E402

import numpy as np  # noqa: E402

from motiontune.evaluation.learned import LearnedScorer, WeightSources  # noqa: E402
from motiontune.evaluation.tracker import PointTracker, grid_queries, tracker_motion_fidelity_or_reason  # noqa: E402


class FakeTracker(torch.nn.Module):
    """Every point moves right 1 px per frame. With ``hide_left``, the points of the left half are
    hidden from frame 1 on and 'predicted' moving up on a red video, down otherwise."""

    def __init__(self, hide_left: bool = False):
        super().__init__()
        self.hide_left = hide_left

    def forward(self, video: torch.Tensor, queries: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        t = video.shape[1]
        n = queries.shape[1]
        steps = torch.arange(t, dtype=torch.float32).reshape(1, t, 1)
        start = queries[:, :, 1:].reshape(1, 1, n, 2)
        move = torch.zeros(1, t, n, 2)
        move[..., 0] = steps
        visible = torch.ones(1, t, n, dtype=torch.bool)
        if self.hide_left:
            left = (queries[0, :, 1] < video.shape[4] / 2).reshape(1, 1, n)
            red = bool(video[0, 0, 0].mean() > video[0, 0, 1].mean())
            garbage = torch.zeros(1, t, n, 2)
            garbage[..., 1] = steps * (-1.0 if red else 1.0)
            move = torch.where(left.unsqueeze(-1), garbage, move)
            visible = visible & ~(left & (steps > 0))
        return start + move, visible


def scripted(module, path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return str(path)


def clip(color):
    v = np.zeros((6, 32, 32, 3), np.uint8)
    v[..., 0 if color == "red" else 1] = 200
    return v


def test_grid_queries_follow_cotrackers_layout():
    q = grid_queries(64, 128, 3)
    assert q.shape == (9, 3) and (q[:, 0] == 0).all()
    np.testing.assert_allclose(sorted(set(q[:, 1])), [2.0, 64.0, 126.0])
    np.testing.assert_allclose(sorted(set(q[:, 2])), [2.0, 32.0, 62.0])


def test_tracker_motion_fidelity_known_answers(tmp_path):
    plain = PointTracker.load(scripted(FakeTracker(), tmp_path / "t.pt"))
    assert tracker_motion_fidelity_or_reason(clip("red"), clip("green"), plain, grid=4) == pytest.approx(1.0)
    hiding = PointTracker.load(scripted(FakeTracker(hide_left=True), tmp_path / "h.pt"))
    # the hidden half moves up in one video and down in the other: best match 0 (the visible tracks move right)
    assert tracker_motion_fidelity_or_reason(clip("red"), clip("green"), hiding, grid=4, visibility="ignore") == pytest.approx(0.5)
    assert tracker_motion_fidelity_or_reason(clip("red"), clip("green"), hiding, grid=4, visibility="drop") == pytest.approx(1.0)
    assert tracker_motion_fidelity_or_reason(clip("red"), clip("green"), hiding, grid=4, visibility="mask") == pytest.approx(1.0)
    # same video on both sides: every track matches itself
    assert tracker_motion_fidelity_or_reason(clip("red"), clip("red"), hiding, grid=4) == pytest.approx(1.0)
    # the right half stays visible in every frame
    assert tracker_motion_fidelity_or_reason(clip("red"), clip("green"), hiding, grid=4, visibility="drop", min_visible=1.0) == 1.0

    class HideAll(torch.nn.Module):
        def forward(self, video: torch.Tensor, queries: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            t, n = video.shape[1], queries.shape[1]
            visible = torch.zeros(1, t, n, dtype=torch.bool)
            visible[:, 0] = True
            return queries[:, :, 1:].reshape(1, 1, n, 2).repeat(1, t, 1, 1), visible

    hidden = PointTracker.load(scripted(HideAll(), tmp_path / "a.pt"))
    assert tracker_motion_fidelity_or_reason(clip("red"), clip("green"), hidden, grid=3, visibility="drop").startswith(
        "n/a: no track of the video and reference is visible")
    assert tracker_motion_fidelity_or_reason(clip("red"), clip("green"), hidden, grid=3, visibility="mask").startswith("n/a: no pair")
    assert tracker_motion_fidelity_or_reason(clip("red"), clip("green"), hidden, grid=3) == 1.0  # ignore: all still in both
    with pytest.raises(ConfigError, match="visibility must be"):
        tracker_motion_fidelity_or_reason(clip("red"), clip("red"), plain, visibility="sometimes")


def test_tracker_in_the_scorer_and_the_eval_command(tmp_path, capsys):
    from motiontune.data.video_io import write_video

    path = scripted(FakeTracker(hide_left=True), tmp_path / "h.pt")
    res = LearnedScorer().score(["cotracker_motion_fidelity"], clip("red"), reference=clip("green"))
    assert res["cotracker_motion_fidelity"].startswith("skipped: needs a point tracker (--cotracker FILE")
    scorer = LearnedScorer(WeightSources(cotracker=path))
    assert scorer.score(["cotracker_motion_fidelity"], clip("red"))["cotracker_motion_fidelity"] == "skipped: needs a reference video"
    res = scorer.score(["cotracker_motion_fidelity"], clip("red"), reference=clip("green"))
    # the default grid (55 x 55) has 27 of 55 columns left of the middle, hidden and moving the other way
    assert res["cotracker_motion_fidelity"] == pytest.approx(1 - 27 / 55)

    class Wrong(torch.nn.Module):
        def forward(self, video: torch.Tensor, queries: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            return torch.zeros(1, 2, 3, 2), torch.ones(1, 2, 3)

    bad = PointTracker.load(scripted(Wrong(), tmp_path / "w.pt"))
    with pytest.raises(ConfigError, match="returned tracks of shape"):
        bad.track(clip("red"), grid=2)

    write_video(clip("red"), tmp_path / "v.mp4")
    write_video(clip("green"), tmp_path / "r.mp4")
    out = tmp_path / "scores.json"
    assert main(["eval", "--video", str(tmp_path / "v.mp4"), "--reference", str(tmp_path / "r.mp4"), "--cotracker", path,
                 "--metrics", "cotracker_motion_fidelity", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["videos"]
    assert rows[0]["metrics"]["cotracker_motion_fidelity"] == pytest.approx(1 - 27 / 55)


def converted_by_diffusers_single_file(path, folder, family, skip=()):
    """The exported layers, as weights of an original-format checkpoint, through diffusers' single-file
    converter of such checkpoints: each must land on a weight of the model, with its shape."""
    from diffusers.loaders import single_file_utils as sfu

    from motiontune.utils.files import load_tensors

    state = load_tensors(path)
    fake = {}
    for key, b in state.items():
        if key.endswith(".lora_B.weight") and not any(s in key for s in skip):
            a = state[key.replace(".lora_B.", ".lora_A.")]
            fake[key[len("diffusion_model."):-len(".lora_B.weight")] + ".weight"] = torch.zeros(b.shape[0], a.shape[1])
    assert fake
    convert = sfu.convert_wan_transformer_to_diffusers if family == "wan" else sfu.convert_hunyuan_video_transformer_to_diffusers
    converted = convert(dict(fake))
    weights = load_backbone(folder).denoiser.state_dict()
    for key, value in converted.items():
        assert key in weights and weights[key].shape == value.shape, key
    return fake, converted


def test_exported_names_are_weights_of_the_original_checkpoint_layout(tiny_toy, tiny_model_dir, tmp_path):
    adapter = trained_folder(tiny_toy, tmp_path, make_recipe("jointtuner", rank=2, alpha=1.5, gate="none", dropout=0.0))
    export(adapter, "comfyui", str(tmp_path / "w.safetensors"))
    fake, converted = converted_by_diffusers_single_file(str(tmp_path / "w.safetensors"), tiny_toy, "wan")
    assert any(".ffn.0." in k for k in fake) and any(".cross_attn.o." in k for k in fake)
    assert len(converted) == len(fake)
    folder = tiny_model_dir("hunyuan_video")
    adapter = trained_folder(folder, tmp_path, make_recipe("lora", rank=2, alpha=2.0), name="hv")
    export(adapter, "comfyui", str(tmp_path / "h.safetensors"))
    # diffusers splits single_blocks.N.linear1 at the full model's width (3072): checked by shape above instead
    fake, converted = converted_by_diffusers_single_file(str(tmp_path / "h.safetensors"), folder, "hunyuan_video", skip=("single_blocks",))
    assert "double_blocks.0.img_attn_qkv.weight" in fake
    assert {"transformer_blocks.0.attn.to_q.weight", "transformer_blocks.0.attn.to_out.0.weight"} <= set(converted)
