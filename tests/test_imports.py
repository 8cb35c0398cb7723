"""Import direction: the core never imports the toy world, and no module leans on the CLI's
private names. What the toy world lends the core (model, suite, scorer, probe matcher) is
found by name, only when asked for."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import motiontune
from motiontune.errors import ConfigError, ModelLoadError

PACKAGE = Path(motiontune.__file__).parent

CORE_MODULES = [
    "motiontune.backbones",
    "motiontune.api",
    "motiontune.recipes",
    "motiontune.training.trainer",
    "motiontune.diffusion.sampling",
    "motiontune.data.dataset",
    "motiontune.probe.probe",
    "motiontune.evaluation.suites",
    "motiontune.evaluation.runner",
]
#: modules that add subcommands: they use motiontune.cli_shared, not the CLI itself
COMMAND_MODULES = ["motiontune.evaluation.commands", "motiontune.probe.commands"]

_PROBE = """
import importlib, json, sys
out = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    out[name] = sorted(m for m in sys.modules if m == "motiontune.toyworld" or m.startswith("motiontune.toyworld.")
                       or m == "motiontune.cli")
print(json.dumps(out))
"""


def test_importing_the_core_imports_no_toy_world_nor_cli():
    """In a fresh interpreter, after each import in turn: no motiontune.toyworld module (and no
    motiontune.cli) is loaded. The first module listed with any is the one that pulled it in."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *CORE_MODULES, *COMMAND_MODULES],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(loaded) == CORE_MODULES + COMMAND_MODULES
    assert {name: mods for name, mods in loaded.items() if mods} == {}


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every import statement in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((a.name, [], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [a.name for a in node.names], node.lineno))
    return found


def _package_files() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30 and PACKAGE / "cli.py" in files
    return files


def test_no_module_imports_private_names_of_the_cli():
    offenders = []
    for path in _package_files():
        for module, names, line in _imports(path):
            private = [n for n in names if n.startswith("_")]
            if module == "motiontune.cli" and private:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {', '.join(private)}")
            if module == "motiontune" and "cli" in names:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports motiontune.cli")
    assert offenders == []


def test_subcommand_modules_do_not_import_the_cli():
    """The CLI loads them by name; they register through motiontune.cli_shared."""
    for rel in ("evaluation/commands.py", "probe/commands.py", "toyworld/commands.py"):
        modules = {m for m, _, _ in _imports(PACKAGE / rel)}
        assert "motiontune.cli_shared" in modules, rel
        assert "motiontune.cli" not in modules, rel


def test_no_core_source_imports_the_toy_world():
    """Not even inside a function: the core names the toy world only in registry strings."""
    offenders = []
    for path in _package_files():
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "toyworld":
            continue
        for module, names, line in _imports(path):
            if module == "motiontune.toyworld" or module.startswith("motiontune.toyworld.") or (
                    module == "motiontune" and "toyworld" in names):
                offenders.append(f"motiontune/{rel}:{line} imports {module}")
    assert offenders == []


# --- the toy world is still found by name ---------------------------------------------------


def test_toy_model_alias_resolves_to_the_packaged_model(monkeypatch):
    from motiontune.backbones import model_aliases, resolve_model_alias

    entry = model_aliases()["toy"]
    assert entry.family == "wan" and entry.resolver == "motiontune.toyworld.plugin:toy_model_path"
    monkeypatch.delenv("MOTIONTUNE_TOY_MODEL", raising=False)
    folder, family = resolve_model_alias("toy")
    assert family == "wan"
    assert Path(folder) == PACKAGE / "toyworld" / "model"
    assert (Path(folder) / "model_index.json").is_file()


class _Loaded(Exception):
    """Raised by the stub from_pretrained, carrying what load_backbone passed it."""


def _stub_wan(monkeypatch):
    from motiontune.backbones import get_spec_class

    def from_pretrained(cls, source, device="cpu", dtype=None, **kwargs):
        raise _Loaded(cls.__name__, source)

    monkeypatch.setattr(get_spec_class("wan"), "from_pretrained", classmethod(from_pretrained))


