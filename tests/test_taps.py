"""BlockTaps on every tiny backbone and the toy model."""

import pytest
import torch

from motiontune.errors import ConfigError
from motiontune.hooks.taps import BlockTaps
from motiontune.testing.tiny import tiny_families

NAMES = [*tiny_families(), "toy"]
VIDEO_KEYS = ("input", "output", "attention", "feed_forward")


def _inputs(spec, batch=2):
    rule = spec.frame_rule
    frames = rule.fixed if rule.fixed is not None else (2 * rule.k + 1 if rule.k > 1 else 4)
    m = spec.size_multiple
    g = torch.Generator().manual_seed(0)
    x = torch.randn(spec.latent_shape(frames, 2 * m, 3 * m, batch=batch), generator=g)
    t = torch.tensor([700.0, 300.0][:batch])
    if spec.schedule.prediction_type != "flow":
        t = t.long()
    return x, t, spec.encode_prompt(["a red circle moves left", "a dog runs"][:batch])


def _hook_count(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def _expected_shape(spec, site, x, cond):
    """(calls, tokens) of one block call: DiT blocks see (B, video tokens); Latte/UNet3D spatial
    blocks (B*F, h*w) and temporal ones (B*h*w, F)."""
    b = x.shape[0]
    if spec.family == "unet3d":
        layout = spec.site_token_layout(site.attention, x.shape)
    else:
        layout = spec.token_layout(x.shape)
    if site.kind == "spatial":
        return b * layout.frames, layout.tokens_per_frame
    if site.kind == "temporal":
        return b * layout.tokens_per_frame, layout.frames
    return b, layout.video_tokens


@pytest.mark.parametrize("name", NAMES)
def test_taps_record_every_block_without_changing_the_output(name, specs):
    spec = specs(name)
    x, t, cond = _inputs(spec)
    hooks = _hook_count(spec.denoiser)
    with torch.no_grad():
        plain = spec.predict(x, t, cond)
        with BlockTaps(spec) as taps:
            tapped = spec.predict(x, t, cond)
    assert torch.equal(tapped, plain)
    assert _hook_count(spec.denoiser) == hooks

    sites = spec.block_sites()
    assert sorted(taps.records) == [s.index for s in sites]
    text_tokens = cond[spec.text_key].shape[1]
    for site in sites:
        rec = taps.records[site.index]
        assert set(VIDEO_KEYS) <= set(rec), (site.path, sorted(rec))
        calls, tokens = _expected_shape(spec, site, x, cond)
        for key in VIDEO_KEYS:
            assert rec[key].shape[:2] == (calls, tokens), (site.path, key, rec[key].shape)
            assert rec[key].shape == rec["input"].shape
        if site.text_position != "none":
            for key in ("input_text", "output_text", "attention_text"):
                assert rec[key].shape[:2] == (x.shape[0], text_tokens), (site.path, key)
        else:
            assert not any(k.endswith("_text") for k in rec)
    if spec.family == "cogvideox":  # the feed-forward runs over [text; video]
        assert all(taps.records[s.index]["feed_forward_text"].shape[1] == text_tokens for s in sites)
    if spec.family == "hunyuan_video":  # only the single-stream proj_out runs over [video; text]
        assert [("feed_forward_text" in taps.records[s.index]) for s in sites] == [
            s.path.startswith("single_") for s in sites]


@pytest.mark.parametrize("name", NAMES)
def test_recorded_timestep_embedding_is_the_module_output(name, specs):
    spec = specs(name)
    x, t, cond = _inputs(spec)
    module = dict(spec.denoiser.named_modules())[spec.timestep_embedding_path()]
    seen = {}
    handle = module.register_forward_pre_hook(lambda m, a, k: seen.update(args=a, kwargs=k), with_kwargs=True)
    try:
        with torch.no_grad(), BlockTaps(spec, what=("timestep",)) as taps:
            spec.predict(x, t, cond)
    finally:
        handle.remove()
    with torch.no_grad():
        direct = module(*seen["args"], **seen["kwargs"])
    direct = direct[0] if isinstance(direct, tuple) else direct
    assert taps.timestep_embedding is not None and taps.timestep_embedding.shape[0] == x.shape[0]
    assert torch.equal(taps.timestep_embedding, direct)
    assert all(rec == {} for rec in taps.records.values())


@pytest.mark.parametrize("name", ["wan", "toy", "cogvideox", "hunyuan_video"])
def test_sequential_blocks_hand_their_output_to_the_next(name, specs):
    spec = specs(name)
    x, t, cond = _inputs(spec)
    with torch.no_grad(), BlockTaps(spec, what=("input", "output")) as taps:
        spec.predict(x, t, cond)
    for i in range(len(taps.records) - 1):
        a, b = taps.records[i], taps.records[i + 1]
        assert torch.equal(a["output"], b["input"])
        if "output_text" in a:
            assert torch.equal(a["output_text"], b["input_text"])


def test_wan_timestep_embedding_and_records_during_the_pass(specs):
    spec = specs("wan")
    x, t, cond = _inputs(spec)
    emb = spec.denoiser.condition_embedder
    seen = []
    blocks = spec.denoiser.blocks
    with torch.no_grad(), BlockTaps(spec) as taps:
        # a later hook of the same pass reads what earlier blocks recorded
        handle = blocks[1].register_forward_pre_hook(lambda m, a: seen.append(taps.records[0]["output"] is a[0]))
        try:
            spec.predict(x, t, cond)
        finally:
            handle.remove()
        direct = emb.time_embedder(emb.timesteps_proj(t).to(x.dtype))
    assert seen == [True]
    assert torch.equal(taps.timestep_embedding, direct)


def test_selection_detach_and_errors(specs):
    spec = specs("wan")
    x, t, cond = _inputs(spec, batch=1)
    x = x.requires_grad_(True)
    with BlockTaps(spec, what=("output", "attention"), blocks=[1]) as taps:
        spec.predict(x, t, cond)
    assert list(taps.records) == [1] and set(taps.records[1]) == {"output", "attention"}
    assert taps.records[1]["output"].requires_grad and taps.timestep_embedding is None
    with BlockTaps(spec, what=("output",), detach=True) as taps:
        spec.predict(x, t, cond)
    assert not taps.records[0]["output"].requires_grad
    with pytest.raises(ConfigError, match="out of range"):
        BlockTaps(spec, blocks=[len(spec.block_sites())])
    with pytest.raises(ConfigError, match="unknown tap kind"):
        BlockTaps(spec, what=("inputs",))
