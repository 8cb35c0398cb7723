"""The synmotion recipe: prompt roles on every text encoder, the zero-initialised residues and
refiner, embedding-exclusive training, the subject-prior bank, the CLI and bad input."""

import json
import os

import pytest
import torch

from motiontune.backbones import load_backbone
from motiontune.cli import main
from motiontune.data.dataset import Sample, TrainingData
from motiontune.data.spv import SPVSettings, build_bank
from motiontune.data.video_io import write_video
from motiontune.errors import ConfigError, InputError
from motiontune.hooks.call import DenoiserCall, denoiser_call
from motiontune.recipes import load_recipe, make_recipe
from motiontune.recipes.prompt_roles import (
    MOTION,
    OTHER,
    PAD,
    SUBJECT,
    clip_token_roles,
    find_roles,
    infer_motion,
    parse_marked,
    roles_of,
    token_roles,
)
from motiontune.recipes.synmotion import EMBEDDING_BRANCHES, LORA, SUBJECT_RESIDUE
from motiontune.training.plan import Stage
from motiontune.training.trainer import Trainer, TrainConfig

CAPTION = "a red circle moves left on a black background"
SETTINGS = {"subject": "a red circle", "motion": "moves left"}
FAMILIES = ["wan", "cogvideox", "hunyuan_video", "toy"]


def _size(spec):
    rule = spec.frame_rule
    frames = rule.fixed if rule.fixed is not None else next(n for n in range(4, 64) if rule.is_valid(n))
    m = spec.size_multiple
    return frames, m, m


def _spec(specs, family):
    return specs(family)


# ---------------------------------------------------------------------- prompt roles
def test_one_unmarked_toy_caption_is_split_by_the_toy_reader():
    from motiontune.recipes.prompt_roles import read_roles

    assert read_roles("a red circle moves in a zigzag on a black background") == ("a red circle", "moves in a zigzag")
    assert read_roles("An orange square orbits on a gray background.") == ("An orange square", "orbits")
    assert read_roles("a person claps in a park") is None
    recipe = make_recipe("synmotion")
    assert recipe.prepare_captions(["an orange square bounces on a navy background"], 1) == ["an orange square bounces on a navy background"]
    assert (recipe.config.subject, recipe.config.motion) == ("an orange square", "bounces")


def test_marked_templates_and_phrase_spans():
    assert parse_marked("[a fox] {claps} in a field") == ("a fox claps in a field", "a fox", "claps")
    assert parse_marked(CAPTION) == (CAPTION, None, None)
    r = roles_of("[a red circle] {moves left} on a black background")
    assert (r.subject_text, r.motion_text) == ("a red circle", "moves left")
    assert r.subject == (0, 12) and r.motion == (13, 23)
    # no subject given: the text in front of the motion
    assert find_roles(CAPTION, None, "moves left").subject_text == "a red circle"
    # a whole-word match is preferred ("red" inside "redwood" is not the subject)
    assert find_roles("a redwood and a red dog runs", "red dog", "runs").subject == (16, 23)
    with pytest.raises(InputError, match="motion phrase 'jumps' does not occur"):
        find_roles(CAPTION, "a red circle", "jumps")
    with pytest.raises(InputError, match="subject phrase 'a dog' does not occur"):
        find_roles(CAPTION, "a dog", "moves left")
    with pytest.raises(InputError, match="overlap"):
        find_roles(CAPTION, "a red circle moves", "moves left")
    for bad, msg in (("[a] [b] {c}", "more than one"), ("[] {c}", "empty"), ("[a {c}", "unbalanced")):
        with pytest.raises(InputError, match=msg):
            parse_marked(bad)