def test_load_backbone_toy_loads_the_toy_folder_with_the_wan_spec(monkeypatch):
    from motiontune.backbones import load_backbone

    _stub_wan(monkeypatch)
    monkeypatch.delenv("MOTIONTUNE_TOY_MODEL", raising=False)
    with pytest.raises(_Loaded) as info:
        load_backbone("toy")
    assert info.value.args == ("WanSpec", str(PACKAGE / "toyworld" / "model"))
    with pytest.raises(ConfigError, match="'toy' is a wan model, not cogvideox"):
        load_backbone("toy", family="cogvideox")


def test_registered_model_alias(monkeypatch, tmp_path):
    from motiontune.backbones import load_backbone, model_aliases, register_model_alias
    from motiontune.backbones import local_models

    registry = local_models._MODEL_ALIASES
    for name in ("mine", "gone", "bad"):
        monkeypatch.setitem(registry, name, None)  # removed again after the test
    toy = str(PACKAGE / "toyworld" / "model")
    register_model_alias("mine", lambda: toy, description="my model")  # family read from the folder
    register_model_alias("gone", "motiontune.no_such_module:find")
    assert model_aliases()["mine"].description == "my model"
    _stub_wan(monkeypatch)
    with pytest.raises(_Loaded) as info:
        load_backbone("mine")
    assert info.value.args == ("WanSpec", toy)
    with pytest.raises(ModelLoadError, match="'gone' is not available.*motiontune.no_such_module"):
        load_backbone("gone")
    with pytest.raises(ConfigError, match="module:attribute"):
        register_model_alias("bad", "no colon here")


def test_list_shows_the_toy_model(capsys):
    from motiontune.cli import main

    assert main(["list", "backbones"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  toy            the embedded toy-world model (a tiny Wan2.1), loaded with --backbone toy" in lines
    assert lines.index("aliases") > lines.index("  toy            the embedded toy-world model (a tiny Wan2.1), loaded with --backbone toy")


def test_toy_suite_and_scorer_are_found_by_name():
    from motiontune.evaluation.runner import SCORERS, get_scorer
    from motiontune.evaluation.suites import SUITES, load_suite
    from motiontune.toyworld import plugin

    assert SUITES["toy"].loader == "motiontune.toyworld.plugin:load_suite"  # a name, not an import
    assert SCORERS["toy"] == "motiontune.toyworld.plugin:bench_scores"
    suite = load_suite("toy", limit=2)
    assert suite.name == "toy" and len(suite) == 2
    assert all(s.scorers == ("toy",) and (s.videos or s.images) for s in suite)
    assert get_scorer("toy") is plugin.bench_scores
    with pytest.raises(ConfigError, match="unknown scorer 'nope'"):
        get_scorer("nope")


def test_suite_registered_by_a_missing_module_is_a_config_error(monkeypatch):
    from motiontune.evaluation.suites import SUITES, load_suite, register_suite

    monkeypatch.setitem(SUITES, "later", SUITES["toy"])  # restored afterwards
    register_suite("later", "motiontune.no_such_module:load")
    with pytest.raises(ConfigError, match="the later suite is not available"):
        load_suite("later")
    with pytest.raises(ConfigError, match="module:attribute"):
        register_suite("later", "not a target")


def test_probe_reads_toy_captions_through_the_registered_matcher():
    from motiontune.probe.probe import SUBJECT_MATCHERS, subject_match_for
    from motiontune.toyworld import caption, render, sample_scene

    assert SUBJECT_MATCHERS["toy"] == "motiontune.toyworld.plugin:subject_matcher"
    assert subject_match_for("a man dances in a park") is None
    scene = sample_scene(3)
    match = subject_match_for(caption(scene))
    assert match is not None and match(render(scene)) == 1.0
