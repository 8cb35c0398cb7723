"""The jointtuner recipe and its blocks: gated LoRA, the AiT loss, image/video alternation."""

import json
import os

import pytest
import torch
from safetensors import safe_open
from torch import nn

from motiontune.adapters.base import AdapterSet
from motiontune.adapters.gated_lora import (
    GatedLoraLinear,
    gated_lora_parameters,
    gated_lora_state_dict,
    inject_gated_lora,
    remove_gated_lora,
    set_gated_lora_state_dict,
)
from motiontune.backbones import load_backbone
from motiontune.cli import main
from motiontune.data.dataset import Sample, TrainingData
from motiontune.data.video_io import write_image, write_video
from motiontune.errors import ConfigError
from motiontune.losses import ait_loss, shift_noise
from motiontune.recipes import load_recipe, make_recipe
from motiontune.recipes.base import LossContext
from motiontune.recipes.jointtuner import glora_targets
from motiontune.training.plan import Stage
from motiontune.training.trainer import Trainer, TrainConfig

PROMPT = "a red circle moves left"


class Net(nn.Module):
    def __init__(self, d_in=6, d_out=5):
        super().__init__()
        self.block = nn.Module()
        self.block.proj = nn.Linear(d_in, d_out)
        self.other = nn.Linear(d_out, 3)

    def forward(self, x):
        return self.other(self.block.proj(x))


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    return Net(**kw)


def _fill(layer: GatedLoraLinear, name: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.adapter_parameters(name).values():
            p.copy_(torch.randn(p.shape, generator=g))
    gate = layer.gated_gate[name].weight.detach().clone() if name in layer.gated_gate else None
    return layer.gated_down[name].weight.detach().clone(), layer.gated_up[name].weight.detach().clone(), gate


# ---------------------------------------------------------------------- gated LoRA, known answers
@pytest.mark.parametrize("gate", ["mean", "token", "none"])
def test_gated_lora_matches_a_hand_computation(gate):
    net = _net()
    w, b = net.block.proj.weight.detach().clone(), net.block.proj.bias.detach().clone()
    inject_gated_lora(net, ["block.proj"], rank=3, alpha=2.0, dropout=0.0, adapter_name="a", gate=gate)
    layer = net.block.proj
    A, B, wg = _fill(layer, "a", 1)
    x = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(2))
    lora = (x @ A.T) @ B.T
    if gate == "none":
        g = torch.tensor(1.0)
    else:
        per_token = torch.sigmoid(x @ wg.T)  # (2, 4, 1)
        g = per_token.mean() if gate == "mean" else per_token
        assert torch.allclose(layer.gate_value("a", x), g, atol=1e-7, rtol=0)
        if gate == "mean":
            assert layer.gate_value("a", x).ndim == 0  # one scalar per layer per forward
    expected = x @ w.T + b + g * 2.0 * lora  # scale_mode "raw": s = alpha
    layer.eval()
    assert torch.allclose(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_per_token_gate_differs_from_mean_gate_and_mean_is_over_batch_and_tokens():
    x = torch.randn(3, 7, 6, generator=torch.Generator().manual_seed(3))
    outs = {}
    for gate in ("mean", "token"):
        net = _net()
        inject_gated_lora(net, ["block.proj"], rank=2, alpha=1.0, dropout=0.0, adapter_name="a", gate=gate)
        _fill(net.block.proj, "a", 4)
        outs[gate] = net.block.proj(x)
        gv = net.block.proj.gate_value("a", x)
        if gate == "token":
            assert gv.shape == (3, 7, 1) and not torch.allclose(gv, gv.mean().expand_as(gv))
            token_mean = gv.mean()
        else:
            mean = gv
    assert torch.allclose(mean, token_mean)  # the mean gate is the per-token gate averaged over batch and tokens
    assert not torch.allclose(outs["mean"], outs["token"])


@pytest.mark.parametrize("mode,expected", [("raw", 2.0), ("alpha_over_r", 0.5)])
def test_each_scale_mode_gives_what_it_says(mode, expected):
    net = _net()
    inject_gated_lora(net, ["block.proj"], rank=4, alpha=2.0, dropout=0.0, adapter_name="a", gate="none", scale_mode=mode)
    layer = net.block.proj
    A, B, _ = _fill(layer, "a", 5)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(6))
    delta = layer(x) - layer.base_layer(x)
    assert layer.scaling["a"] == expected
    assert torch.allclose(delta, expected * (x @ A.T) @ B.T, atol=1e-5, rtol=1e-5)
    layer.set_adapter_scale("a", 3.0)  # a user scale multiplies s
    assert torch.allclose(layer(x) - layer.base_layer(x), 3.0 * delta, atol=1e-5, rtol=1e-5)