def test_motion_phrase_of_several_unmarked_captions():
    assert infer_motion(["a cyan triangle moves in a zigzag on a brown background",
                         "a red circle moves in a zigzag on a gray background"]) == "moves in a zigzag"
    assert infer_motion(["a person claps in a park", "a robot claps on a street", "a dog claps"]) == "claps"
    assert infer_motion([CAPTION]) is None and infer_motion(["a b", "c d"]) is None
    recipe = make_recipe("synmotion")
    plain = recipe.prepare_captions(["a red circle orbits on a black background", "a blue square orbits on a gray background"], 2)
    assert recipe.config.motion == "orbits" and recipe.config.subject == ["a red circle", "a blue square"]
    assert plain == ["a red circle orbits on a black background", "a blue square orbits on a gray background"]
    # candidate phrases (one setting for several scenarios): the longest that every caption holds
    cands = make_recipe("synmotion", motion=["moves", "orbits", "moves in a zigzag"])
    cands.prepare_captions(["a red circle moves in a zigzag on a black background"], 1)
    assert cands.config.motion == "moves in a zigzag" and cands.config.subject == "a red circle"
    with pytest.raises(InputError, match="none of the motion phrases"):
        make_recipe("synmotion", motion=["bounces"]).prepare_captions([CAPTION], 1)
    with pytest.raises(InputError, match="different motions"):
        make_recipe("synmotion").prepare_captions(["[a dog] {runs}", "[a cat] {jumps}"], 2)
    with pytest.raises(ConfigError, match="2 subjects for 3 captions"):
        make_recipe("synmotion", subject=["a", "b"], motion="x").prepare_captions(["a x", "b x", "a x"], 3)


@pytest.mark.parametrize("family", FAMILIES)
def test_token_roles_on_each_text_encoder(family, specs):
    spec = _spec(specs, family)
    tokens = token_roles(spec, roles_of("[a red circle] {moves left} on a black background"))
    emb = spec.encode_prompt([CAPTION])[spec.text_key][0]
    assert tokens.shape == (emb.shape[0],)
    # word-level tiny tokenizers: one token per word, then the end token (not on HunyuanVideo's Llama side)
    assert tokens[:10].tolist() == [SUBJECT] * 3 + [MOTION] * 2 + [OTHER] * 5
    kept = int((tokens != PAD).sum())
    if family == "hunyuan_video":
        assert kept == int(spec.encode_prompt([CAPTION])["encoder_attention_mask"][0].sum())
        clip = clip_token_roles(spec, roles_of("[a red circle] {moves left} on a black background"))
        assert clip[:5].tolist() == [SUBJECT] * 3 + [MOTION] * 2 and int((clip != PAD).sum()) == 10
    elif family == "wan":  # Wan zeroes the embedding after the prompt's tokens
        assert kept == int((emb.abs().sum(-1) > 0).sum())
    # the roles follow the text: another subject of another length
    other = token_roles(spec, find_roles("a dog moves left on a black background", "a dog", "moves left"))
    assert other[:4].tolist() == [SUBJECT] * 2 + [MOTION] * 2


def test_wan_cleans_the_text_before_tokenizing(specs):
    spec = specs("wan")
    tokens = token_roles(spec, find_roles("a  red circle   moves left", "red circle", "moves left"))
    assert tokens[:5].tolist() == [OTHER, SUBJECT, SUBJECT, MOTION, MOTION]


def test_a_caption_cut_before_the_phrase_is_refused(specs):
    spec = specs("wan")  # the tiny Wan keeps 16 tokens
    long = "a red circle on a black background and a blue square on a white background then moves left"
    with pytest.raises(InputError, match="cut by the tokenizer .* before the end of the motion phrase 'moves left'"):
        token_roles(spec, find_roles(long, "a red circle", "moves left"))


# ---------------------------------------------------------------------- the recipe at init
def _call(spec, recipe, x, t, cond, phase="sample"):
    spec.denoiser.eval()
    with torch.no_grad():
        return denoiser_call(spec, recipe, x, t, cond, DenoiserCall(phase, t, tuple(x.shape)))


