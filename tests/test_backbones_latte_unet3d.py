"""Latte and UNet3D (ModelScope/ZeroScope) backbones on their tiny configurations."""

import pytest
import torch

from motiontune.backbones import load_backbone
from motiontune.backbones.latte import LatteSpec
from motiontune.backbones.unet3d import UNet3DSpec
from motiontune.errors import ConfigError

PROMPTS = ["a red circle moves left", "a dog runs on black background"]


@pytest.fixture(scope="module")
def latte(tiny_model_dir):
    return load_backbone(tiny_model_dir("latte"))


@pytest.fixture(scope="module")
def unet3d(tiny_model_dir):
    return load_backbone(tiny_model_dir("unet3d"))


def _latents(spec, frames, height, width, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(spec.latent_shape(frames, height, width, batch=batch), generator=g)


def _sizes(spec):
    # frames and grid sizes chosen so that frames != tokens per frame at every level
    if spec.family == "latte":
        return spec.frame_rule.fixed, 16, 24
    return 8, 8, 12


@pytest.mark.parametrize("name", ["latte", "unet3d"])
def test_batch_of_two_equals_two_single_calls(name, request):
    spec = request.getfixturevalue(name)
    z = _latents(spec, *_sizes(spec))
    t = torch.tensor([700, 250])
    cond = spec.encode_prompt(PROMPTS)
    with torch.no_grad():
        both = spec.predict(z, t, cond)
        one = [spec.predict(z[i : i + 1], t[i : i + 1], {k: v[i : i + 1] for k, v in cond.items()}) for i in range(2)]
    assert both.shape == z.shape
    torch.testing.assert_close(both, torch.cat(one), atol=1e-5, rtol=0)


def test_latte_needs_its_fixed_frame_count(latte):
    n = latte.video_length
    assert latte.frame_rule.fixed == n
    with pytest.raises(ConfigError, match=f"exactly {n} frames"):
        latte.latent_shape(n + 1, 16, 16)
    z = torch.randn(1, latte.latent_channels, n + 1, 4, 4)
    with pytest.raises(ConfigError, match=f"exactly {n} frames"):
        latte.predict(z, torch.tensor([10]), latte.encode_prompt("a dog"))


def test_latte_returns_eps_half_and_masks_padding_like_single_prompt_pipeline(latte):
    assert isinstance(latte, LatteSpec) and latte.learned_sigma
    z = _latents(latte, latte.video_length, 8, 8, batch=1)
    t = torch.tensor([400])
    cond = latte.encode_prompt("a dog runs")
    # the pipeline, for one prompt, cuts the T5 embeddings to the real tokens (mask_feature=True)
    cut, _ = latte.pipe.encode_prompt("a dog runs", do_classifier_free_guidance=False, mask_feature=True)
    assert cut.shape[1] == int(cond["encoder_attention_mask"].sum()) < cond["encoder_hidden_states"].shape[1]
    with torch.no_grad():
        full = latte.denoiser(hidden_states=z, timestep=t, encoder_hidden_states=cut, return_dict=False)[0]
        eps = latte.predict(z, t, cond)
        both = latte.predict(z, t, cond, return_variance=True)
    assert full.shape[1] == 2 * z.shape[1]
    torch.testing.assert_close(eps, full[:, : z.shape[1]], atol=1e-5, rtol=0)
    torch.testing.assert_close(both, full, atol=1e-5, rtol=0)


def test_latte_temporal_positions_can_be_remapped(latte):
    n = latte.video_length
    stock = latte.temporal_positions()
    assert stock.shape[:2] == (1, n)
    assert torch.equal(latte.temporal_position_embedding(range(n)), stock)
    previous = latte.set_temporal_positions([0.5 * i for i in range(n)])
    try:
        assert previous is stock and not torch.equal(latte.temporal_positions(), stock)
        with pytest.raises(ConfigError, match=f"exactly {n}"):
            latte.set_temporal_positions(range(n + 1))
    finally:
        latte.set_temporal_positions(None)
    assert torch.equal(latte.temporal_positions(), stock)


def test_unet3d_geometry_and_defaults(unet3d):
    assert isinstance(unet3d, UNet3DSpec)
    assert unet3d.schedule.prediction_type == "epsilon"
    assert unet3d.size_multiple == unet3d.spatial_compression * 2 ** (len(unet3d.denoiser.config.block_out_channels) - 1)
    for n in (1, 7, 8):
        unet3d.check_size(n, 8, 12)
    with pytest.raises(ConfigError, match=f"multiples of {unet3d.size_multiple}"):
        unet3d.check_size(8, 8, 10)
    source = unet3d.source
    try:
        unet3d.source = UNet3DSpec.aliases["zeroscope-v2-576w"]
        assert unet3d.default_size == (24, 320, 576)
        unet3d.source = UNet3DSpec.aliases["modelscope-t2v"]
        assert unet3d.default_size == (16, 256, 256)
    finally:
        unet3d.source = source


def _site_grid(spec, site, latent_shape):
    if hasattr(spec, "site_token_layout"):
        return spec.site_token_layout(site, latent_shape)
    return spec.token_layout(latent_shape)


@pytest.mark.parametrize("name", ["unet3d", "latte"])
def test_attention_sites_attend_over_what_their_kind_says(name, request):
    """Capture each site's input during a forward pass, then re-run the module on a copy with one frame changed.

    spatial: only that frame's outputs change, and tokens within it interact;
    cross: only that frame's outputs change, and video tokens do not interact;
    temporal: the outputs at the other frames change (both attn1 and attn2 of UNet3D temporal blocks).
    """
    spec = request.getfixturevalue(name)
    frames, h, w = _sizes(spec)
    batch = 2
    z = _latents(spec, frames, h, w, batch=batch)
    modules = dict(spec.denoiser.named_modules())
    sites = spec.attention_sites()
    seen = {}
    hooks = [
        modules[s.path].register_forward_pre_hook(
            lambda mod, args, kwargs, path=s.path: seen.setdefault(path, (args, kwargs)), with_kwargs=True
        )
        for s in sites
    ]
    try:
        with torch.no_grad():
            spec.predict(z, torch.tensor([500, 500]), spec.encode_prompt(PROMPTS))
    finally:
        for hk in hooks:
            hk.remove()
    assert set(seen) == {s.path for s in sites}
    assert {s.kind for s in sites} == {"spatial", "temporal", "cross"}
    f0 = 1
    for site in sites:
        args, kwargs = seen[site.path]
        hs = args[0] if args else kwargs["hidden_states"]
        ehs = kwargs.get("encoder_hidden_states")
        mask = kwargs.get("attention_mask")
        grid = _site_grid(spec, site, z.shape)
        module = modules[site.path]
        changed = hs.clone()
        if site.kind == "temporal":
            assert hs.shape[:2] == (batch * grid.tokens_per_frame, frames), site.path
            assert ehs is None, site.path
            changed[:, f0] += 1.0
        else:
            assert hs.shape[:2] == (batch * frames, grid.tokens_per_frame), site.path
            assert (ehs is not None) == (site.kind == "cross"), site.path
            rows = torch.arange(batch) * frames + f0
            changed[rows] += 1.0
        with torch.no_grad():
            base = module(hs, encoder_hidden_states=ehs, attention_mask=mask)
            out = module(changed, encoder_hidden_states=ehs, attention_mask=mask)
        diff = (out - base).abs()
        if site.kind == "temporal":
            others = [f for f in range(frames) if f != f0]
            assert diff[:, others].amax() > 1e-4, f"{site.path} does not attend across frames"
            continue
        in_frame = torch.zeros(batch * frames, dtype=torch.bool)
        in_frame[rows] = True
        assert diff[~in_frame].amax() <= 1e-6, f"{site.path} leaks across frames"
        assert diff[in_frame].amax() > 1e-4, site.path
        # one token of the frame changed: other tokens of that frame react for spatial only
        one = hs.clone()
        one[rows, 0] += 1.0
        with torch.no_grad():
            out = module(one, encoder_hidden_states=ehs, attention_mask=mask)
        rest = (out - base)[rows, 1:].abs().amax()
        if site.kind == "spatial":
            assert rest > 1e-4, f"{site.path} does not attend within the frame"
        else:
            assert rest <= 1e-6, f"{site.path} mixes video tokens"