def test_initialisation_is_the_base_output_exactly_and_follows_the_code():
    x = torch.randn(4, 9, 6, generator=torch.Generator().manual_seed(7))
    base = _net()
    ref = base(x)
    for gate in ("mean", "token"):
        net = _net()
        inject_gated_lora(net, ["block.proj", "other"], rank=3, alpha=1.0, dropout=0.1, adapter_name="a", gate=gate)
        for mode in (net.train, net.eval):
            mode()
            assert torch.equal(net(x), ref)
    # A and w_g ~ N(0, std 1/r) (the authors' normal_(std=1/r)), B = 0
    torch.manual_seed(0)
    big = nn.Sequential(nn.Linear(4096, 64))
    inject_gated_lora(big, ["0"], rank=8, alpha=1.0, adapter_name="a")
    layer = big[0].requires_grad_(False)
    assert abs(float(layer.gated_down["a"].weight.std()) - 1 / 8) < 0.005
    assert abs(float(layer.gated_gate["a"].weight.std()) - 1 / 8) < 0.01
    assert torch.equal(layer.gated_up["a"].weight, torch.zeros(64, 8))
    assert abs(float(layer.gated_down["a"].weight.mean())) < 0.005


def test_dropout_acts_in_training_only():
    net = _net()
    inject_gated_lora(net, ["block.proj"], rank=3, alpha=1.0, dropout=0.5, adapter_name="a")
    layer = net.block.proj
    A, B, wg = _fill(layer, "a", 8)
    x = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(9))
    expected = layer.base_layer(x) + torch.sigmoid(x @ wg.T).mean() * ((x @ A.T) @ B.T)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    assert torch.allclose(layer(x), expected, atol=1e-5, rtol=1e-5)
    layer.train()
    torch.manual_seed(0)
    assert not torch.allclose(layer(x), expected, atol=1e-3)