@pytest.mark.parametrize("family", FAMILIES)
def test_untrained_recipe_is_the_base_model_exactly(family, tiny_model_dir, tiny_toy):
    spec = load_backbone(tiny_toy if family == "toy" else tiny_model_dir(family))
    f, h, w = _size(spec)
    x = torch.randn(spec.latent_shape(f, h, w, batch=2), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([700.0, 700.0])
    cond = spec.encode_prompt(["", CAPTION])  # a guided batch: the unconditional row and the caption
    base = _call(spec, None, x, t, cond)
    recipe = make_recipe("synmotion", **SETTINGS)
    recipe.apply(spec)
    assert set(recipe.branches()) == {LORA, *EMBEDDING_BRANCHES}
    edited = recipe.condition(cond, DenoiserCall("sample", t, tuple(x.shape)))
    assert torch.equal(edited[spec.text_key], cond[spec.text_key])
    assert torch.equal(_call(spec, recipe, x, t, cond), base)
    # e_l_mot starts as the motion tokens of the whole phrase "a red circle moves left"; e_l_sub is random
    phrase = spec.encode_prompt(["a red circle moves left"])[spec.text_key][0]
    roles = token_roles(spec, find_roles("a red circle moves left", "a red circle", "moves left"))
    assert torch.equal(recipe.embed.motion_residue.embedding.detach(), phrase[roles == MOTION].float())
    sub = recipe.embed.subject_residue.embedding.detach()
    assert sub.shape == phrase[roles == SUBJECT].shape and float(sub.abs().sum()) > 0
    for name in EMBEDDING_BRANCHES:
        z = getattr(recipe.embed, name).zero
        assert not z.weight.any() and not z.bias.any()
    # each residue acts on its own tokens only; the refiner on the prompt's tokens, never on padding
    with torch.no_grad():
        recipe.embed.motion_residue.zero.bias.fill_(1.0)
    out = recipe.condition(cond, DenoiserCall("sample", t, tuple(x.shape)))[spec.text_key]
    diff = (out - cond[spec.text_key]).abs().sum(-1)
    assert torch.equal(out[0], cond[spec.text_key][0])  # the empty prompt has no roles
    assert (diff[1][roles_full(spec) == MOTION] > 0).all() and (diff[1][roles_full(spec) != MOTION] == 0).all()
    with torch.no_grad():
        recipe.embed.motion_residue.zero.bias.zero_()
        recipe.embed.refiner.zero.bias.fill_(1.0)
    out = recipe.condition(cond, DenoiserCall("sample", t, tuple(x.shape)))[spec.text_key]
    diff = (out - cond[spec.text_key]).abs().sum(-1)
    assert (diff[1][roles_full(spec) != PAD] > 0).all() and (diff[1][roles_full(spec) == PAD] == 0).all()


def roles_full(spec):
    return token_roles(spec, find_roles(CAPTION, "a red circle", "moves left"))


def test_residue_resamples_to_another_token_count():
    from motiontune.recipes.synmotion import Residue

    r = Residue(torch.randn(3, 4))
    with torch.no_grad():
        r.zero.weight.copy_(torch.eye(4)[:, :, None])
    assert torch.allclose(r(3), r.embedding)
    five = r(5)
    assert five.shape == (5, 4) and torch.allclose(five[0], r.embedding[0]) and torch.allclose(five[-1], r.embedding[-1])
    assert torch.allclose(five[2], r.embedding[1])


# ---------------------------------------------------------------------- training
def _spv(tmp_path, **extra):
    return {"spv_prompts": ["[a blue square] moves right on a white background", "[a green circle] moves up on a black background"],
            "spv_steps": 2, "spv_cache": str(tmp_path / "spv"), **extra}


def test_passes_follow_alpha():
    recipe = make_recipe("synmotion", **SETTINGS)
    kinds = [recipe.passes(s, Stage(), torch.Generator().manual_seed(s))[0] for s in range(400)]
    user = sum(p.name == "user" for p in kinds)
    assert 260 < user < 340  # alpha = 0.75
    assert {p.train for p in kinds if p.name == "spv"} == {(SUBJECT_RESIDUE,)}
    assert {p.pool for p in kinds if p.name == "spv"} == {"spv"}
    no_spv = make_recipe("synmotion", **SETTINGS, sample_alpha=1.0)
    assert {no_spv.passes(s, Stage(), torch.Generator().manual_seed(s))[0].name for s in range(50)} == {"user"}
    # without a subject residue there is nothing for a subject-prior step to train
    assert not make_recipe("synmotion", **SETTINGS, subject_residue=False)._uses_spv()


def test_a_step_trains_only_its_branches_bit_for_bit(tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir("wan"))
    f, h, w = _size(spec)
    data = TrainingData([Sample(torch.rand(3, f, h, w) * 2 - 1, CAPTION)])
    recipe = make_recipe("synmotion", **SETTINGS, **_spv(tmp_path), sample_alpha=0.5)
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), steps=5, progress=False, learning_rate=1e-2, checkpoint_every=0)
    tr = Trainer(spec, recipe, data, cfg, {"size": [f, h, w]})
    assert set(tr.optimizers) == {LORA, *EMBEDDING_BRANCHES}
    seen = set()
    for step in range(cfg.steps):
        _, passes, trained = tr.step_plan(step)
        seen.add(passes[0].name)
        before = {b: [p.detach().clone() for p in ps] for b, ps in tr.branches.items()}
        moments = {b: [v.clone() for st in tr.optimizers[b].state.values() for v in st.values() if torch.is_tensor(v)]
                   for b in tr.branches}
        tr.train_step(step)
        expected = [SUBJECT_RESIDUE] if passes[0].name == "spv" else list(tr.branches)
        assert trained == expected
        for b, ps in tr.branches.items():
            moved = any(not torch.equal(a, p.detach()) for a, p in zip(before[b], ps))
            assert moved == (b in trained), f"step {step} ({passes[0].name}): {b}"
            if b not in trained:
                now = [v for st in tr.optimizers[b].state.values() for v in st.values() if torch.is_tensor(v)]
                assert len(now) == len(moments[b]) and all(torch.equal(a, c) for a, c in zip(moments[b], now))
    assert seen == {"user", "spv"}
    assert recipe.spv_info["clips"] == 2 and recipe.spv_info["generated"] == 2


