"""The dualreal recipe and its blocks: bottleneck block adapters, the StageBlender controller,
identity/motion alternation with the other branch frozen."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from motiontune.adapters.block_adapter import BlockAdapterLayer, block_layers
from motiontune.adapters.stage_blender import StageBlender, block_groups
from motiontune.backbones import load_backbone
from motiontune.cli import main
from motiontune.data.dataset import Sample, TrainingData
from motiontune.data.video_io import write_image, write_video
from motiontune.errors import ConfigError
from motiontune.hooks.call import DenoiserCall, denoiser_call
from motiontune.recipes import load_recipe, make_recipe
from motiontune.recipes.dualreal import BRANCHES, CONTROLLER
from motiontune.training.plan import Stage
from motiontune.training.trainer import Trainer, TrainConfig

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPT = "a red circle moves left"
FAMILIES = ["wan", "cogvideox", "hunyuan_video", "latte", "unet3d", "toy"]


def _spec(name, tiny_model_dir, tiny_toy):
    return load_backbone(tiny_toy if name == "toy" else tiny_model_dir(name))


def _size(spec):
    rule = spec.frame_rule
    f = rule.fixed if rule.fixed is not None else next(n for n in range(4, 64) if rule.is_valid(n))
    return f, spec.size_multiple, spec.size_multiple


def _inputs(spec, seed=0):
    f, h, w = _size(spec)
    x = torch.randn(spec.latent_shape(f, h, w), generator=torch.Generator().manual_seed(seed))
    return x, spec.encode_prompt([PROMPT])


def _run(spec, recipe, x, t, cond):
    spec.denoiser.eval()
    t = torch.as_tensor([float(t)] * x.shape[0])
    with torch.no_grad():
        return denoiser_call(spec, recipe, x, t, cond, DenoiserCall("sample", t, tuple(x.shape)))


def _perturb(params, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params.values():
            p.add_(scale * torch.randn(p.shape, generator=g))


# ---------------------------------------------------------------------- adapters
@pytest.mark.parametrize("family", FAMILIES)
def test_no_op_at_init_and_every_block_site_acts(family, tiny_model_dir, tiny_toy):
    spec = _spec(family, tiny_model_dir, tiny_toy)
    x, cond = _inputs(spec)
    base = _run(spec, None, x, 900, cond)
    recipe = make_recipe("dualreal")
    torch.manual_seed(0)
    recipe.apply(spec)
    assert torch.equal(_run(spec, recipe, x, 900, cond), base)  # a true no-op at initialisation
    layers = block_layers(spec.denoiser)
    sites = spec.block_sites()
    assert len(layers) == 2 * len(sites)  # attention and feed-forward of every block
    if family == "hunyuan_video":  # dual-stream and single-stream blocks alike
        assert any(n.startswith("transformer_blocks.") for n in layers) and any(n.startswith("single_transformer_blocks.") for n in layers)
    for site in sites:
        for child in ("block_adapter_attn", "block_adapter_ff"):
            layer = spec.denoiser.get_submodule(f"{site.path}.{child}")
            assert layer.adapter_names() == list(BRANCHES)
    # each block's attention and feed-forward adapter, made non-zero alone, changes the output
    for name, layer in layers.items():
        up = layer.up["motion"]
        with torch.no_grad():
            up.weight.normal_(0, 0.5)
            up.bias.normal_(0, 0.5)
        assert not torch.equal(_run(spec, recipe, x, 900, cond), base), f"{family}: {name} does not act"
        with torch.no_grad():
            up.weight.zero_()
            up.bias.zero_()
    assert torch.equal(_run(spec, recipe, x, 900, cond), base)


def test_layer_update_matches_a_hand_computation():
    torch.manual_seed(0)
    layer = BlockAdapterLayer(6, 0, "attention")
    layer.add_adapter("identity", hidden=3)
    layer.add_adapter("motion", hidden=3, residual=True)
    for n in ("identity", "motion"):
        with torch.no_grad():
            layer.up[n].weight.normal_()
            layer.up[n].bias.normal_()
    x, out = torch.randn(2, 5, 6), torch.randn(2, 5, 6)

    def a(n, residual):
        y = layer.up[n](F.gelu(layer.down[n](x)))
        return x + y if residual else y

    layer.weight_source = lambda name, block, lead: torch.tensor([0.05, 0.15]) if name == "motion" else 0.1
    layer.set_adapter_scale("identity", 2.0)
    expected = out + 0.1 * 2.0 * a("identity", False) + torch.tensor([0.05, 0.15]).view(2, 1, 1) * a("motion", True)
    assert torch.allclose(layer.update(x, out), expected, atol=1e-6)
    layer.set_adapter_enabled("motion", False)
    layer.set_adapter_scale("identity", 0.0)
    assert torch.equal(layer.update(x, out), out)  # nothing active: not computed


def test_code_variant_with_the_identity_residual_is_not_a_no_op(tiny_model_dir):
    spec = load_backbone(tiny_model_dir("wan"))
    x, cond = _inputs(spec)
    base = _run(spec, None, x, 900, cond)
    recipe = make_recipe("dualreal", residual=True)
    recipe.apply(spec)
    assert not torch.equal(_run(spec, recipe, x, 900, cond), base)
    recipe.set_adapter_scales({n: 0.0 for n in BRANCHES})
    assert torch.equal(_run(spec, recipe, x, 900, cond), base)


# ---------------------------------------------------------------------- controller
def test_groups_of_consecutive_blocks():
    assert block_groups(42, 6) == [i // 6 for i in range(42)] and max(block_groups(42, 6)) + 1 == 7  # the paper's n = 7
    assert block_groups(30, 6)[-1] == 4 and block_groups(40, 6)[-1] == 6  # the last group may be smaller
    assert block_groups(7, groups=3) == [0, 0, 0, 1, 1, 2, 2]
    assert block_groups(5, groups=5) == [0, 1, 2, 3, 4] and block_groups(5, groups=1) == [0] * 5
    with pytest.raises(ConfigError, match="groups=6 is more than the 5 transformer blocks"):
        block_groups(5, groups=6)


def test_controller_network_follows_the_code():
    torch.manual_seed(0)
    c = StageBlender(feature_dim=8, time_dim=4, groups=3, width=16, hidden=5)
    temb, pooled = torch.randn(2, 4), torch.randn(2, 8)
    assert torch.equal(c(temb, pooled), torch.full((2, 3), 0.1))  # zero-initialised head: sigmoid(0) * 0.2
    with torch.no_grad():
        for p in c.head[3].parameters():
            p.normal_()
    shift, scale, gate = c.timestep_encoder[1](F.silu(temb)).chunk(3, dim=-1)
    cc = c.channel_encoder(pooled)
    f = F.layer_norm(cc, (16,), c.norm.weight, c.norm.bias, 1e-5) * (1 + scale) + shift
    f = c.fuse_proj_down(F.gelu(c.fuse_proj(f), approximate="tanh")) + gate * cc
    expected = torch.sigmoid(c.head[3](F.relu(c.head[1](F.relu(f))))) * 0.2
    assert torch.allclose(c(temb, pooled), expected, atol=1e-7)


@pytest.mark.parametrize("family", ["cogvideox", "latte"])
def test_weights_sum_to_the_total_per_group_and_depend_on_t_and_features(family, tiny_model_dir):
    spec = load_backbone(tiny_model_dir(family))
    x, cond = _inputs(spec)
    n_blocks = len(spec.block_sites())
    recipe = make_recipe("dualreal", groups=2)
    torch.manual_seed(0)
    recipe.apply(spec)
    assert recipe.n_groups == 2 and recipe.group_of_block == block_groups(n_blocks, groups=2)
    _run(spec, recipe, x, 900, cond)
    w = recipe.last_weights()
    assert torch.equal(w["motion"], torch.full((1, 2), 0.1)) and torch.allclose(w["identity"], torch.full((1, 2), 0.1))
    with torch.no_grad():
        for p in recipe.controller.head[3].parameters():
            p.normal_(0, 1.0)
    _run(spec, recipe, x, 900, cond)
    w900 = recipe.last_weights()
    _run(spec, recipe, x, 100, cond)
    w100 = recipe.last_weights()
    _run(spec, recipe, _inputs(spec, seed=1)[0] * 3, 900, cond)
    other = recipe.last_weights()
    for w in (w900, w100, other):
        assert w["motion"].shape == (1, 2)
        assert torch.allclose(w["motion"] + w["identity"], torch.full((1, 2), 0.2), atol=1e-7)
        assert bool(((w["motion"] > 0) & (w["motion"] < 0.2)).all())
    assert not torch.equal(w900["motion"], w100["motion"])  # depends on t
    assert not torch.equal(w900["motion"], other["motion"])  # and on the block features
    assert not torch.equal(w900["motion"][:, 0], w900["motion"][:, 1])  # one weight per group
    # the layers read their group's weight: motion takes alpha (the paper), identity 0.2 - alpha
    _run(spec, recipe, x, 900, cond)
    alpha = recipe.blend.alpha
    for site, g in zip(spec.block_sites(), recipe.group_of_block):
        assert torch.equal(recipe.blend.weight("motion", site.index, 1), alpha[:, g])
        assert torch.equal(recipe.blend.weight("identity", site.index, 1), 0.2 - alpha[:, g])
    assert torch.equal(recipe.blend.weight("motion", 0, 3), alpha[:, 0].repeat_interleave(3))  # (B*F, ...) rows


def test_alpha_branch_identity_is_the_code_and_controller_off_gives_fixed_weights(tiny_model_dir):
    spec = load_backbone(tiny_model_dir("wan"))
    x, cond = _inputs(spec)
    recipe = make_recipe("dualreal", alpha_branch="identity")
    recipe.apply(spec)
    with torch.no_grad():
        for p in recipe.controller.head[3].parameters():
            p.fill_(2.0)
    _run(spec, recipe, x, 900, cond)
    alpha = recipe.blend.alpha
    assert bool((alpha > 0.1).all())
    assert torch.equal(recipe.last_weights()["identity"], alpha.detach())
    spec2 = load_backbone(tiny_model_dir("wan"))
    fixed = make_recipe("dualreal", controller=False)
    fixed.apply(spec2)
    assert set(fixed.branches()) == set(BRANCHES)
    assert fixed.blend.weight("motion", 0, 4) == 0.1 and fixed.blend.weight("identity", 1, 4) == 0.1
    assert [p.train for p in fixed.passes(0, Stage(), torch.Generator().manual_seed(0))] in ([("motion",)], [("identity",)])


# ---------------------------------------------------------------------- training
def test_passes_draw_motion_or_identity_and_the_controller_always_trains():
    recipe = make_recipe("dualreal")
    kinds = []
    for step in range(400):
        (p,) = recipe.passes(step, Stage(name="joint"), torch.Generator().manual_seed(1000 + step))
        assert (p.pool, p.name, p.train) in (("video", "motion", ("motion", CONTROLLER)), ("image", "identity", ("identity", CONTROLLER)))
        kinds.append(p.name)
    assert 150 < kinds.count("motion") < 250
    assert recipe.stages() == [Stage(name="joint")]
    assert {p.name for s in range(50) for p in make_recipe("dualreal", motion_share=1.0).passes(s, Stage(), torch.Generator().manual_seed(s))} == {"motion"}


def test_frozen_branch_stays_bit_for_bit_over_many_steps_with_accumulation(tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir("wan"))
    data = TrainingData([Sample(torch.rand(3, 5, 16, 16) * 2 - 1, PROMPT)],
                        [Sample(torch.rand(3, 16, 16) * 2 - 1, "a photo of a red circle", kind="image")])
    seen = []

    class Recording(type(make_recipe("dualreal"))):
        def losses(self, ctx):
            seen.append((ctx.pass_name, ctx.pool, ctx.x0.shape[2]))
            return super().losses(ctx)

    recipe = Recording()
    cfg = TrainConfig(output_dir=str(tmp_path), steps=12, progress=False, learning_rate=1e-2, checkpoint_every=0,
                      gradient_accumulation_steps=2)
    tr = Trainer(spec, recipe, data, cfg)
    assert set(tr.optimizers) == {"identity", "motion", CONTROLLER}
    assert all(g["weight_decay"] == 1e-4 for o in tr.optimizers.values() for g in o.param_groups)
    frozen_steps = {b: 0 for b in BRANCHES}
    for step in range(cfg.steps):
        _, passes, trained = tr.step_plan(step)
        assert CONTROLLER in trained and len(trained) == 2
        frozen = next(b for b in BRANCHES if b not in trained)
        before = {b: [p.detach().clone() for p in tr.branches[b]] for b in tr.branches}
        moments = [v.clone() for st in tr.optimizers[frozen].state.values() for v in st.values() if torch.is_tensor(v)]
        tr.train_step(step)
        assert all(torch.equal(a, p.detach()) for a, p in zip(before[frozen], tr.branches[frozen])), f"step {step}: {frozen} moved"
        now = [v for st in tr.optimizers[frozen].state.values() for v in st.values() if torch.is_tensor(v)]
        assert len(now) == len(moments) and all(torch.equal(a, b) for a, b in zip(moments, now))
        for b in trained:
            assert any(not torch.equal(a, p.detach()) for a, p in zip(before[b], tr.branches[b])), f"step {step}: {b} did not move"
        frozen_steps[frozen] += 1
    assert all(frozen_steps.values())  # both kinds of step happened
    assert {(n, pool, f) for n, pool, f in seen} == {("identity", "image", 1), ("motion", "video", seen[[s[0] for s in seen].index("motion")][2])}
    assert all(f > 1 for n, _, f in seen if n == "motion")
    assert bool(recipe.controller.head[3].weight.detach().abs().sum() > 0)  # the zero-initialised head learned


def test_two_process_run_keeps_the_frozen_branch_still(tiny_model_dir, tmp_path):
    from motiontune.utils.files import load_tensors

    model = tiny_model_dir("wan")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29547"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29547",
           os.path.join(HERE, "scripts", "ddp_dualreal.py"), model, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [json.load(open(tmp_path / f"log{r}.json")) for r in (0, 1)]
    assert logs[0] == logs[1]  # both ranks planned the same kind of step and trained the same branches
    kinds = {e["pass"] for e in logs[0]}
    assert kinds == {"motion", "identity"}
    for e in logs[0]:
        if e["branch"] == CONTROLLER:
            assert e["trained"]
        else:
            assert e["trained"] == (e["branch"] == e["pass"])
    frozen = [e for e in logs[0] if not e["trained"]]
    assert frozen and all(e["weights_same"] and e["optimizer_same"] for e in frozen)
    assert all(not e["weights_same"] for e in logs[0] if e["trained"])
    a, b = load_tensors(str(tmp_path / "rank0.safetensors")), load_tensors(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _bench(name):
    import importlib.util

    root = os.path.dirname(HERE)
    spec = importlib.util.spec_from_file_location(f"motiontune_bench_{name}", os.path.join(root, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def test_gradmask_alternation_lets_the_held_branch_drift_and_true_alternation_does_not(tiny_model_dir, tmp_path):
    bench = _bench("dualreal_drift")
    model = tiny_model_dir("wan")
    spec = load_backbone(model)
    f, h, w = _size(spec)
    data = bench.reference_data(spec, f, h, w)
    out = bench.drift(lambda: load_backbone(model), data, 4, learning_rate=1e-2, recipe_settings={"hidden": 8}, workdir=str(tmp_path))
    assert out["optimizer"]["plan"] == out["gradmask"]["plan"] == out["nomask"]["plan"]  # the same steps in each run
    assert set(out["optimizer"]["plan"]) == {"m", "i"}
    for b in BRANCHES:
        assert out["optimizer"][b]["held_steps"] > 0 and out["optimizer"][b]["held_l2_sum"] == 0.0
        assert out["gradmask"][b]["held_l2_sum"] > 0 and out["nomask"][b]["held_l2_sum"] > 0
        assert out["optimizer"][b]["trained_l2_sum"] > 0
    with pytest.raises(ConfigError, match="unknown alternation 'mask'"):
        make_recipe("dualreal", alternation="mask")
    # gradmask and nomask plan every adapter branch on every step (the held one is masked after backward)
    (p,) = make_recipe("dualreal", alternation="gradmask").passes(0, Stage(), torch.Generator().manual_seed(0))
    assert set(p.train) == {*BRANCHES, CONTROLLER}


def test_cost_benchmark_smoke(tmp_path):
    bench = _bench("dualreal_cost")
    out = tmp_path / "cost.json"
    report = bench.main(["--models", "tiny:wan", "--num-frames", "5", "--height", "16", "--width", "16", "--warmup", "0",
                         "--steps", "2", "--hidden", "8", "--lora-rank", "2", "--output-json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    r = report["models"]["tiny:wan"]
    d, lo = r["dualreal"], r["lora"]
    assert d["trainable_parameters"] == sum(d["parameters_by_branch"].values())
    assert set(d["parameters_by_branch"]) == {*BRANCHES, CONTROLLER}
    assert r["ratios"]["trainable_parameters"] == d["trainable_parameters"] / lo["trainable_parameters"]
    assert r["ratios"]["seconds_per_step"] == d["seconds_per_step"] / lo["seconds_per_step"] > 0
    # lora, given the clip and the image, alternates them (image on even steps)
    assert sum(k["steps"] for k in d["by_kind"].values()) == 2 and lo["by_kind"].keys() == {"image", "video"}
    motion = d["by_kind"].get("motion")
    if motion is not None:
        assert r["ratios"]["motion_step_seconds"] == motion["median_seconds"] / lo["by_kind"]["video"]["median_seconds"]


def test_optimizer_is_8bit_adamw_only_with_bitsandbytes_and_a_gpu(tiny_model_dir, monkeypatch):
    import importlib.util
    import types

    import motiontune.recipes.dualreal as dr
    from motiontune.training.trainer import make_optimizer

    recipe = make_recipe("dualreal")
    recipe.apply(load_backbone(tiny_model_dir("wan")))
    assert recipe.optimizer_kind() == "adamw" and recipe.stages() == [Stage(name="joint", optimizer="adamw")]  # CPU
    monkeypatch.setattr(dr, "has_bitsandbytes", lambda: True)
    assert recipe.optimizer_kind() == "adamw"  # installed, but the model is on the CPU
    gpu = make_recipe("dualreal")
    gpu.spec = types.SimpleNamespace(device=torch.device("cuda"))
    assert gpu.optimizer_kind() == "adamw8bit" and gpu.stages()[0].optimizer == "adamw8bit"
    assert make_recipe("dualreal", optimizer="adamw").stages()[0].optimizer == "adamw"
    explicit = make_recipe("dualreal", optimizer="adamw8bit")
    explicit.spec = recipe.spec
    with pytest.raises(ConfigError, match="needs the model on a GPU"):
        explicit.optimizer_kind()
    monkeypatch.setattr(dr, "has_bitsandbytes", lambda: False)
    with pytest.raises(ConfigError, match="needs bitsandbytes"):
        make_recipe("dualreal", optimizer="adamw8bit")
    with pytest.raises(ConfigError, match="unknown optimizer 'lion'"):
        make_recipe("dualreal", optimizer="lion")
    if not importlib.util.find_spec("bitsandbytes"):
        with pytest.raises(ConfigError, match="adamw8bit needs bitsandbytes"):
            make_optimizer("adamw8bit", [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-3}])


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_dir):
    grads = []
    for checkpointing in (False, True):
        spec = load_backbone(tiny_model_dir("cogvideox"))
        recipe = make_recipe("dualreal")
        torch.manual_seed(0)
        recipe.apply(spec)
        for ps in recipe.branches().values():
            _perturb(ps, 3, 0.05)
        if checkpointing:
            spec.denoiser.enable_gradient_checkpointing()
        spec.denoiser.train()
        x, cond = _inputs(spec)
        t = torch.tensor([500.0])
        out = denoiser_call(spec, recipe, x, t, cond, DenoiserCall("train", t, tuple(x.shape)))
        out.pow(2).mean().backward()
        grads.append({k: p.grad.clone() for k, p in recipe.named_trainable().items()})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-6), k


# ---------------------------------------------------------------------- CLI, files, bad input
def _media(spec, folder):
    f, h, w = _size(spec)
    write_video(torch.rand(3, f, h, w) * 2 - 1, os.path.join(folder, "ref.mp4"), fps=8)
    write_image(torch.rand(3, h + 4, w) * 2 - 1, os.path.join(folder, "a.png"))
    return ["--num-frames", str(f), "--height", str(h), "--width", str(w)]


def _train(model, folder, out, size, *extra):
    return main(["train", "--backbone", model, "--recipe", "dualreal", "--image", os.path.join(folder, "a.png"),
                 "--image-caption", "a photo of a red circle", "--video", os.path.join(folder, "ref.mp4"),
                 "--caption", PROMPT, "--steps", "2", "--output", str(out), "--quiet", *size, *extra])


@pytest.mark.parametrize("backbone", ["wan", "cogvideox"])
def test_cli_train_then_generate(backbone, tiny_model_dir, tmp_path):
    model = tiny_model_dir(backbone)
    spec = load_backbone(model)
    size = _media(spec, str(tmp_path))
    out = tmp_path / "run"
    assert _train(model, str(tmp_path), out, size) == 0
    info = json.loads((out / "motiontune.json").read_text())
    assert info["recipe"] == "dualreal" and list(info["adapters"]) == list(BRANCHES)
    assert all(a["kind"] == "block_adapter" and a["hidden"] == 64 for a in info["adapters"].values())
    blocks = len(spec.block_sites())
    assert info["dualreal"]["blocks"] == blocks and info["dualreal"]["groups"] == 1 and info["dualreal"]["alpha_branch"] == "motion"
    assert info["dualreal"]["controller"]["file"] == "controller.safetensors"
    assert info["stages"] == [{"name": "joint", "steps": 2, "from_step": 0, "train": [], "pool": "video"}]
    with safe_open(str(out / "adapter_motion.safetensors"), "pt") as fh:
        keys, meta = list(fh.keys()), fh.metadata()
    assert meta["format"] == "motiontune.block_adapter" and len(keys) == blocks * 2 * 4
    assert all(k.startswith("transformer.") and ".block_adapter_" in k for k in keys)
    assert main(["generate", "--adapter", str(out), "--prompt", "a red circle moves left on the beach", "--steps", "2",
                 "--output", str(tmp_path / "gen"), "--quiet", *size]) == 0
    assert len([p for p in os.listdir(tmp_path / "gen") if p.endswith(".mp4")]) == 1
    # the Python API loads all three branches, bit for bit
    trained = load_tensors_of(out)
    spec2 = load_backbone(model)
    recipe = load_recipe(str(out), spec2)
    assert recipe.name == "dualreal" and set(recipe.branches()) == {*BRANCHES, CONTROLLER}
    state = recipe.state_dict()
    for k, v in trained.items():
        assert torch.equal(state[k], v), k


@pytest.mark.parametrize("backbone", ["hunyuan_video", "latte", "unet3d", "toy"])
def test_cli_train_then_generate_on_the_other_backbones(backbone, tiny_model_dir, tiny_toy, tmp_path):
    model = tiny_toy if backbone == "toy" else tiny_model_dir(backbone)
    spec = load_backbone(model)
    size = _media(spec, str(tmp_path))
    out = tmp_path / "run"
    assert main(["train", "--backbone", model, "--recipe", "dualreal", "--image", str(tmp_path / "a.png"), "--image-caption", "a red circle", "--video",
                 str(tmp_path / "ref.mp4"), "--caption", PROMPT, "--steps", "1", "--set", "hidden=4", "--output", str(out),
                 "--quiet", *size]) == 0
    info = json.loads((out / "motiontune.json").read_text())
    assert info["dualreal"]["blocks"] == len(spec.block_sites()) and set(info["adapters"]) == set(BRANCHES)
    assert main(["generate", "--adapter", str(out), "--prompt", PROMPT, "--steps", "1", "--output", str(tmp_path / "gen"),
                 "--quiet", *size]) == 0
    assert len([p for p in os.listdir(tmp_path / "gen") if p.endswith(".mp4")]) == 1


def load_tensors_of(folder):
    """The trained weights of every branch, from the last checkpoint (the final adapter is one)."""
    from motiontune.training.checkpoint import latest_checkpoint, load_checkpoint

    _, adapter, _, _ = load_checkpoint(latest_checkpoint(str(folder)))
    return adapter


def test_bad_input_is_refused_in_one_line(tiny_model_dir, tiny_toy, tmp_path, capsys):
    model = tiny_model_dir("wan")
    size = _media(load_backbone(model), str(tmp_path))
    # n larger than the number of blocks: refused by name, nothing written
    assert _train(model, str(tmp_path), tmp_path / "x", size, "--set", "groups=5") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after the clip's preparation line)
    assert err.startswith("motiontune: ") and "groups=5 is more than the 2 transformer blocks of this wan model" in err
    assert not (tmp_path / "x").exists()
    for setting, message in (("alpha_branch=both", "unknown alpha_branch 'both'"), ("groups=0", "groups must be"),
                             ("hidden=0", "hidden must be"), ("motion_share=2", "motion_share must be")):
        assert _train(model, str(tmp_path), tmp_path / "x", size, "--set", setting) == 2
        assert message in capsys.readouterr().err
    good = tmp_path / "good"
    assert _train(model, str(tmp_path), good, size) == 0

    def contents():
        return {p.name: p.read_bytes() for p in sorted(good.rglob("*")) if p.is_file()}

    kept = contents()
    # a refused run into a folder that holds an adapter leaves it as it was
    assert _train(model, str(tmp_path), good, size, "--set", "groups=3", "--no-resume") == 2
    assert "groups=3 is more than the 2 transformer blocks" in capsys.readouterr().err
    assert contents() == kept
    # a folder trained on another backbone family
    capsys.readouterr()
    assert main(["generate", "--adapter", str(good), "--backbone", tiny_model_dir("cogvideox"), "--prompt", "x",
                 "--output", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "(wan), not for" in err and "(cogvideox)" in err
    # the same family with another number of blocks (the toy architecture: one block of the same width)
    assert main(["generate", "--adapter", str(good), "--backbone", tiny_toy, "--prompt", "x", "--output", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "trained on a model with 2 transformer blocks" in err and "has 1" in err
    with pytest.raises(ConfigError, match="2 transformer blocks"):
        load_recipe(str(good), load_backbone(tiny_toy))
    assert contents() == kept and not (tmp_path / "g").exists()  # nothing lost, nothing written
    # a folder without the controller
    info = json.loads((good / "motiontune.json").read_text())
    del info["dualreal"]["controller"]
    (good / "motiontune.json").write_text(json.dumps(info))
    assert main(["generate", "--adapter", str(good), "--prompt", "x", "--output", str(tmp_path / "g")]) == 2
    assert "lacks the 'controller' branch the dualreal recipe needs" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


# ---------------------------------------------------------------------- reference-image conditioning
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """Folder of a tiny randomly initialised CLIP image encoder (transformers), with its processor."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = str(tmp_path_factory.mktemp("tiny_clip"))
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                           patch_size=16, projection_dim=12)
    CLIPVisionModelWithProjection(cfg).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_condition_projection_matches_a_hand_computation():
    torch.manual_seed(0)
    layer = BlockAdapterLayer(6, 0, "attention")
    layer.add_adapter("identity", hidden=3)
    layer.add_adapter("motion", hidden=3, residual=True)
    layer.add_condition("motion", 4)
    for n in BRANCHES:
        with torch.no_grad():
            layer.up[n].weight.normal_()
    x, out, e = torch.randn(2, 5, 6), torch.randn(2, 5, 6), torch.randn(1, 4)
    plain = layer.update(x, out)  # no embedding set: the projection is not used
    ident = layer.up["identity"](F.gelu(layer.down["identity"](x)))
    assert torch.allclose(plain, out + ident + x + layer.up["motion"](F.gelu(layer.down["motion"](x))), atol=1e-6)
    layer.condition, layer.condition_scale = e, 0.5
    h = x + 0.5 * layer.cond["motion"](e).view(1, 1, 6)
    expected = out + ident + x + layer.up["motion"](F.gelu(layer.down["motion"](h)))  # the residual stays x
    assert torch.allclose(layer.update(x, out), expected, atol=1e-6)
    assert set(layer.adapter_parameters("motion")) >= {"cond.motion.weight", "cond.motion.bias"}
    assert not any(k.startswith("cond.") for k in layer.adapter_parameters("identity"))


