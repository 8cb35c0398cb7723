"""Shared checks run on the tiny configuration of every registered backbone."""

import pytest
import torch

from motiontune.backbones import backbone_families, detect_family, load_backbone
from motiontune.errors import ConfigError, ModelLoadError
from motiontune.testing.tiny import tiny_families

FAMILIES = tiny_families()


def test_every_backbone_has_a_tiny_configuration():
    assert set(backbone_families()) == set(FAMILIES)


def _size(spec):
    f, h, w = spec.tiny_size if hasattr(spec, "tiny_size") else (None, None, None)
    k = spec.frame_rule
    frames = k.fixed if k.fixed is not None else (9 if k.k == 4 else 8)
    m = spec.size_multiple
    return frames, 2 * m, 2 * m


@pytest.mark.parametrize("family", FAMILIES)
def test_load_encode_predict_decode(family, tiny_model_dir):
    folder = tiny_model_dir(family)
    assert detect_family(folder) == family
    spec = load_backbone(folder)
    assert spec.family == family
    frames, h, w = _size(spec)
    cond = spec.encode_prompt(["a red circle moves left", "a dog runs"])
    assert all(v.shape[0] == 2 for v in cond.values())
    # the cache returns identical tensors for a repeated prompt
    again = spec.encode_prompt(["a dog runs"])
    for k in cond:
        assert torch.equal(again[k][0], cond[k][1])
    pixels = torch.rand(1, 3, frames, h, w) * 2 - 1
    with torch.no_grad():
        z = spec.encode_video(pixels)
    assert tuple(z.shape) == spec.latent_shape(frames, h, w)
    t = torch.tensor([500.0]) if spec.schedule.prediction_type == "flow" else torch.tensor([500])
    with torch.no_grad():
        out = spec.predict(z, t, {k: v[:1] for k, v in cond.items()})
    assert out.shape == z.shape
    assert torch.isfinite(out).all()
    with torch.no_grad():
        video = spec.decode_latents(z)
    assert video.shape[:2] == (1, 3) and video.shape[-2:] == (h, w)
    assert video.min() >= -1 and video.max() <= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_layout_names_real_modules(family, tiny_model_dir):
    spec = load_backbone(tiny_model_dir(family))
    names = dict(spec.denoiser.named_modules())
    sites = spec.attention_sites()
    assert sites, "a backbone must expose its attention modules"
    for site in sites:
        assert site.path in names
        for name in site.module_names():
            assert name in names, name
            assert isinstance(names[name], torch.nn.Linear)
        assert site.heads * site.head_dim == names[site.module_names(("q",))[0]].out_features
    kinds = {s.kind for s in sites}
    assert "cross" in kinds or "joint" in kinds
    frames, h, w = _size(spec)
    layout = spec.token_layout(spec.latent_shape(frames, h, w))
    assert layout.video_tokens > 0


def test_bad_sources_raise_one_line_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_backbone(str(tmp_path))
    with pytest.raises(ConfigError, match="unknown backbone"):
        load_backbone("x", family="nope")
    with pytest.raises(ConfigError, match="family"):
        load_backbone("someorg/some-model")


def test_frame_rule_errors(tiny_model_dir):
    spec = load_backbone(tiny_model_dir("wan"))
    with pytest.raises(ConfigError, match="4k\\+1"):
        spec.latent_shape(8, 32, 32)
    with pytest.raises(ConfigError, match="multiples of 16"):
        spec.latent_shape(9, 40, 32)