def test_without_the_motion_lora_only_the_embeddings_move(tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir("wan"))
    f, h, w = _size(spec)
    data = TrainingData([Sample(torch.rand(3, f, h, w) * 2 - 1, CAPTION)])
    recipe = make_recipe("synmotion", **SETTINGS, motion_lora=False, sample_alpha=1.0)
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), steps=3, progress=False, learning_rate=1e-2, checkpoint_every=0)
    tr = Trainer(spec, recipe, data, cfg, {"size": [f, h, w]})
    lora = [p.detach().clone() for p in tr.branches[LORA]]
    embed = {b: [p.detach().clone() for p in tr.branches[b]] for b in EMBEDDING_BRANCHES}
    for step in range(cfg.steps):
        _, _, trained = tr.step_plan(step)
        assert sorted(trained) == sorted(EMBEDDING_BRANCHES)
        tr.train_step(step)
    assert all(torch.equal(a, p.detach()) for a, p in zip(lora, tr.branches[LORA]))  # the LoRA never moves
    for b in EMBEDDING_BRANCHES:
        assert any(not torch.equal(a, p.detach()) for a, p in zip(embed[b], tr.branches[b])), b
    with pytest.raises(ConfigError, match="nothing to train"):
        make_recipe("synmotion", motion_lora=False, motion_residue=False, subject_residue=False, refiner=False)
    with pytest.raises(ConfigError, match="motion_lora must be true or false"):
        make_recipe("synmotion", motion_lora="yes")


