import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


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
