"""BlockSite layouts, timestep-embedding modules and text keys of every tiny backbone and the toy model."""

import pytest
import torch

from motiontune.backbones import load_backbone
from motiontune.backbones.base import BlockSite
from motiontune.testing.tiny import tiny_families

NAMES = [*tiny_families(), "toy"]


def _is_linear(module):
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    return isinstance(base, torch.nn.Linear)


@pytest.mark.parametrize("name", NAMES)
def test_every_site_names_real_modules(name, specs):
    spec = specs(name)
    modules = dict(spec.denoiser.named_modules())
    sites = spec.block_sites()
    assert sites and all(isinstance(s, BlockSite) for s in sites)
    assert [s.index for s in sites] == list(range(len(sites)))
    assert len({s.path for s in sites}) == len(sites)
    attention_paths = {a.path for a in spec.attention_sites()}
    for s in sites:
        assert s.kind in ("joint", "spatial", "temporal")
        for path in (s.path, s.attention, s.feed_forward, s.norm, s.cross_attention, s.ff_norm):
            if path is not None:
                assert path in modules, path
                assert path == s.path or path.startswith(s.path + "."), f"{path} is not inside {s.path}"
        assert s.attention in attention_paths
        if s.cross_attention is not None:
            assert s.cross_attention in attention_paths
        assert s.ff_linears, "every tiny block has a feed-forward"
        for lin in s.ff_linears:
            assert _is_linear(modules[lin]), lin
    assert spec.timestep_embedding_path() in modules
    assert spec.describe()["blocks"] == len(sites)


@pytest.mark.parametrize("name", NAMES)
def test_text_keys_name_the_conditioning(name, specs):
    spec = specs(name)
    cond = spec.encode_prompt(["a red circle moves left"])
    assert spec.text_key in cond and cond[spec.text_key].ndim == 3
    if spec.pooled_text_key is not None:
        assert cond[spec.pooled_text_key].ndim == 2
    assert (spec.pooled_text_key is not None) == (spec.family == "hunyuan_video")


def test_wan_sites(specs):
    spec = specs("wan")
    s = spec.block_sites()[1]
    assert (s.path, s.kind, s.attention, s.cross_attention, s.feed_forward) == (
        "blocks.1", "joint", "blocks.1.attn1", "blocks.1.attn2", "blocks.1.ffn")
    assert s.ff_linears == ("blocks.1.ffn.net.0.proj", "blocks.1.ffn.net.2")
    assert s.norm is None and s.ff_norm is None and s.text_position == "none"  # modulated inline
    assert len(spec.block_sites()) == len(spec.denoiser.blocks)
    assert spec.timestep_embedding_path() == "condition_embedder.time_embedder"
    assert spec.text_key == "encoder_hidden_states"


def test_cogvideox_sites(specs):
    spec = specs("cogvideox")
    s = spec.block_sites()[0]
    assert (s.path, s.attention, s.feed_forward, s.norm, s.ff_norm, s.cross_attention, s.text_position) == (
        "transformer_blocks.0", "transformer_blocks.0.attn1", "transformer_blocks.0.ff",
        "transformer_blocks.0.norm1", "transformer_blocks.0.norm2", None, "before")
    assert s.ff_linears == ("transformer_blocks.0.ff.net.0.proj", "transformer_blocks.0.ff.net.2")
    assert spec.timestep_embedding_path() == "time_embedding"


def test_hunyuan_sites(specs):
    spec = specs("hunyuan_video")
    sites = spec.block_sites()
    n = len(spec.denoiser.transformer_blocks)
    assert len(sites) == n + len(spec.denoiser.single_transformer_blocks)
    dual, single = sites[0], sites[n]
    assert (dual.path, dual.attention, dual.feed_forward, dual.norm) == (
        "transformer_blocks.0", "transformer_blocks.0.attn", "transformer_blocks.0.ff", "transformer_blocks.0.norm1")
    assert (single.path, single.attention, single.feed_forward) == (
        "single_transformer_blocks.0", "single_transformer_blocks.0.attn", "single_transformer_blocks.0.proj_out")
    assert single.ff_linears == ("single_transformer_blocks.0.proj_mlp", "single_transformer_blocks.0.proj_out")
    assert {s.kind for s in sites} == {"joint"} and {s.text_position for s in sites} == {"after"}
    assert spec.timestep_embedding_path() == "time_text_embed"
    assert (spec.text_key, spec.pooled_text_key) == ("prompt_embeds", "pooled_projections")


def test_latte_sites_interleave_spatial_and_temporal(specs):
    spec = specs("latte")
    sites = spec.block_sites()
    assert [(s.path, s.kind) for s in sites[:2]] == [
        ("transformer_blocks.0", "spatial"), ("temporal_transformer_blocks.0", "temporal")]
    assert sites[0].cross_attention == "transformer_blocks.0.attn2" and sites[1].cross_attention is None
    assert sites[1].ff_linears == (
        "temporal_transformer_blocks.0.ff.net.0.proj", "temporal_transformer_blocks.0.ff.net.2")
    assert all(s.norm is None and s.ff_norm is None for s in sites)  # ada_norm_single modulates inline
    assert spec.timestep_embedding_path() == "adaln_single.emb"


def test_unet3d_sites_follow_the_transformer_models(specs):
    spec = specs("unet3d")
    sites = spec.block_sites()
    first = sites[0]
    assert (first.path, first.kind, first.norm, first.ff_norm) == (
        "transformer_in.transformer_blocks.0", "temporal", "transformer_in.transformer_blocks.0.norm1",
        "transformer_in.transformer_blocks.0.norm3")
    assert first.cross_attention is None  # attn2 of a temporal block is a second self-attention
    spatial = next(s for s in sites if s.path.startswith("down_blocks.0.attentions.0."))
    assert spatial.kind == "spatial"
    assert spatial.cross_attention == "down_blocks.0.attentions.0.transformer_blocks.0.attn2"
    models = [path for path, _, _ in spec._transformer_models()]
    assert [s.path.rsplit(".transformer_blocks.", 1)[0] for s in sites] == models
    assert spec.timestep_embedding_path() == "time_embedding"


def test_ff_linears_survive_peft_wrapping(tiny_model_dir):
    from peft import LoraConfig, inject_adapter_in_model

    spec = load_backbone(tiny_model_dir("wan"))
    before = spec.block_sites()
    targets = [lin for s in before for lin in s.ff_linears]
    inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2, target_modules=targets), spec.denoiser)
    after = spec.block_sites()
    assert [s.ff_linears for s in after] == [s.ff_linears for s in before]
    modules = dict(spec.denoiser.named_modules())
    assert all(hasattr(modules[lin], "lora_A") and _is_linear(modules[lin]) for lin in targets)