# ---------------------------------------------------------------------- the subject-prior bank
def test_spv_bank_is_written_reused_resumed_and_refuses_another_model(tiny_model_dir, tiny_toy, tmp_path, specs, capsys):
    spec = specs("wan")
    settings = SPVSettings(["a red circle moves left", "a blue square moves up", "a dog runs"], _size(spec), 2, 1.0)
    bank = build_bank(spec, settings, cache_root=str(tmp_path), progress=False)
    assert bank.generated == 3 and len(bank.latents) == 3 and bank.seconds_per_clip > 0
    assert bank.latents[0].shape == spec.latent_shape(*_size(spec))[1:]
    manifest = json.loads(open(os.path.join(bank.folder, "manifest.json")).read())
    assert manifest["settings"]["prompts"] == settings.prompts and manifest["model"]["family"] == "wan"
    # the bank is the frozen model's generation
    from motiontune.diffusion.sampling import SamplingConfig, generate

    z = generate(spec, ["a blue square moves up"], None, SamplingConfig(2, 1.0, *_size(spec), seed=1, batch_size=1),
                 progress=False, return_latents=True)
    assert torch.equal(z[0].float(), bank.latents[1])
    # reused: nothing generated
    again = build_bank(spec, settings, cache_root=str(tmp_path), progress=False)
    assert again.folder == bank.folder and again.generated == 0
    assert all(torch.equal(a, b) for a, b in zip(again.latents, bank.latents))
    # resumed clip by clip: only the missing one is made, the same as before
    os.remove(os.path.join(bank.folder, "clip_0002.safetensors"))
    resumed = build_bank(spec, settings, cache_root=str(tmp_path), progress=False)
    assert resumed.generated == 1 and torch.equal(resumed.latents[2], bank.latents[2])
    # other prompts: another folder under the same root
    other = build_bank(spec, SPVSettings(["a dog runs"], _size(spec), 2, 1.0), cache_root=str(tmp_path), progress=False)
    assert other.folder != bank.folder
    # a bank folder made by another model, or for other prompts, is refused in one line
    toy = load_backbone(tiny_toy)
    with pytest.raises(ConfigError, match="made by another model"):
        build_bank(toy, SPVSettings(settings.prompts, _size(toy), 2, 1.0), folder=bank.folder, progress=False)
    with pytest.raises(ConfigError, match="other prompts or settings"):
        build_bank(spec, SPVSettings(["a dog runs"], _size(spec), 2, 1.0), folder=bank.folder, progress=False)
    with pytest.raises(ConfigError, match="prompt list is empty"):
        SPVSettings([], (1, 16, 16), 2, 1.0)
    # from the CLI: refused in one line before the first step, nothing written
    videos, size = _media(toy, str(tmp_path))
    code = main(["train", "--backbone", tiny_toy, "--recipe", "synmotion", "--video", videos[0], "--caption",
                 "[a red circle] {moves left}", "--steps", "1", "--output", str(tmp_path / "x"), "--quiet", *size,
                 "--set", f"spv_bank={bank.folder}"])
    assert code == 2 and not (tmp_path / "x" / "motiontune.json").exists()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("motiontune: error: ") and "made by another model" in err


# ---------------------------------------------------------------------- CLI
def _media(spec, folder, n=1):
    f, h, w = _size(spec)
    paths = []
    for i in range(n):
        paths.append(os.path.join(folder, f"ref{i}.mp4"))
        write_video(torch.rand(3, f, h, w) * 2 - 1, paths[-1], fps=8)
    return paths, ["--num-frames", str(f), "--height", str(h), "--width", str(w)]


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_train_then_generate(family, tiny_model_dir, tiny_toy, tmp_path, capsys):
    model = tiny_toy if family == "toy" else tiny_model_dir(family)
    spec = load_backbone(model)
    videos, size = _media(spec, str(tmp_path), 2)
    out = tmp_path / "run"
    args = ["train", "--backbone", model, "--recipe", "synmotion", "--video", videos[0], "--video", videos[1],
            "--caption", "[a red circle] {moves left} on a black background",
            "--caption", "[a blue square] {moves left} on a white background",
            "--steps", "3", "--output", str(out), "--quiet", *size]
    if family == "toy":  # with subject-prior steps
        args += ["--set", "sample_alpha=0.4", "--set", "spv_steps=2", "--set", f"spv_cache={tmp_path / 'spv'}"]
    else:
        args += ["--set", "sample_alpha=1.0"]
    assert main(args) == 0
    info = json.loads((out / "motiontune.json").read_text())
    assert info["recipe"] == "synmotion" and list(info["adapters"]) == [LORA]
    assert info["config"]["motion"] == "moves left" and info["config"]["subject"] == ["a red circle", "a blue square"]
    assert info["references"]["captions"] == [CAPTION, "a blue square moves left on a white background"]
    assert info["synmotion"]["file"] == "synmotion_embeddings.safetensors" and info["synmotion"]["branches"] == list(EMBEDDING_BRANCHES)
    if family == "toy":
        assert info["synmotion"]["spv"]["clips"] == 8
        err = capsys.readouterr().err  # the bank's cost, before it is made
        assert "SPV bank" in err and "8 to make: 8 x 2 steps x 2 pass(es) = 32 denoiser calls" in err
        assert info["config"]["learning_rate"] == spec.default_learning_rate  # the toy model's folder
    # the Python API loads every branch bit for bit
    spec2 = load_backbone(model)
    recipe = load_recipe(str(out), spec2)
    from motiontune.training.checkpoint import latest_checkpoint, load_checkpoint

    _, trained, _, _ = load_checkpoint(latest_checkpoint(str(out)))
    state = recipe.state_dict()
    assert set(state) == set(trained) and all(torch.equal(state[k], v) for k, v in trained.items())
    # a new subject, given as an option and as a marked prompt
    assert main(["generate", "--adapter", str(out), "--prompt", "a green triangle moves left on a white background",
                 "--subject", "a green triangle", "--prompt", "[a yellow square] {moves left} on a black background",
                 "--steps", "2", "--output", str(tmp_path / "gen"), "--quiet", *size]) == 0
    names = sorted(os.listdir(tmp_path / "gen"))
    assert len([n for n in names if n.endswith(".mp4")]) == 2 and not any("[" in n or "{" in n for n in names)


