"""The toy-model training script end to end on a tiny configuration: stages, resume, export."""

import json
import os

import torch

from motiontune.toyworld import training

TINY = ["z_dim=4", "vae_base_dim=4", "text_dim=16", "heads=2", "head_dim=12", "layers=1", "ffn_dim=32", "vae_steps=2",
        "vae_batch=1", "bank_size=8", "heldin_prompts=4", "dit_steps=3", "dit_batch=2", "dit_warmup=1",
        "checkpoint_every=1", "sample_steps=2", "tune_steps=0"]


def run(work, *extra):
    args = ["--work-dir", str(work), "--threads", "1"]
    for item in TINY:
        args += ["--set", item]
    return training.main(args + list(extra))


def test_toy_training_stages_resume_and_export(tmp_path, capsys):
    work, model = tmp_path / "work", tmp_path / "model"
    assert run(work, "--stage", "vae") == 0
    state = json.loads((work / "vae-train.safetensors.json").read_text())
    assert state["step"] == 2 and (work / "vae" / "config.json").is_file()
    assert json.loads((work / "timings.json").read_text()) == {"vae": state["seconds"]} and state["seconds"] > 0
    assert run(work, "--stage", "bank", "--set", "dit_shape_weight=10") == 0
    bank = training.LatentBank(str(work), caption_dropout=0.0)
    assert bank.latents.shape == (8, 4, 9, 16, 16)  # 2x spatial, 2x temporal compression and len(bank.captions) == 8
    heldin = {tuple(c) for c in training.heldin_combinations(training.ToyModelConfig(heldin_prompts=4))}
    from motiontune.toyworld.world import parse_caption

    for cap in bank.captions:  # held-in evaluation combinations never appear in the bank
        f = parse_caption(cap)
        assert (f.color, f.shape, f.motion, f.background) not in heldin
    # subject masks on the latent grid: one (1, 9, 16, 16) mask per clip, set somewhere but not everywhere
    assert bank.subject.shape == (8, 1, 9, 16, 16) and bank.subject.dtype == torch.uint8
    covered = bank.subject.float().mean(dim=(1, 3, 4))
    assert bool((covered > 0).all()) and bool((covered < 0.5).all())
    weighted = training.LatentBank(str(work), caption_dropout=0.0, fg_weight=4.0)
    sample = weighted.draw("video", torch.Generator().manual_seed(0), 1)[0]
    assert sorted(torch.unique(sample.loss_weight).tolist()) == [1.0, 5.0]
    # shape-contrast maps on the same grid, 0..255, set on some cells near the subject only
    assert bank.shape.shape == (8, 1, 9, 16, 16) and bank.shape.dtype == torch.uint8
    assert bool((bank.shape.amax(dim=(1, 3, 4)) > 0).all()) and float((bank.shape > 0).float().mean()) < 0.2
    both = training.LatentBank(str(work), caption_dropout=0.0, fg_weight=4.0, shape_weight=10.0)
    i = int(torch.randint(len(both.captions), (1,), generator=torch.Generator().manual_seed(0)))
    expected = 1.0 + 4.0 * bank.subject[i].float() + 10.0 * bank.shape[i].float() / 255.0
    assert torch.allclose(both.draw("video", torch.Generator().manual_seed(0), 1)[0].loss_weight, expected)
    vae_cfg = json.loads((work / "vae" / "config.json").read_text())
    assert vae_cfg["latents_std"] != [1.0] * 4  # measured statistics written into the VAE config
    assert run(work, "--export", str(model)) == 0
    assert sorted(os.listdir(work / "dit" / "checkpoints"))  # the trainer checkpointed
    for folder in ("transformer", "vae", "text_encoder"):
        files = os.listdir(model / folder)
        assert any(f.endswith(".safetensors") for f in files) and not any(f.endswith(".bin") for f in files)
    defaults = json.loads((model / "motiontune_defaults.json").read_text())
    assert defaults["num_frames"] == 17 and defaults["height"] == 32 and defaults["default_steps"] == 2
    assert len(json.loads((model / "toyworld.json").read_text())["heldin_combinations"]) == 4

    # the exported transformer is the trained one, not the initial weights
    from motiontune.backbones import load_backbone

    spec = load_backbone(str(model), family="wan")
    init = training.build_components(training.config_from_settings(TINY))["transformer"]
    trained = dict(spec.pipe.transformer.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in init.named_parameters())
    from motiontune.diffusion.sampling import SamplingConfig, generate

    video = generate(spec, ["a red circle moves left on a black background"], config=SamplingConfig(seed=0))[0]
    assert tuple(video.shape)[-2:] == (32, 32)

    # a second run finds every stage finished
    before = (model / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert run(work, "--export", str(model)) == 0
    assert (model / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == before


def test_toy_training_snapshot_and_restore(tmp_path):
    work = tmp_path / "work"
    assert run(work, "--stage", "vae") == 0
    snap = tmp_path / "snap"
    assert training.main(["--work-dir", str(work), "--snapshot", str(snap)]) == 0
    assert (snap / "vae-train.safetensors").is_file() and (snap / "config.json").is_file()
    work2 = tmp_path / "work2"
    assert run(work2, "--resume-from", str(snap), "--stage", "vae") == 0
    assert (work2 / "vae-train.safetensors").read_bytes() == (work / "vae-train.safetensors").read_bytes()


def test_defaults_carry_the_measured_tau_and_bad_settings_are_refused(tmp_path, capsys):
    import pytest

    from motiontune.recipes.timestep import folder_default_tau

    training.write_defaults(training.ToyModelConfig(timestep_tau=600.0), str(tmp_path))
    assert folder_default_tau(str(tmp_path)) == (600.0, "native")
    training.write_defaults(training.ToyModelConfig(timestep_tau=None), str(tmp_path))
    assert folder_default_tau(str(tmp_path)) is None
    training.write_defaults(training.ToyModelConfig(), str(tmp_path))  # the measured boundary of the toy model
    assert folder_default_tau(str(tmp_path)) == (900.0, "native")
    for bad in ("nope=1", "dit_steps=many", "dit_steps"):
        with pytest.raises(SystemExit) as exc:
            training.main(["--work-dir", str(tmp_path / "w"), "--set", bad])
        assert exc.value.code == 2
        assert "--set" in capsys.readouterr().err
    assert not (tmp_path / "w" / "config.json").exists()  # nothing written for a refused command


def test_latent_grid_mask_follows_the_causal_frame_layout():
    mask = torch.zeros(17, 32, 32)
    mask[0, 0, 0] = 1  # frame 0 is latent frame 0 on its own
    mask[2, 5, 9] = 1  # frames 1-2 are latent frame 1
    mask[16, 31, 31] = 1  # frames 15-16 are latent frame 8
    grid = training.latent_grid_mask(mask, temporal=2, spatial=2)
    assert grid.shape == (1, 9, 16, 16)
    assert {tuple(i) for i in grid[0].nonzero().tolist()} == {(0, 0, 0), (1, 2, 4), (8, 15, 15)}


def test_subject_weight_needs_masks_in_the_bank(tmp_path, capsys):
    from motiontune.errors import ConfigError
    from motiontune.utils.files import save_tensors

    save_tensors({"latents": torch.zeros(2, 4, 9, 16, 16)}, str(tmp_path / "bank.safetensors"))
    (tmp_path / "bank.json").write_text(json.dumps({"captions": ["a", "b"]}))
    assert training.LatentBank(str(tmp_path), 0.0).draw("video", torch.Generator().manual_seed(0), 1)[0].loss_weight is None
    try:
        training.LatentBank(str(tmp_path), 0.0, fg_weight=2.0)
    except ConfigError as err:
        assert "subject masks" in str(err)
    else:
        raise AssertionError("a bank without masks was accepted for a subject-weighted loss")
    # from the command line: a one-line error and exit code 2, the old bank kept
    work = tmp_path / "work"
    assert run(work, "--stage", "bank") == 0
    save_tensors({"latents": torch.zeros(8, 4, 9, 16, 16)}, str(work / "bank.safetensors"))  # an older bank, without masks
    capsys.readouterr()
    assert run(work, "--set", "dit_fg_weight=3") == 2
    assert "needs subject masks" in capsys.readouterr().err
    assert (work / "bank.safetensors").is_file()
    (work / "bank.safetensors").unlink()
    assert run(work, "--stage", "bank") == 0  # without a shape weight the bank has no shape-contrast maps
    assert "shape" not in training.load_tensors(str(work / "bank.safetensors"))
    assert run(work, "--set", "dit_shape_weight=20") == 2
    assert "needs shape-contrast maps" in capsys.readouterr().err


def test_toy_training_at_another_frame_size(tmp_path, capsys):
    """frame_size 48 with a 1x3x3 patch: 24x24 latents, 8x8 tokens a frame; defaults name the size."""
    import pytest

    work, model = tmp_path / "work", tmp_path / "model"
    assert run(work, "--set", "frame_size=48", "--set", "patch_size=1,3,3", "--export", str(model)) == 0
    bank = training.LatentBank(str(work), caption_dropout=0.0)
    assert bank.latents.shape == (8, 4, 9, 24, 24) and bank.subject.shape == (8, 1, 9, 24, 24)
    defaults = json.loads((model / "motiontune_defaults.json").read_text())
    assert (defaults["num_frames"], defaults["height"], defaults["width"]) == (17, 48, 48)
    from motiontune.backbones import load_backbone

    spec = load_backbone(str(model), family="wan")
    assert spec.default_size == (17, 48, 48) and tuple(spec.denoiser.config.patch_size) == (1, 3, 3)
    # a size whose latent grid the patch does not tile is refused before anything is written
    for bad in (["frame_size=40", "patch_size=1,3,3"], ["frame_size=33"]):
        args = ["--work-dir", str(tmp_path / "w")]
        for item in bad:
            args += ["--set", item]
        with pytest.raises(SystemExit) as exc:
            training.main(args)
        assert exc.value.code == 2 and "frame_size" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_swapped_shape_inputs_in_the_bank(tmp_path, capsys):
    """dit_swap stores each clip again with another shape; the clips themselves do not change, and
    the bank hands swapped inputs to captioned samples only."""
    import pytest

    from motiontune.errors import ConfigError
    from motiontune.toyworld.world import SHAPES

    plain, swapped = tmp_path / "plain", tmp_path / "swapped"
    assert run(plain, "--stage", "bank") == 0
    # the same VAE in both folders, so that the latents can be compared
    import shutil

    swapped.mkdir()
    shutil.copytree(plain / "vae", swapped / "vae")
    assert run(swapped, "--stage", "bank", "--set", "dit_swap=0.5") == 0
    a = training.load_tensors(str(plain / "bank.safetensors"))
    b = training.load_tensors(str(swapped / "bank.safetensors"))
    assert "swapped" not in a and torch.equal(a["latents"], b["latents"])
    assert b["swapped"].shape == b["latents"].shape
    assert all(not torch.equal(x, y) for x, y in zip(b["swapped"], b["latents"]))
    # the swapped clip is the same scene with another shape
    import numpy as np

    scene = training.sample_scene(np.random.default_rng(5), "base")
    other = training.swapped_shape(scene, np.random.default_rng(0))
    assert other.shape in SHAPES and other.shape != scene.shape
    assert (other.color, other.motion, other.background, other.size, other.seed) == (scene.color, scene.motion, scene.background, scene.size, scene.seed)
    bank = training.LatentBank(str(swapped), caption_dropout=0.5, swap=1.0, swap_levels=(0.3, 1.0))
    samples = bank.draw("video", torch.Generator().manual_seed(0), 64)
    captioned = [s for s in samples if s.caption]
    assert 0 < len(captioned) < 64
    assert all(s.input_latents is not None and s.input_levels == (0.3, 1.0) for s in captioned)
    assert all(s.input_latents is None for s in samples if not s.caption)
    assert any(torch.equal(captioned[0].input_latents, bank.swapped[i]) for i, c in enumerate(bank.captions) if c == captioned[0].caption)
    with pytest.raises(ConfigError, match="shape-swapped latents"):
        training.LatentBank(str(plain), caption_dropout=0.0, swap=0.5)
    capsys.readouterr()
    assert run(plain, "--set", "dit_swap=0.5") == 2  # one-line error; the bank is kept
    assert "shape-swapped latents" in capsys.readouterr().err and (plain / "bank.safetensors").is_file()
    for bad in ("dit_swap=1.5", "dit_swap_levels=0.9,0.2", "dit_swap_levels=half"):
        with pytest.raises(SystemExit) as exc:
            run(tmp_path / "refused", "--set", bad)
        assert exc.value.code == 2
    assert not (tmp_path / "refused").exists()


def test_tune_stage_goes_on_from_the_dit_stage_and_is_exported(tmp_path):
    from motiontune.backbones import load_backbone
    from motiontune.recipes import load_recipe

    work, model = tmp_path / "work", tmp_path / "model"
    assert run(work, "--set", "tune_steps=2", "--set", "tune_swap=1.0", "--export", str(model)) == 0
    assert "swapped" in training.load_tensors(str(work / "bank.safetensors"))  # the tune stage's swapped inputs
    assert (work / "pipeline-tune" / "model_index.json").is_file()
    tune_meta = json.loads((work / "tune" / "motiontune.json").read_text())
    assert tune_meta["training"]["steps"] == 2 and tune_meta["config"]["learning_rate"] == 3e-4
    # pipeline-tune holds the dit stage's final transformer
    dit = load_backbone(str(work / "pipeline"), family="wan")
    load_recipe(str(work / "dit"), dit)
    start = dict(load_backbone(str(work / "pipeline-tune"), family="wan").denoiser.named_parameters())
    assert all(torch.equal(p, start[n]) for n, p in dit.denoiser.named_parameters() if n in start)
    # the exported transformer is the tune stage's, not the dit stage's
    exported = dict(load_backbone(str(model), family="wan").denoiser.named_parameters())
    assert any(not torch.equal(p, exported[n]) for n, p in dit.denoiser.named_parameters() if n in exported)
    tuned = load_backbone(str(work / "pipeline-tune"), family="wan")
    load_recipe(str(work / "tune"), tuned)
    assert all(torch.equal(p, exported[n]) for n, p in tuned.denoiser.named_parameters() if n in exported)
    # a snapshot keeps both stages' last checkpoints; a run resumed from it rebuilds the tune
    # pipeline and exports the same model without training again
    snap = tmp_path / "snap"
    assert training.main(["--work-dir", str(work), "--snapshot", str(snap)]) == 0
    assert not (snap / "pipeline-tune").exists()
    assert os.listdir(snap / "dit" / "checkpoints") == ["step-000003"] and os.listdir(snap / "tune" / "checkpoints") == ["step-000002"]
    work2, model2 = tmp_path / "work2", tmp_path / "model2"
    import shutil

    work2.mkdir()  # the bank is not in a snapshot; reuse it rather than rebuild it
    shutil.copy2(work / "bank.safetensors", work2 / "bank.safetensors")
    shutil.copy2(work / "bank.json", work2 / "bank.json")
    assert run(work2, "--resume-from", str(snap), "--set", "tune_steps=2", "--set", "tune_swap=1.0", "--export", str(model2)) == 0
    again = dict(load_backbone(str(model2), family="wan").denoiser.named_parameters())
    assert all(torch.equal(p, again[n]) for n, p in exported.items())
    # a tune stage needs a finished dit stage
    with_no_dit = tmp_path / "nodit"
    shutil.copytree(work, with_no_dit)
    shutil.rmtree(with_no_dit / "pipeline-tune")
    shutil.rmtree(with_no_dit / "dit")
    cfg = training.config_from_settings(TINY + ["tune_steps=2"])
    try:
        training.tune_pipeline(cfg, str(with_no_dit), str(with_no_dit / "pipeline"))
    except training.ConfigError as err:
        assert "finished dit stage" in str(err)
    else:
        raise AssertionError("a tune stage started without a finished dit stage")


def test_short_batches_are_prefixes_of_the_bank_clips(tmp_path, capsys):
    """dit_short_fraction: some batches hold only the first latent frames of every clip (a causal
    VAE's encoding of the clip's first frames), with the loss weights and swapped inputs cut alike."""
    import pytest

    from motiontune.errors import ConfigError
    from motiontune.utils.files import save_tensors

    g = torch.Generator().manual_seed(0)
    save_tensors({"latents": torch.randn(6, 4, 9, 16, 16, generator=g),
                  "subject": (torch.rand(6, 1, 9, 16, 16, generator=g) > 0.8).to(torch.uint8),
                  "swapped": torch.randn(6, 4, 9, 16, 16, generator=g)}, str(tmp_path / "bank.safetensors"))
    (tmp_path / "bank.json").write_text(json.dumps({"captions": [f"clip {i}" for i in range(6)]}))
    bank = training.LatentBank(str(tmp_path), 0.0, fg_weight=2.0, swap=1.0, short_fraction=1.0, short_frames=3)
    for s in bank.draw("video", torch.Generator().manual_seed(1), 8):
        i = bank.captions.index(s.caption)
        assert s.latents.shape == (4, 3, 16, 16) and torch.equal(s.latents, bank.latents[i][:, :3])
        assert torch.equal(s.loss_weight, 1.0 + 2.0 * bank.subject[i][:, :3].float())
        assert torch.equal(s.input_latents, bank.swapped[i][:, :3])
    # without swapped, blurred or short inputs a draw takes what it always took from the random stream
    # (clip indices, caption dropout), so that plain runs keep their batches
    plain = training.LatentBank(str(tmp_path), 0.1)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    drawn = plain.draw("video", g1, 5)
    idx = torch.randint(6, (5,), generator=g2)
    torch.rand(5, generator=g2)
    assert torch.equal(g1.get_state(), g2.get_state())
    assert [s.latents.shape[1] for s in drawn] == [9] * 5 and all(s.input_latents is None for s in drawn)
    assert [plain.captions.index(s.caption) for s in drawn if s.caption] == [int(i) for i, s in zip(idx, drawn) if s.caption]
    half = training.LatentBank(str(tmp_path), 0.0, short_fraction=0.5, short_frames=2)
    lengths = []
    for k in range(40):
        frames = {s.latents.shape[1] for s in half.draw("video", torch.Generator().manual_seed(k), 4)}
        assert len(frames) == 1  # one length per batch
        lengths.append(frames.pop())
    assert set(lengths) == {2, 9} and 10 < lengths.count(2) < 30
    for kwargs in ({"short_fraction": 1.5}, {"short_fraction": 0.5, "short_frames": 9}, {"short_fraction": 0.5, "short_frames": 0}):
        with pytest.raises(ConfigError, match="dit_short"):
            training.LatentBank(str(tmp_path), 0.0, **kwargs)
    with pytest.raises(ConfigError, match="tune_swap"):  # the error names the setting that asked for swaps
        save_tensors({"latents": torch.zeros(2, 4, 9, 16, 16)}, str(tmp_path / "bank.safetensors"))
        training.LatentBank(str(tmp_path), 0.0, swap=0.5, swap_name="tune_swap")
    for bad in ("dit_short_fraction=2", "dit_short_frames=9"):
        with pytest.raises(SystemExit) as exc:
            run(tmp_path / "refused", "--set", "dit_short_fraction=0.5", "--set", bad)
        assert exc.value.code == 2 and "dit_short" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    # a tiny run trains on mixed lengths end to end
    assert run(tmp_path / "work", "--set", "dit_short_fraction=0.5", "--set", "dit_short_frames=1", "--set", "dit_steps=4") == 0
    state = json.loads((tmp_path / "work" / "dit" / "checkpoints" / "step-000004" / "state.json").read_text())
    assert state["step"] == 4


def test_tune_stage_short_fraction_of_its_own(tmp_path, capsys, monkeypatch):
    """tune_short_fraction: the tune stage's share of short batches, apart from the dit stage's
    (None: the dit stage's); a bad value is refused naming that setting."""
    import pytest

    cfg = training.config_from_settings(["dit_short_fraction=0.25"])
    assert cfg.tune_short_fraction is None and training.stage_short_fraction(cfg, "tune") == 0.25
    cfg = training.config_from_settings(["dit_short_fraction=0.25", "tune_short_fraction=0.75"])
    assert (training.stage_short_fraction(cfg, "dit"), training.stage_short_fraction(cfg, "tune")) == (0.25, 0.75)
    assert training.config_from_settings(["tune_short_fraction=none"]).tune_short_fraction is None
    with pytest.raises(SystemExit) as exc:
        run(tmp_path / "refused", "--set", "tune_short_fraction=1.5")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "tune_short_fraction=1.5" in err and "dit_short_fraction" not in err
    assert not (tmp_path / "refused").exists()
    # end to end: the dit stage trains on full clips only, the tune stage on short ones only
    made = []
    real = training.LatentBank.__init__

    def record(self, *args, **kwargs):
        real(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(training.LatentBank, "__init__", record)
    lengths = {}
    real_draw = training.LatentBank.draw

    def draw(self, kind, generator, n):
        samples = real_draw(self, kind, generator, n)
        lengths.setdefault(made.index(self), set()).update(s.latents.shape[1] for s in samples)
        return samples

    monkeypatch.setattr(training.LatentBank, "draw", draw)
    assert run(tmp_path / "work", "--set", "dit_short_fraction=0", "--set", "tune_short_fraction=1",
               "--set", "dit_short_frames=1", "--set", "tune_steps=2") == 0
    assert [b.short_fraction for b in made] == [0.0, 1.0]
    assert lengths == {0: {9}, 1: {1}}
    state = json.loads((tmp_path / "work" / "tune" / "checkpoints" / "step-000002" / "state.json").read_text())
    assert state["step"] == 2


def test_blurred_inputs_in_the_bank(tmp_path, capsys):
    """dit_blur/tune_blur: the bank gains each clip blurred (added to an existing bank too, its clips
    unchanged), and captioned samples get blurred inputs at blur_levels."""
    import numpy as np
    import pytest

    from diffusers import AutoencoderKLWan

    from motiontune.errors import ConfigError
    from motiontune.toyworld.oracle import corrupt

    work = tmp_path / "work"
    assert run(work, "--stage", "bank") == 0
    before = training.load_tensors(str(work / "bank.safetensors"))
    assert "blurred" not in before
    cfg = training.config_from_settings(TINY + ["dit_blur=0.3"])
    assert [training.caption(s) for s in training.bank_scenes(cfg)] == json.loads((work / "bank.json").read_text())["captions"]
    assert run(work, "--stage", "bank", "--set", "dit_blur=0.3") == 0  # added to the existing bank
    after = training.load_tensors(str(work / "bank.safetensors"))
    assert torch.equal(after["latents"], before["latents"]) and after["blurred"].shape == before["latents"].shape
    # clip 0 again by hand: its scene, blurred by its sigma, encoded and normalised like the bank
    vae = AutoencoderKLWan.from_pretrained(str(work / "vae")).eval()
    scene = training.bank_scenes(cfg)[0]
    sigma = np.random.default_rng([cfg.seed, 4]).uniform(0.7, 1.5, cfg.bank_size)[0]
    clip = training.video_to_tensor(corrupt(training.render(scene, 17, 32, 32), blur=float(sigma)))[None]
    with torch.no_grad():
        z = vae.encode(clip).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    assert torch.allclose(((z - mean) / std)[0].half().float(), after["blurred"][0].float(), atol=2e-2)
    assert not torch.equal(after["blurred"][0], after["latents"][0])
    bank = training.LatentBank(str(work), caption_dropout=0.3, blur=1.0, blur_levels=(0.0, 0.4))
    samples = bank.draw("video", torch.Generator().manual_seed(0), 32)
    for s in samples:
        if s.caption:
            i = bank.captions.index(s.caption)
            assert s.input_levels == (0.0, 0.4) and torch.equal(s.input_latents, bank.blurred[i])
        else:
            assert s.input_latents is None
    with pytest.raises(ConfigError, match="tune_blur"):
        training.LatentBank(str(work), 0.0, blur=0.6, swap=0.5, blur_name="tune_blur")
    import shutil

    fresh = tmp_path / "fresh"  # a bank whose captions are not the clips these settings draw
    shutil.copytree(work / "vae", fresh / "vae")
    (fresh / "bank.json").write_text(json.dumps({"captions": ["another clip"] * 8}))
    training.save_tensors({"latents": before["latents"]}, str(fresh / "bank.safetensors"))
    capsys.readouterr()
    assert run(fresh, "--stage", "bank", "--set", "dit_blur=0.3") == 2  # a bank of other clips: one line, kept
    assert "does not hold the clips" in capsys.readouterr().err and "blurred" not in training.load_tensors(str(fresh / "bank.safetensors"))
    for bad in (["tune_steps=5", "tune_swap=0.5", "tune_blur=0.6"], ["blur_levels=0.5,0.1"], ["blur_sigma=x"]):
        args = []
        for item in bad:
            args += ["--set", item]
        with pytest.raises(SystemExit) as exc:
            run(tmp_path / "refused", *args)
        assert exc.value.code == 2
    assert not (tmp_path / "refused").exists()


def test_rounded_render_rounds_the_corners_only(tmp_path):
    """rounded_render: the shape with rounded corners at full contrast; blur_round swaps that into the
    bank's blurred clips, and changed blur settings rebuild them."""
    import numpy as np

    from motiontune.toyworld.oracle import analyze
    from motiontune.toyworld.world import COLOR_RGB

    scene = training.replace(training.sample_scene(np.random.default_rng(3), "base", shapes=["square"], motions=["still"]), size=0.35)
    sharp, soft = training.render(scene), training.rounded_render(scene, 1.5)
    a, b = analyze(sharp), analyze(soft)
    assert (b.color, b.background) == (a.color, a.background) == (scene.color, scene.background)
    # rounded corners move the oracle's fit from the square towards the circle
    ratio = lambda v: v.shape_errors["circle"] / max(v.shape_errors["square"], 1e-9)  # noqa: E731
    assert a.shape == "square" and ratio(b) < 0.5 * ratio(a)
    # the centre stays the full colour and the centroid stays put; only the rim changes
    cx, cy = (np.array(a.centers[0]) * 32).astype(int)
    assert np.array_equal(soft[0, cy, cx], np.asarray(COLOR_RGB[scene.color], dtype=np.uint8))
    assert np.allclose(a.centers, b.centers, atol=0.02)
    changed = np.abs(soft.astype(int) - sharp.astype(int)).max(-1) > 0
    assert 0 < changed.mean() < 0.05
    assert np.array_equal(training.rounded_render(scene, 0.3)[0], training.rounded_render(scene, 0.3)[0])
    # the bank: blur_round=1 makes every blurred clip a rounded one; new settings rebuild the tensor
    work = tmp_path / "work"
    assert run(work, "--stage", "bank", "--set", "dit_blur=0.3") == 0
    first = training.load_tensors(str(work / "bank.safetensors"))["blurred"]
    assert json.loads((work / "bank.json").read_text())["blurred"] == {"blur_sigma": "0.7,1.5", "blur_round": 0.0}
    assert run(work, "--stage", "bank", "--set", "dit_blur=0.3", "--set", "blur_round=1") == 0
    second = training.load_tensors(str(work / "bank.safetensors"))["blurred"]
    assert json.loads((work / "bank.json").read_text())["blurred"]["blur_round"] == 1.0
    assert second.shape == first.shape and not torch.equal(first, second)


def test_until_stops_a_transformer_stage_and_the_next_run_goes_on(tmp_path, capsys):
    import pytest

    work = tmp_path / "work"
    assert run(work, "--stage", "dit", "--set", "dit_steps=4", "--until", "2") == 0
    assert "dit stage stopped at step 2 of 4" in capsys.readouterr().out
    assert sorted(os.listdir(work / "dit" / "checkpoints")) == ["step-000001", "step-000002"]
    assert not (work / "dit" / "motiontune.json").exists()
    first = json.loads((work / "dit" / "checkpoints" / "step-000002" / "state.json").read_text())["seconds"]
    assert run(work, "--stage", "dit", "--set", "dit_steps=4") == 0
    state = json.loads((work / "dit" / "checkpoints" / "step-000004" / "state.json").read_text())
    assert state["step"] == 4
    assert (work / "dit" / "motiontune.json").is_file()
    # the stage's wall time runs on from the checkpoint it resumed from, and goes into timings.json
    assert 0 < first < state["seconds"]
    timings = json.loads((work / "timings.json").read_text())
    assert timings["dit"] == pytest.approx(state["seconds"], abs=0.5) and timings["vae"] > 0 and timings["bank"] > 0
    assert "wall time by stage" in capsys.readouterr().out
    # a checkpoint written before times were recorded leaves the ledger's entry as it was
    path = work / "dit" / "checkpoints" / "step-000004" / "state.json"
    path.write_text(json.dumps({k: v for k, v in state.items() if k != "seconds"}))
    (work / "timings.json").write_text(json.dumps({"dit": 123.0}))
    assert run(work, "--stage", "dit", "--set", "dit_steps=4") == 0
    assert json.loads((work / "timings.json").read_text())["dit"] == 123.0
    assert json.loads(path.read_text())["seconds"] is None
    for bad in (["--until", "0", "--stage", "dit"], ["--until", "3"]):  # a step, and a transformer stage to stop
        with pytest.raises(SystemExit) as exc:
            run(tmp_path / "refused", *bad)
        assert exc.value.code == 2 and "--until" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_bank_encoded_in_padded_chunks_and_compiled_matches_eager(tmp_path, monkeypatch):
    """encode_clips pads the last chunk and keeps only the real clips; a bank built with --compile
    (the VAE's encoder compiled in place) holds the eager bank's latents, blurred ones included."""
    import shutil

    from diffusers import AutoencoderKLWan

    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    assert run(eager, "--stage", "vae") == 0
    vae = AutoencoderKLWan.from_pretrained(str(eager / "vae")).eval()
    clips = torch.rand(5, 3, 17, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    monkeypatch.setattr(training, "ENCODE_CHUNK", 2)  # chunks of 2, 2 and 1 (padded to 2)
    with torch.no_grad():
        whole = vae.encode(clips).latent_dist.mode()
    got = training.encode_clips(vae, clips)
    assert got.shape == whole.shape and torch.allclose(got, whole, atol=1e-5)
    monkeypatch.undo()
    shutil.copytree(eager / "vae", compiled / "vae")
    shutil.copy(eager / "vae-train.safetensors", compiled / "vae-train.safetensors")
    shutil.copy(eager / "vae-train.safetensors.json", compiled / "vae-train.safetensors.json")
    assert run(eager, "--stage", "bank", "--set", "dit_blur=0.3") == 0
    assert run(compiled, "--stage", "bank", "--set", "dit_blur=0.3", "--compile") == 0
    a = training.load_tensors(str(eager / "bank.safetensors"))
    b = training.load_tensors(str(compiled / "bank.safetensors"))
    assert sorted(a) == sorted(b) and "blurred" in a
    for key in ("latents", "blurred"):
        assert torch.allclose(a[key].float(), b[key].float(), atol=2e-2)
    assert torch.equal(a["subject"], b["subject"])
    # the latent statistics agree, and the compiled encoder kept the VAE's parameter names in what was saved
    means = [json.loads((w / "vae" / "config.json").read_text())["latents_mean"] for w in (eager, compiled)]
    assert torch.allclose(torch.tensor(means[0]), torch.tensor(means[1]), atol=1e-4)
    saved = AutoencoderKLWan.from_pretrained(str(compiled / "vae"))
    assert sorted(saved.state_dict()) == sorted(vae.state_dict())


def test_a_bank_built_anew_replaces_the_recorded_bank_time(tmp_path):
    """A work folder copied with another run's timings.json: a bank built from nothing records its own
    time, not the sum; adding the blurred clips to that bank adds their time."""
    work = tmp_path / "work"
    assert run(work, "--stage", "vae") == 0
    (work / "timings.json").write_text(json.dumps({"bank": 1000.0, "dit": 55.0}))
    assert run(work, "--stage", "bank") == 0
    built = json.loads((work / "timings.json").read_text())
    assert 0 < built["bank"] < 1000.0 and built["dit"] == 55.0
    assert run(work, "--stage", "bank", "--set", "dit_blur=0.3") == 0
    assert built["bank"] < json.loads((work / "timings.json").read_text())["bank"] < 1000.0


def test_vae_stage_compiled_matches_eager(tmp_path, monkeypatch, capsys):
    """--compile trains the VAE with its encoder and decoder compiled in place (here on torch's
    aot_eager backend: the same tracing, forward hook and recompilations, without C++ compilation):
    the weights agree with an eager run and keep their names, and the oracle check still runs."""
    from diffusers import AutoencoderKLWan
    from torch._dynamo.utils import counters

    monkeypatch.setattr(training, "VAE_COMPILE_BACKEND", "aot_eager")
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    assert run(eager, "--stage", "vae") == 0
    capsys.readouterr()
    counters.clear()
    assert run(compiled, "--stage", "vae", "--compile") == 0
    assert counters["stats"]["unique_graphs"] >= 2  # the encoder and the decoder at least were traced
    assert "toy VAE step 2: oracle on reconstructions" in capsys.readouterr().out
    a = AutoencoderKLWan.from_pretrained(str(eager / "vae")).state_dict()
    b = AutoencoderKLWan.from_pretrained(str(compiled / "vae")).state_dict()
    assert sorted(a) == sorted(b)
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-4
    assert json.loads((compiled / "vae-train.safetensors.json").read_text())["step"] == 2
    assert json.loads((compiled / "timings.json").read_text())["vae"] > 0
