"""temporal_positions / stock_positions on every tiny backbone, the toy model and the CogVideoX RoPE variants."""

import pytest
import torch
from diffusers.models.embeddings import get_3d_sincos_pos_embed

from motiontune.backbones import load_backbone
from motiontune.backbones.cogvideox import CogVideoXSpec
from motiontune.errors import ConfigError
from motiontune.hooks.positions import stock_positions, temporal_positions
from motiontune.testing.tiny import tiny_families
from motiontune.testing.tiny_cogvideox import tiny_cogvideox_components

# cogvideox: the 1.0 / 2b layout (sin-cos); cogvideox-rope: 1.0 / 5b (3D RoPE); cogvideox-1.5: RoPE + patch_size_t=2
NAMES = [*tiny_families(), "toy", "cogvideox-rope", "cogvideox-1.5"]
WITH_POSITIONS = [n for n in NAMES if n != "unet3d"]


@pytest.fixture(scope="module")
def specs(tiny_model_dir, tiny_toy):
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            if name == "cogvideox-rope":
                cache[name] = CogVideoXSpec.from_components(**tiny_cogvideox_components(rope=True))
            elif name == "cogvideox-1.5":
                cache[name] = CogVideoXSpec.from_components(**tiny_cogvideox_components(rope=True, patch_size_t=2))
            else:
                cache[name] = load_backbone(tiny_toy if name == "toy" else tiny_model_dir(name))
        return cache[name]

    return get


def _inputs(spec):
    """Latents with several temporal and spatial tokens, a timestep and a conditioning dict."""
    rule = spec.frame_rule
    frames = rule.fixed if rule.fixed is not None else (2 * rule.k + 1 if rule.k > 1 else 4)  # 3+ latent frames
    m = spec.size_multiple
    g = torch.Generator().manual_seed(0)
    x = torch.randn(spec.latent_shape(frames, 2 * m, 2 * m), generator=g)
    t = torch.tensor([400.0]) if spec.schedule.prediction_type == "flow" else torch.tensor([400])
    return x, t, spec.encode_prompt(["a red circle moves left"])