def test_injection_removal_switches_and_state_dicts():
    net = _net()
    original, weight, bias = net.block.proj, net.block.proj.weight, net.block.proj.bias
    cfg = inject_gated_lora(net, ["block.proj"], rank=2, alpha=1.0, adapter_name="a")
    layer = net.block.proj
    assert isinstance(layer, GatedLoraLinear) and layer.base_layer is original
    assert layer.weight is weight and layer.bias is bias and not weight.requires_grad and not bias.requires_grad
    assert cfg.target_modules == ["block.proj"] and layer.adapter_names() == ["a"]
    assert set(gated_lora_parameters(net, "a")) == {"block.proj.gated_down.a.weight", "block.proj.gated_up.a.weight",
                                                    "block.proj.gated_gate.a.weight"}
    assert all(p.requires_grad for p in gated_lora_parameters(net, "a").values())
    inject_gated_lora(net, ["block.proj"], rank=3, alpha=1.0, adapter_name="b", gate="token")
    assert net.block.proj is layer and layer.adapter_names() == ["a", "b"]
    _fill(layer, "a", 10)
    _fill(layer, "b", 11)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(12))
    net.eval()
    both = layer(x)
    layer.set_adapter_enabled("b", False)
    only_a = layer(x)
    layer.set_adapter_enabled("b", True)
    layer.set_adapter_scale("a", 0.0)
    only_b = layer(x)
    base = layer.base_layer(x)
    assert torch.allclose(both - base, (only_a - base) + (only_b - base), atol=1e-5)
    layer.set_adapter_scale("b", 0.0)
    assert torch.equal(layer(x), base)  # every adapter at scale 0: the base exactly
    layer.set_adapter_scale("a", 1.0)
    layer.set_adapter_scale("b", 1.0)
    # state dicts per adapter name, the name not in the keys
    state = gated_lora_state_dict(net, "a")
    assert set(state) == {"block.proj.gated_down.weight", "block.proj.gated_up.weight", "block.proj.gated_gate.weight"}
    other = _net()
    inject_gated_lora(other, ["block.proj"], rank=2, alpha=1.0, adapter_name="c")
    set_gated_lora_state_dict(other, "c", state)
    other.eval()
    assert torch.equal(other.block.proj(x), only_a)
    with pytest.raises(ConfigError, match="lacks 1 weights"):
        set_gated_lora_state_dict(other, "c", {k: v for k, v in state.items() if "gated_gate" not in k})
    with pytest.raises(ConfigError, match="weights this model's gated adapter lacks"):
        set_gated_lora_state_dict(other, "c", {**state, "other.gated_up.weight": torch.zeros(3, 2)})
    with pytest.raises(ConfigError, match="shape"):
        set_gated_lora_state_dict(other, "c", {**state, "block.proj.gated_up.weight": torch.zeros(5, 3)})
    # removal: one adapter, then the last puts the original Linear back
    remove_gated_lora(net, "a")
    assert net.block.proj is layer and layer.adapter_names() == ["b"]
    remove_gated_lora(net, "b")
    assert net.block.proj is original and torch.equal(net.block.proj(x), base)
    with pytest.raises(ConfigError, match="not an nn.Linear"):
        inject_gated_lora(net, ["block"], rank=2, alpha=1.0)
    with pytest.raises(ConfigError, match="no module named"):
        inject_gated_lora(net, ["block.nope"], rank=2, alpha=1.0)


# ---------------------------------------------------------------------- losses
def test_ait_loss_matches_a_hand_computation():
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(2, 3, 4, 5, 6, generator=g)
    target = torch.randn(2, 3, 4, 5, 6, generator=g)
    got = ait_loss(pred, target, torch.Generator().manual_seed(11), weight=10.0)
    xi = torch.randn(2, 1, 1, 5, 6, generator=torch.Generator().manual_seed(11))  # shared by channels and frames
    by_hand = 10.0 * ((pred + xi - target) ** 2).mean()
    assert torch.allclose(got, by_hand, rtol=1e-6, atol=0)
    assert torch.allclose(ait_loss(pred, target, torch.Generator().manual_seed(11), weight=1.0), by_hand / 10, rtol=1e-6)
    # prediction equal to target: the loss is the weighted mean square of the shared noise
    assert torch.allclose(ait_loss(target, target, torch.Generator().manual_seed(11), 10.0), 10.0 * (xi**2).mean(), rtol=1e-6)
    with pytest.raises(ConfigError, match="one shape"):
        ait_loss(pred[0], target[0], g)