def test_generation_splits_new_prompts_the_same_way(tiny_model_dir, tmp_path):
    spec = load_backbone(tiny_model_dir("wan"))
    recipe = make_recipe("synmotion", **SETTINGS)
    recipe.apply(spec)
    plain = recipe.prepare_prompts(["[a dog] {moves left} on a white background", "a cat moves left"], None, None)
    assert plain == ["a dog moves left on a white background", "a cat moves left"]
    for text, n_sub in zip(plain, (2, 2)):
        cond = spec.encode_prompt([text])
        roles = recipe._row_roles(cond[spec.text_key])[0]
        assert roles[: n_sub + 2].tolist() == [SUBJECT] * n_sub + [MOTION] * 2
    with pytest.raises(InputError, match="subject phrase 'a fox' does not occur"):
        recipe.prepare_prompts(["a cat moves left"], "a fox", None)


def test_bad_input_is_refused_in_one_line(tiny_model_dir, tmp_path, capsys):
    model = tiny_model_dir("wan")
    videos, size = _media(load_backbone(model), str(tmp_path))

    def train(caption, *extra, out="x", backbone=model):
        return main(["train", "--backbone", backbone, "--recipe", "synmotion", "--video", videos[0], "--caption", caption,
                     "--steps", "1", "--output", str(tmp_path / out), "--quiet", *size, *extra])

    cases = [
        ((CAPTION, "--subject", "a red circle", "--motion", "jumps"), "motion phrase 'jumps' does not occur in the caption"),
        ((CAPTION, "--subject", "a dog", "--motion", "moves left"), "subject phrase 'a dog' does not occur"),
        ((CAPTION, "--subject", "a red circle moves", "--motion", "moves left"), "overlap"),
        (("a red circle moves left over the grass",), "no motion phrase given"),  # not a caption any reader knows
        (("a red circle on a black background and a blue square on a white background then moves left", "--motion", "moves left"),
         "cut by the tokenizer"),
        (("[a red circle] {moves left}", "--set", "spv_prompts=[]"), "spv_prompts is empty"),
        (("[a red circle] {moves left}", "--set", "spv_prompts=['a cat runs']"), "mark its subject"),
    ]
    image = str(tmp_path / "still.png")
    import imageio.v3 as iio
    iio.imwrite(image, (torch.rand(16, 16, 3) * 255).to(torch.uint8).numpy())
    cases.append(((CAPTION, "--image", image, "--image-caption", "a red circle"), "takes no still images"))
    for args, message in cases:
        assert train(*args) == 2, message
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("motiontune: error: ") and message in err, err
        assert not os.path.exists(tmp_path / "x") or not os.listdir(tmp_path / "x")
    # no example video at all (the API; the CLI asks for --video itself)
    from motiontune import api
    with pytest.raises(InputError, match="give at least one --video"):
        api.train(model, videos=[], captions=[], output_dir=str(tmp_path / "x"), recipe="synmotion")
    assert not os.path.exists(tmp_path / "x") or not os.listdir(tmp_path / "x")
    # an unsupported backbone family
    latte = tiny_model_dir("latte")
    os.makedirs(tmp_path / "l")
    lv, lsize = _media(load_backbone(latte), str(tmp_path / "l"))
    assert main(["train", "--backbone", latte, "--recipe", "synmotion", "--video", lv[0], "--caption", "[a red circle] {moves left}",
                 "--steps", "1", "--output", str(tmp_path / "y"), "--quiet", *lsize]) == 2
    assert "latte is not supported" in capsys.readouterr().err
    # subject/motion for an adapter that does not split prompts
    assert main(["generate", "--backbone", model, "--prompt", CAPTION, "--subject", "a red circle", "--steps", "1",
                 "--output", str(tmp_path / "g"), "--quiet", *size]) == 2
    assert "need an adapter that splits prompts by role" in capsys.readouterr().err