def _hook_count(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


@pytest.mark.parametrize("name", NAMES)
def test_stock_positions_reproduce_the_plain_output_exactly(name, specs):
    spec = specs(name)
    x, t, cond = _inputs(spec)
    stock = stock_positions(spec, x.shape[2])
    assert stock.dtype == torch.float32 and stock.ndim == 1 and len(stock) > 1
    assert len(stock) == spec.token_layout(x.shape).frames
    hooks = _hook_count(spec.denoiser)
    with torch.no_grad():
        plain = spec.predict(x, t, cond)
        with temporal_positions(spec, stock):
            inside = spec.predict(x, t, cond)
    assert torch.equal(inside, plain)
    assert _hook_count(spec.denoiser) == hooks


@pytest.mark.parametrize("name", WITH_POSITIONS)
def test_other_positions_change_the_output_until_exit(name, specs):
    spec = specs(name)
    x, t, cond = _inputs(spec)
    stock = stock_positions(spec, x.shape[2])
    last = torch.zeros_like(stock)
    last[-1] = 0.5
    with torch.no_grad():
        plain = spec.predict(x, t, cond)
        for label, positions in (("scaled", stock * 2), ("last moved", stock + last), ("shifted", stock + 0.5)):
            with temporal_positions(spec, positions):
                moved = spec.predict(x, t, cond)
            if label == "shifted" and name in ("wan", "toy"):
                # Wan's RoPE acts only inside video self-attention: a uniform shift keeps every
                # relative position, so the output moves by rounding only
                torch.testing.assert_close(moved, plain, atol=1e-5, rtol=0)
            else:
                assert not torch.allclose(moved, plain, atol=1e-5), label
            assert torch.equal(spec.predict(x, t, cond), plain)
        # restored also when the block raises
        with pytest.raises(RuntimeError, match="boom"):
            with temporal_positions(spec, stock + 0.5):
                spec.predict(x, t, cond)
                raise RuntimeError("boom")
        assert torch.equal(spec.predict(x, t, cond), plain)


@pytest.mark.parametrize("name", NAMES)
def test_bad_positions_raise_one_line_config_errors(name, specs):
    spec = specs(name)
    x, t, cond = _inputs(spec)
    stock = stock_positions(spec, x.shape[2])
    bad = [stock[:-1], torch.cat([stock, stock[-1:] + 1]), stock.clone().fill_(float("nan")),
           torch.tensor([0.0, float("inf")] + [2.0] * (len(stock) - 2)), stock[None], torch.empty(0)]
    with torch.no_grad():
        plain = spec.predict(x, t, cond)
        for positions in bad:
            with pytest.raises(ConfigError) as err:
                with temporal_positions(spec, positions):
                    spec.predict(x, t, cond)
            assert "\n" not in str(err.value)
        assert torch.equal(spec.predict(x, t, cond), plain)


def test_unet3d_refuses_other_positions(specs):
    spec = specs("unet3d")
    x, _, _ = _inputs(spec)
    with pytest.raises(ConfigError, match="unet3d has no temporal position embedding"):
        with temporal_positions(spec, stock_positions(spec, x.shape[2]) + 0.5):
            pass


def test_latte_table_is_restored(specs):
    spec = specs("latte")
    stock = spec.temporal_positions()
    half = [0.5 * i for i in range(spec.video_length)]
    with temporal_positions(spec, torch.tensor(half)):
        assert not torch.equal(spec.temporal_positions(), stock)
        assert torch.equal(spec.temporal_positions(), spec.temporal_position_embedding(half))
    assert spec.temporal_positions() is stock


@pytest.mark.parametrize("name", ["wan", "toy", "hunyuan_video"])
def test_rope_shift_by_one_gives_the_rows_of_a_longer_clip(name, specs):
    """Positions 1..n build the table of frames 1..n of an (n+1)-frame clip."""
    spec = specs(name)
    x, _, _ = _inputs(spec)
    rope = spec.denoiser.rope
    n = spec.temporal_tokens(x.shape[2])
    longer = torch.cat([x, x[:, :, : spec.patch_size[0]]], dim=2)
    with temporal_positions(spec, stock_positions(spec, x.shape[2]) + 1):
        shifted = rope(x)
    full = rope(longer)
    for a, b in zip(shifted, full):
        rows = a.reshape(n, -1, a.shape[-1])
        assert torch.equal(rows, b.reshape(n + 1, -1, b.shape[-1])[1:])


@pytest.mark.parametrize("name", ["cogvideox-rope", "cogvideox-1.5"])
def test_cogvideox_rope_shift_by_one_gives_the_rows_of_a_longer_clip(name, specs):
    spec = specs(name)
    x, _, _ = _inputs(spec)
    p_t = spec.patch_size[0]
    padded = torch.cat([x[:, :, :1]] * spec.temporal_padding(x.shape[2]) + [x], dim=2)
    n = padded.shape[2] // p_t
    with temporal_positions(spec, stock_positions(spec, x.shape[2]) + 1):
        shifted = spec.rotary_embedding(padded)
    full = spec.rotary_embedding(torch.cat([padded, padded[:, :, :p_t]], dim=2))
    for a, b in zip(shifted, full):
        assert torch.equal(a.reshape(n, -1, a.shape[-1]), b.reshape(n + 1, -1, b.shape[-1])[1:])


def test_cogvideox_sincos_positions_follow_the_3d_table(specs):
    """On the sin-cos layout, positions 1..n add the temporal rows of frames 1..n of a longer table."""
    spec = specs("cogvideox")
    x, _, cond = _inputs(spec)
    embed = spec.denoiser.patch_embed
    text = spec.denoiser.patch_embed.text_proj(cond["encoder_hidden_states"])
    video = x.permute(0, 2, 1, 3, 4)
    f, h, w = video.shape[1], video.shape[3] // embed.patch_size, video.shape[4] // embed.patch_size
    with torch.no_grad():
        plain = embed(cond["encoder_hidden_states"], video)
        with temporal_positions(spec, stock_positions(spec, x.shape[2]) + 1):
            shifted = embed(cond["encoder_hidden_states"], video)
    table = get_3d_sincos_pos_embed(embed.embed_dim, (w, h), f + 1, embed.spatial_interpolation_scale,
                                    embed.temporal_interpolation_scale, output_type="pt").float()
    expected = (table[1:] - table[:-1]).reshape(-1, embed.embed_dim)
    n_text = text.shape[1]
    torch.testing.assert_close(shifted[0, n_text:] - plain[0, n_text:], expected, atol=1e-5, rtol=0)
    assert torch.equal(shifted[:, :n_text], plain[:, :n_text])


def test_cogvideox_layouts_without_remappable_positions_are_refused_by_name():
    from diffusers import CogVideoXTransformer3DModel

    components = tiny_cogvideox_components(rope=True)
    components["transformer"] = CogVideoXTransformer3DModel.from_config(
        components["transformer"].config, use_learned_positional_embeddings=True
    )
    spec = CogVideoXSpec.from_components(**components)
    with pytest.raises(ConfigError, match="learned positional embeddings"):
        with temporal_positions(spec, torch.arange(3.0)):
            pass
    spec = CogVideoXSpec.from_components(**tiny_cogvideox_components(rope=False, patch_size_t=2))
    with pytest.raises(ConfigError, match="patchifies time"):
        with temporal_positions(spec, torch.arange(2.0)):
            pass