def test_shift_noise_matches_a_hand_computation():
    noise = torch.randn(2, 3, 4, 5, 6, generator=torch.Generator().manual_seed(1))
    got = shift_noise(noise, torch.Generator().manual_seed(2), 0.1)
    s = torch.randn(2, 3, 4, 1, 1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(got, noise + 0.1 * s)
    d = got - noise  # one shift per sample, channel and frame, shared over height and width
    assert torch.allclose(d, d[..., :1, :1].expand_as(d), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- the recipe
def test_settings_presets_and_bad_values():
    r = make_recipe("jointtuner")
    c = r.config
    assert (c.rank, c.alpha, c.learning_rate, c.weight_decay, c.dropout, c.gate, c.scale_mode, r.default_steps) == \
        (32, 1.0, 2e-4, 1e-4, 0.1, "mean", "raw", 1000)
    r = make_recipe("jointtuner", preset="cogvideox")
    assert (r.config.rank, r.config.alpha, r.config.learning_rate, r.default_steps) == (128, 1.0, 2e-4, 1000)
    r = make_recipe("jointtuner", preset="zeroscope", rank=8)
    assert (r.config.rank, r.config.learning_rate, r.default_steps) == (8, 5e-4, 2000)  # given settings win
    again = make_recipe("jointtuner", **r.config.to_dict())
    assert again.config == r.config and again.default_steps == 2000
    for bad, match in [({"gate": "sigmoid"}, "unknown gate 'sigmoid'"), ({"scale_mode": "alpha"}, "unknown scale_mode"),
                       ({"preset": "wan"}, "unknown preset"), ({"alternation": "random"}, "unknown alternation"),
                       ({"flip": 2}, "flip"), ({"ait_weight": 0}, "ait_weight"), ({"ait": "yes"}, "ait must be")]:
        with pytest.raises(ConfigError, match=match):
            make_recipe("jointtuner", **bad)


def test_passes_alternate_images_and_clips():
    r = make_recipe("jointtuner")
    stage = r.stages()[0]
    plan = [r.passes(s, stage, torch.Generator().manual_seed(s))[0] for s in range(6)]
    assert [p.pool for p in plan] == ["image", "video"] * 3
    assert all(p.flip == 0.5 for p in plan[::2]) and all(p.flip is None for p in plan[1::2])
    assert all(p.train is None and len(r.passes(0, stage, torch.Generator())) == 1 for p in plan)
    drawn = make_recipe("jointtuner", alternation="draw")
    pools = [drawn.passes(s, stage, torch.Generator().manual_seed(s))[0].pool for s in range(200)]
    assert 60 < pools.count("image") < 140
    assert pools == [drawn.passes(s, stage, torch.Generator().manual_seed(s))[0].pool for s in range(200)]
    assert {make_recipe("jointtuner", alternation="draw", image_share=0.0).passes(s, stage, torch.Generator().manual_seed(s))[0].pool
            for s in range(20)} == {"video"}


def test_losses_by_pool():
    r = make_recipe("jointtuner")
    pred, target = torch.randn(1, 4, 3, 4, 4), torch.randn(1, 4, 3, 4, 4)

    def ctx(pool):
        return LossContext(None, pool, pred, pred, pred, torch.zeros(1), {}, pred, target, 0,
                           {"generator": torch.Generator().manual_seed(5)}, pool=pool)

    video = r.losses(ctx("video"))
    assert list(video) == ["ait"]
    assert torch.allclose(video["ait"], ait_loss(pred, target, torch.Generator().manual_seed(5), 10.0))
    image = r.losses(ctx("image"))
    assert list(image) == ["diffusion"] and torch.allclose(image["diffusion"], ((pred - target) ** 2).mean())
    assert list(make_recipe("jointtuner", ait=False).losses(ctx("video"))) == ["diffusion"]


def test_placement_covers_every_block(specs):
    for name in ("wan", "unet3d", "cogvideox", "latte", "hunyuan_video", "toy"):
        spec = specs(name)
        targets = set(glora_targets(spec))
        modules = dict(spec.denoiser.named_modules())
        for block in spec.block_sites():
            assert set(block.ff_linears) <= targets, f"{name}: {block.path}"
            site = next(s for s in spec.attention_sites() if s.path == block.attention)
            assert set(site.module_names()) <= targets, f"{name}: {block.path}"
            if block.cross_attention:
                cross = next(s for s in spec.attention_sites() if s.path == block.cross_attention)
                assert set(cross.module_names()) <= targets
        assert all(type(modules[t]) is nn.Linear for t in targets)
        assert all(any(t.startswith(b.path + ".") for b in spec.block_sites()) for t in targets)
    wan = specs("wan")
    assert not any(".attn2." in t for t in glora_targets(wan, cross_attention=False))
    assert len(glora_targets(specs("unet3d"))) > len([b for b in specs("unet3d").block_sites()]) * 6


def test_training_runs_images_then_clips_with_shift_noise_on_request(tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir("wan"))
    data = TrainingData([Sample(torch.rand(3, 5, 16, 16) * 2 - 1, PROMPT)],
                        [Sample(torch.rand(3, 16, 16) * 2 - 1, "a photo of a red circle", kind="image")])
    seen = []

    class Recording(type(make_recipe("jointtuner"))):
        def training_noise(self, noise, kind, pass_name, generator):
            out = super().training_noise(noise, kind, pass_name, generator)
            seen.append((kind, pass_name, tuple(noise.shape), bool(torch.equal(out, noise))))
            return out

        def losses(self, ctx):
            terms = super().losses(ctx)
            seen.append((ctx.pool, sorted(terms), ctx.x0.shape[2]))
            return terms

    recipe = Recording(rank=4, shift_noise=True)
    Trainer(spec, recipe, data, TrainConfig(output_dir=str(tmp_path / "run"), steps=2, progress=False, checkpoint_every=0)).train()
    assert seen[0][:2] == ("image", "image") and seen[0][2][2] == 1 and not seen[0][3]  # shifted noise, one frame
    assert seen[1] == ("image", ["diffusion"], 1)
    assert seen[2][:2] == ("video", "video") and not seen[2][3]
    assert seen[3] == ("video", ["ait"], seen[2][2][2])
    info = json.loads((tmp_path / "run" / "motiontune.json").read_text())
    assert info["adapters"]["glora"]["kind"] == "gated_lora" and info["adapters"]["glora"]["gate"] == "mean"


def test_adapter_file_layout_and_refusals(tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir("wan"))
    torch.manual_seed(0)
    a = AdapterSet(spec)
    targets = [t for t in glora_targets(spec) if not t.endswith("attn1.to_v")]  # a peft LoRA goes there
    a.add_gated_lora("glora", targets, 4, 1.0, gate="token", scale_mode="alpha_over_r")
    a.add_lora("plain", [f"{s.path}.to_v" for s in spec.sites("joint")], 2, 2)
    with torch.no_grad():
        for p in a.parameters("glora").values():
            p.add_(0.1)
    assert set(a.parameters("glora")) == set(gated_lora_parameters(spec.denoiser, "glora"))
    assert not set(a.parameters("glora")) & set(a.parameters("plain"))
    written = a.save(str(tmp_path / "ad"))
    assert written["glora"]["kind"] == "gated_lora" and written["plain"]["kind"] == "lora"
    path = tmp_path / "ad" / "adapter_glora.safetensors"
    with safe_open(str(path), "pt") as fh:
        keys, meta = list(fh.keys()), fh.metadata()
    assert keys and all(k.startswith("transformer.") and "lora" not in k for k in keys)
    assert len(keys) == 3 * len(targets)
    assert meta["format"] == "motiontune.gated_lora" and meta["gate"] == "token" and meta["scale_mode"] == "alpha_over_r"
    spec2 = load_backbone(tiny_model_dir("wan"))
    with pytest.raises(ValueError, match="lora"):  # diffusers' LoRA loader refuses it rather than dropping the gate
        spec2.pipe.load_lora_weights(str(tmp_path / "ad"), weight_name="adapter_glora.safetensors")
    b = AdapterSet(spec2)
    b.add_gated_lora("glora", targets, 4, 1.0, gate="token", scale_mode="alpha_over_r")
    b.add_lora("plain", [f"{s.path}.to_v" for s in spec.sites("joint")], 2, 2)
    b.load(str(tmp_path / "ad"), ["glora", "plain"])
    for k, v in a.parameters("glora").items():
        assert torch.equal(v, b.parameters("glora")[k])
    # a LoRA file is not a gated one
    os.replace(tmp_path / "ad" / "adapter_plain.safetensors", path)
    with pytest.raises(ConfigError, match="not a gated LoRA file"):
        b.load(str(tmp_path / "ad"), ["glora"])


def _media(spec, folder):
    rule = spec.frame_rule
    f = rule.fixed if rule.fixed is not None else next(n for n in range(4, 64) if rule.is_valid(n))
    m = spec.size_multiple
    write_video(torch.rand(3, f, m, m) * 2 - 1, os.path.join(folder, "ref.mp4"), fps=8)
    write_image(torch.rand(3, m + 4, m) * 2 - 1, os.path.join(folder, "a.png"))  # another size: resized
    write_image(torch.rand(3, m, m) * 2 - 1, os.path.join(folder, "b.png"))
    return ["--num-frames", str(f), "--height", str(m), "--width", str(m)]


@pytest.mark.parametrize("backbone", ["wan", "unet3d"])
def test_cli_train_then_generate(backbone, tiny_model_dir, tmp_path):
    model = tiny_model_dir(backbone)
    spec = load_backbone(model)
    size = _media(spec, str(tmp_path))
    out = tmp_path / "run"
    assert main(["train", "--backbone", model, "--recipe", "jointtuner", "--image", str(tmp_path / "a.png"),
                 "--image", str(tmp_path / "b.png"), "--image-caption", "a photo of a red circle",
                 "--video", str(tmp_path / "ref.mp4"), "--caption", "a red circle moves left", "--steps", "2",
                 "--rank", "4", "--output", str(out), "--quiet", *size]) == 0
    info = json.loads((out / "motiontune.json").read_text())
    assert info["recipe"] == "jointtuner" and list(info["adapters"]) == ["glora"]
    assert info["stages"] == [{"name": "joint", "steps": 2, "from_step": 0, "train": [], "pool": "video"}]
    assert len(info["references"]["images"]) == 2
    assert main(["generate", "--adapter", str(out), "--prompt", "a red circle moves left on the beach", "--steps", "2",
                 "--output", str(tmp_path / "gen"), "--quiet", *size]) == 0
    assert len([p for p in os.listdir(tmp_path / "gen") if p.endswith(".mp4")]) == 1
    # the Python API loads it too
    spec2 = load_backbone(model)
    recipe = load_recipe(str(out), spec2)
    assert recipe.name == "jointtuner" and recipe.adapters.is_gated("glora")


def test_bad_input_is_refused_in_one_line(tiny_model_dir, tmp_path, capsys, monkeypatch):
    model = tiny_model_dir("wan")
    size = _media(load_backbone(model), str(tmp_path))
    base = ["train", "--backbone", model, "--recipe", "jointtuner", "--video", str(tmp_path / "ref.mp4"),
            "--caption", PROMPT, "--steps", "1", "--quiet", *size]
    assert main([*base, "--set", "gate=sigmoid", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown gate 'sigmoid'; choose from mean, token, none" in err
    assert not (tmp_path / "x").exists()
    assert main([*base, "--set", "scale_mode=peft", "--output", str(tmp_path / "x")]) == 2
    assert "unknown scale_mode" in capsys.readouterr().err
    # reference images without a caption: refused before the model loads; an unreadable image: one line
    write_image(torch.rand(3, 16, 16) * 2 - 1, str(tmp_path / "a.png"))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    import motiontune.api as api

    with monkeypatch.context() as m:
        m.setattr(api, "load_backbone", lambda *a, **k: pytest.fail("the model must not load for a caption-less image"))
        assert main([*base, "--image", str(tmp_path / "a.png"), "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "without a caption: give --image-caption" in err
    assert main([*base, "--image", str(tmp_path / "bad.png"), "--image-caption", "a red circle",
                 "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "bad.png: cannot decode image" in err
    assert not (tmp_path / "x").exists()
    # a folder without the gated adapter is refused by name
    good = tmp_path / "good"
    assert main([*base, "--output", str(good)]) == 0
    info = json.loads((good / "motiontune.json").read_text())
    info["adapters"] = {"other": info["adapters"]["glora"]}
    (good / "motiontune.json").write_text(json.dumps(info))
    capsys.readouterr()
    assert main(["generate", "--adapter", str(good), "--prompt", "x", "--output", str(tmp_path / "g")]) == 2
    assert "lacks the 'glora' branch" in capsys.readouterr().err


def test_stage_layout_is_one_joint_stage():
    assert make_recipe("jointtuner").stages() == [Stage(name="joint")]
