import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# torch's thread count stays as it is (the auto policy could change it between two runs a test compares)
os.environ.setdefault("MOTIONTUNE_THREADS", "keep")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """tiny_model_dir(family) -> folder of a tiny random model of that family (built once per session)."""
    from motiontune.testing.tiny import build_tiny

    cache: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in cache:
            cache[family] = build_tiny(family, tmp_path_factory.mktemp(f"tiny_{family}"))
        return cache[family]

    return get


@pytest.fixture(scope="session")
def tiny_toy(tmp_path_factory):
    """Folder of a tiny untrained model of the toy model's architecture (with its defaults files)."""
    from diffusers import WanPipeline

    from motiontune.toyworld.training import ToyModelConfig, build_components, write_defaults

    cfg = ToyModelConfig(z_dim=4, vae_base_dim=4, text_dim=16, heads=2, head_dim=12, layers=1, ffn_dim=32,
                         sample_steps=2, guidance=2.0, heldin_prompts=8)
    folder = str(tmp_path_factory.mktemp("toy"))
    WanPipeline(**build_components(cfg)).save_pretrained(folder)
    write_defaults(cfg, folder)
    return folder


@pytest.fixture(scope="module")
def specs(tiny_model_dir, tiny_toy):
    """specs(name) -> the loaded spec of a tiny family or "toy" (the tiny toy architecture), one per
    test module; for tests that do not change the model."""
    from motiontune.backbones import load_backbone

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_backbone(tiny_toy if name == "toy" else tiny_model_dir(name))
        return cache[name]

    return get