def test_image_embedding_is_the_mean_clip_embedding_of_the_reference_images(tiny_model_dir, tiny_clip):
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    spec = load_backbone(tiny_model_dir("wan"))
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 24, 40, generator=g) * 2 - 1 for _ in range(2)]
    data = TrainingData([Sample(torch.rand(3, 5, 16, 16, generator=g) * 2 - 1, PROMPT)],
                        [Sample(im, "a red circle", kind="image") for im in images])
    recipe = make_recipe("dualreal", image_encoder=tiny_clip, image_scale=0.5)
    recipe.prepare_training(spec, data)
    model, proc = CLIPVisionModelWithProjection.from_pretrained(tiny_clip), CLIPImageProcessor.from_pretrained(tiny_clip)
    arrays = [((im + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy() for im in images]
    with torch.no_grad():
        expected = model(pixel_values=proc(images=arrays, return_tensors="pt")["pixel_values"]).image_embeds.mean(0, keepdim=True)
    assert recipe.image_embedding.shape == (1, 12) and torch.allclose(recipe.image_embedding, expected, atol=1e-5)
    # the projections go on the motion adapters only (the default), and start as a no-op like the adapters
    x, cond = _inputs(spec)
    base = _run(spec, None, x, 900, cond)
    recipe.apply(spec)
    assert torch.equal(_run(spec, recipe, x, 900, cond), base)
    layers = block_layers(spec.denoiser).values()
    assert all(list(layer.cond) == ["motion"] and layer.condition_scale == 0.5 for layer in layers)
    assert any(k.endswith(".cond.motion.weight") for k in recipe.branches()["motion"])
    assert not any(".cond." in k for k in recipe.branches()["identity"])
    for layer in layers:
        with torch.no_grad():
            layer.up["motion"].weight.normal_(0, 0.5)
    with_image = _run(spec, recipe, x, 900, cond)
    recipe.image_embedding = recipe.image_embedding * 2
    recipe._set_condition()
    assert not torch.equal(_run(spec, recipe, x, 900, cond), with_image)  # the embedding reaches the output
    # without reference images as pixels: one line
    with pytest.raises(ConfigError, match="needs reference images or clips as pixels"):
        make_recipe("dualreal", image_encoder=tiny_clip).prepare_training(spec, TrainingData([Sample(None, PROMPT, latents=torch.zeros(16, 2, 2, 2))]))
    with pytest.raises(ConfigError, match="image_branches must name"):
        make_recipe("dualreal", image_branches="appearance")
    assert make_recipe("dualreal", image_branches="motion,identity").config.image_branches == BRANCHES


def test_cli_train_with_an_image_encoder_then_generate_without_it(tiny_model_dir, tiny_clip, tmp_path, capsys):
    import shutil

    model = tiny_model_dir("wan")
    size = _media(load_backbone(model), str(tmp_path))
    clip = tmp_path / "clip"
    shutil.copytree(tiny_clip, clip)
    out = tmp_path / "run"
    assert _train(model, str(tmp_path), out, size, "--set", f"image_encoder={clip}", "--set", "image_branches=identity,motion") == 0
    info = json.loads((out / "motiontune.json").read_text())
    cond = info["dualreal"]["image_condition"]
    assert cond["dim"] == 12 and cond["images"] == 1 and cond["branches"] == list(BRANCHES) and cond["encoder"] == str(clip)
    assert info["config"]["image_encoder"] is None  # loading the folder needs no encoder
    from motiontune.utils.files import load_tensors

    saved = load_tensors(str(out / "image_embedding.safetensors"))["image_embedding"]
    assert saved.shape == (1, 12) and bool(torch.isfinite(saved).all())
    with safe_open(str(out / "adapter_identity.safetensors"), "pt") as fh:
        assert any(k.endswith(".cond.weight") for k in fh.keys()) and fh.metadata()["condition_dim"] == "12"
    shutil.rmtree(clip)  # generation does not need the encoder
    capsys.readouterr()
    assert main(["generate", "--adapter", str(out), "--prompt", "a red circle moves left on the beach", "--steps", "2",
                 "--output", str(tmp_path / "gen"), "--quiet", *size]) == 0
    assert len([p for p in os.listdir(tmp_path / "gen") if p.endswith(".mp4")]) == 1
    recipe = load_recipe(str(out), load_backbone(model))
    assert torch.equal(recipe.image_embedding, saved)
    layer = next(iter(block_layers(recipe.spec.denoiser).values()))
    assert torch.equal(layer.condition.cpu(), saved) and set(layer.cond) == set(BRANCHES)
    trained = load_tensors_of(out)
    state = recipe.state_dict()
    assert state.keys() == trained.keys() and all(torch.equal(state[k], trained[k]) for k in trained)
    # a folder whose embedding file went missing: one line
    os.remove(out / "image_embedding.safetensors")
    capsys.readouterr()
    assert main(["generate", "--adapter", str(out), "--prompt", "x", "--output", str(tmp_path / "g2"), "--quiet", *size]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no image_embedding.safetensors" in err
    assert not (tmp_path / "g2").exists()


def test_without_an_image_encoder_the_conditioning_is_skipped_with_one_line(tiny_model_dir, tmp_path, caplog):
    import logging

    spec = load_backbone(tiny_model_dir("wan"))
    data = TrainingData([Sample(torch.rand(3, 5, 16, 16) * 2 - 1, PROMPT)])
    with caplog.at_level(logging.INFO, logger="motiontune"):
        tr = Trainer(spec, make_recipe("dualreal"), data, TrainConfig(output_dir=str(tmp_path), steps=1, progress=False))
    lines = [r.getMessage() for r in caplog.records if "image encoder" in r.getMessage()]
    assert len(lines) == 1 and "not conditioned on the reference images" in lines[0]
    assert not any(len(layer.cond) for layer in block_layers(spec.denoiser).values())
    assert tr.recipe.image_embedding is None


def test_a_missing_image_encoder_is_refused_before_the_model_loads(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import motiontune.api

    model = tiny_model_dir("wan")
    size = _media(load_backbone(model), str(tmp_path))

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(motiontune.api, "load_backbone", no_load)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for source, message in ((str(tmp_path / "no-clip"), "no such folder"), ("nobody/no-such-clip", "not a hub id in the local cache"),
                            (str(tmp_path), "holds no config.json")):
        capsys.readouterr()
        assert _train(model, str(tmp_path), tmp_path / "x", size, "--set", f"image_encoder={source}") == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("motiontune: ") and message in err and "image_encoder" in err, err
        assert not (tmp_path / "x").exists()