# ---------------------------------------------------------------------- few-shot toy scenarios
def test_fewshot_scenarios_are_fixed_and_references_differ_from_targets():
    from motiontune.toyworld.fewshot import fewshot_scenarios
    from motiontune.toyworld.motions import HELDOUT_MOTIONS
    from motiontune.toyworld.world import parse_caption

    a, b = fewshot_scenarios(seed=0), fewshot_scenarios(seed=0)
    assert a == b and fewshot_scenarios(seed=1) != a
    assert len(a) == len(HELDOUT_MOTIONS) >= 5 and {s.tags["motion"] for s in a} == set(HELDOUT_MOTIONS)
    for s in a:
        assert s.kind == "fewshot" and 3 <= len(s.references) <= 5 and len(s.targets) == 3
        refs = [(r.color, r.shape, r.background) for r in s.references]
        assert all(r.motion == s.tags["motion"] for r in s.references)
        assert len({(c, sh) for c, sh, _ in refs}) == len(refs) and len({bg for _, _, bg in refs}) == len(refs)
        for t in s.targets:
            f = parse_caption(t)
            assert f.motion == s.tags["motion"]
            assert (f.color, f.shape) not in {(c, sh) for c, sh, _ in refs}
            assert f.background not in {bg for _, _, bg in refs}
    assert len(fewshot_scenarios(references=4)[0].references) == 4
    with pytest.raises(ConfigError, match="3 to 4 references"):
        fewshot_scenarios(references=5)


def test_fewshot_motion_accuracy_is_measured_by_the_oracle():
    from motiontune.toyworld.fewshot import fewshot_scenarios
    from motiontune.toyworld.metrics import motion_accuracy
    from motiontune.toyworld.render import render
    from motiontune.toyworld.world import caption

    s = fewshot_scenarios()[0]
    clip = render(s.references[0])
    assert motion_accuracy(clip, caption(s.references[0])) == 1.0  # a rendered reference shows its motion
    other = caption(s.references[0]).replace("orbits", "moves left")
    assert motion_accuracy(clip, other) == 0.0


def test_spv_cost_script_on_a_tiny_toy_model(tiny_toy, tmp_path, monkeypatch):
    from test_toy_benchmarks import load_script

    monkeypatch.setenv("MOTIONTUNE_TOY_MODEL", tiny_toy)
    script = load_script("spv_cost")
    out, doc = tmp_path / "spv.json", tmp_path / "RESULTS.md"
    assert script.main(["--backbone", tiny_toy, "--clips", "2", "--steps", "2", "--output-json", str(out),
                        "--append-results", str(doc)]) == 0
    data = json.loads(out.read_text())
    assert data["clips"] == 2 and data["steps"] == 2 and data["seconds_per_clip"] > 0
    assert data["estimated_seconds_default_list"] == pytest.approx(data["seconds_per_clip"] * data["default_list"])
    assert "s per clip" in doc.read_text()
    assert script.main(["--clips", "-1"]) == 2
    assert script.main(["--threads", "0"]) == 2
