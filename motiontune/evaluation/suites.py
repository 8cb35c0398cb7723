"""Benchmark suites: lists of :class:`Scenario` (what to tune on, what to generate afterwards).

A suite is named on the command line as

- a registered name: ``toy`` (the toy-world suite), or any name given to :func:`register_suite`;
- ``KIND:SOURCE`` with a registered loader that reads a path: ``tgve:DIR``, ``scenarios:FILE``,
  ``folder:DIR``;
- a bare path, whose kind is guessed: a ``.yaml``/``.yml``/``.json`` file is a scenario file, a
  folder holding a CSV with a "Video name" column is TGVE, any other folder a folder of videos.

Formats are described in docs/metrics.md ("Benchmark suites").

A loader is registered as a callable or as a ``"package.module:function"`` string imported only
when its suite is loaded. The toy suite is registered that way
(``motiontune.toyworld.plugin:load_suite``): this module never imports the toy world, which
itself builds on :class:`Scenario`.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from motiontune.data.video_io import IMAGE_EXTENSIONS, READ_VIDEO_EXTENSIONS, list_frame_files, natural_sort_key
from motiontune.errors import ConfigError, InputError
from motiontune.utils.targets import check_target, resolve_target

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

VideoSource = str | os.PathLike | np.ndarray
ImageSource = str | os.PathLike | np.ndarray


def scenario_id(text: str, limit: int = 64) -> str:
    """A file-name-safe id from free text ("Dog #1 / dance" -> "dog-1-dance")."""
    keep = "".join(c if c.isalnum() or c in "._" else "-" for c in text.strip().lower())
    keep = re.sub(r"-{2,}", "-", keep).strip("-._")
    return keep[:limit] or "scenario"


@dataclass
class Scenario:
    """One benchmark cell's inputs, shared by every recipe.

    ``videos``/``captions``: the reference clip(s) to tune on (paths, or uint8 (F, H, W, 3)
    arrays) and their caption(s), one caption or one per video. ``images``/``image_captions``:
    subject images (appearance references). ``prompts``: what to generate after tuning.
    ``group``: a label to break results down by (TGVE source, MotionBench category, ...).
    ``scorers``: names of extra scorers (:data:`motiontune.evaluation.runner.SCORERS`) to run on
    this scenario's outputs, e.g. ``("toy",)`` for the toy-world oracle metrics.
    ``size``: (frames, height, width) to tune and generate at when the run does not set one.
    ``metadata``: anything JSON-serialisable, copied into the results.
    """

    id: str
    prompts: list[str]
    videos: list[VideoSource] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    images: list[ImageSource] = field(default_factory=list)
    image_captions: list[str] = field(default_factory=list)
    group: str = ""
    scorers: tuple[str, ...] = ()
    size: tuple[int, int, int] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.prompts, str):
            self.prompts = [self.prompts]
        if isinstance(self.captions, str):
            self.captions = [self.captions]
        if isinstance(self.image_captions, str):
            self.image_captions = [self.image_captions]
        if isinstance(self.videos, (str, os.PathLike, np.ndarray)):
            self.videos = [self.videos]
        if isinstance(self.images, (str, os.PathLike)):
            self.images = [self.images]
        self.prompts, self.captions = list(self.prompts), list(self.captions)
        self.videos, self.images, self.image_captions = list(self.videos), list(self.images), list(self.image_captions)
        self.scorers = tuple(self.scorers)
        if self.size is not None:
            self.size = tuple(int(x) for x in self.size)  # type: ignore[assignment]
            if len(self.size) != 3:
                raise ConfigError(f"scenario {self.id!r}: size must be (frames, height, width), got {self.size}")
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ConfigError(f"scenario id {self.id!r} must be letters, digits, '.', '_' or '-' (see scenario_id())")
        if not self.prompts or not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise ConfigError(f"scenario {self.id!r} needs at least one non-empty prompt")
        if not self.videos and not self.images:
            raise ConfigError(f"scenario {self.id!r} needs a reference video or image")
        for what, items, caps in (("video", self.videos, self.captions), ("image", self.images, self.image_captions)):
            if items and not caps:
                raise ConfigError(f"scenario {self.id!r} needs a caption for its reference {what}(s)")
            if items and len(caps) not in (1, len(items)):
                raise ConfigError(f"scenario {self.id!r}: give one {what} caption, or one per {what} ({len(items)})")

    @property
    def caption(self) -> str:
        """The first reference caption (of the videos, else of the images)."""
        caps = self.captions or self.image_captions
        return caps[0] if caps else ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (in-memory arrays appear as ``"<array (F, H, W, 3)>"``)."""

        def src(x: Any) -> str:
            return f"<array {tuple(x.shape)}>" if isinstance(x, np.ndarray) else str(x)

        return {
            "id": self.id, "prompts": self.prompts, "videos": [src(v) for v in self.videos],
            "captions": self.captions, "images": [src(i) for i in self.images],
            "image_captions": self.image_captions, "group": self.group, "scorers": list(self.scorers),
            "size": list(self.size) if self.size else None, "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], root: str | os.PathLike | None = None) -> Scenario:
        """Build from a mapping with the field names (``video``/``image``/``caption``/``prompt``
        accepted for single items); relative paths are taken from ``root``."""
        data = dict(data)
        for single, plural in (("video", "videos"), ("image", "images"), ("caption", "captions"),
                               ("prompt", "prompts"), ("image_caption", "image_captions")):
            if single in data:
                if plural in data:
                    raise ConfigError(f"scenario {data.get('id')!r}: give {single!r} or {plural!r}, not both")
                data[plural] = data.pop(single)
        known = {"id", "prompts", "videos", "captions", "images", "image_captions", "group", "scorers", "size", "metadata"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"scenario {data.get('id')!r}: unknown key(s) {', '.join(unknown)}")
        if "id" not in data:
            raise ConfigError(f"scenario without an 'id': {data}")
        for key in ("videos", "images"):
            items = data.get(key) or []
            items = [items] if isinstance(items, (str, os.PathLike)) else list(items)
            data[key] = [_resolve(x, root) for x in items]
        data["images"] = _expand_image_folders(data["images"])
        return cls(**data)


def _resolve(path: Any, root: str | os.PathLike | None) -> Any:
    if isinstance(path, np.ndarray) or root is None:
        return path
    p = Path(os.path.expanduser(str(path)))
    return str(p if p.is_absolute() else Path(root) / p)


@dataclass
class Suite:
    """A named, ordered list of scenarios (ids unique)."""

    name: str
    scenarios: list[Scenario]
    source: str | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for s in self.scenarios:
            if s.id in seen:
                raise ConfigError(f"suite {self.name!r} has two scenarios with id {s.id!r}")
            seen.add(s.id)
        if not self.scenarios:
            raise ConfigError(f"suite {self.name!r} has no scenarios" + (f" (source {self.source})" if self.source else ""))

    def __len__(self) -> int:
        return len(self.scenarios)

    def __iter__(self):
        return iter(self.scenarios)


class SuiteLoader(Protocol):
    """Builds a suite's scenarios; ``source`` is the path after ``KIND:`` (None for a bare name)."""

    def __call__(self, source: str | None) -> Iterable[Scenario | Mapping[str, Any]]: ...


@dataclass(frozen=True)
class SuiteInfo:
    """A registered suite; ``loader`` is a :class:`SuiteLoader` or a ``"module:function"`` string
    naming one (imported when the suite is loaded: :meth:`resolve_loader`)."""

    name: str
    loader: SuiteLoader | str
    description: str = ""
    needs_source: bool = False
    #: ``NAME`` and ``NAME:SOURCE`` both work (the toy suite: ``toy`` or ``toy:joint``)
    source_optional: bool = False

    def resolve_loader(self) -> SuiteLoader:
        try:
            return resolve_target(self.loader)
        except ImportError as exc:
            raise ConfigError(f"the {self.name} suite is not available ({exc})") from exc


SUITES: dict[str, SuiteInfo] = {}


def register_suite(name: str, loader: SuiteLoader | str, description: str = "", needs_source: bool = False,
                   source_optional: bool = False) -> None:
    """Make ``--suite NAME`` (or ``NAME:SOURCE`` when ``needs_source``; either when
    ``source_optional``) load with ``loader``.

    ``loader`` is a callable, or a ``"package.module:function"`` string naming one, imported only
    when the suite is loaded (so that registering a suite imports nothing of its provider).
    The loader returns :class:`Scenario` objects or mappings accepted by :meth:`Scenario.from_dict`.
    Registering a name again replaces the loader.
    """
    if not re.match(r"^[a-z][a-z0-9_-]*$", name):
        raise ConfigError(f"suite name {name!r} must be lower-case letters, digits, '-' or '_'")
    try:
        check_target(loader)
    except ValueError as exc:
        raise ConfigError(f"suite {name!r}: {exc}") from exc
    SUITES[name] = SuiteInfo(name, loader, description, needs_source, source_optional)


def suite_names() -> list[str]:
    return sorted(SUITES)


def load_suite(spec: str, limit: int | None = None, only: Sequence[str] | None = None) -> Suite:
    """Load a suite from ``NAME``, ``KIND:SOURCE`` or a bare path (see the module docstring).

    ``only`` keeps the scenarios with these ids (in suite order); ``limit`` then keeps the first
    ``limit`` scenarios.
    """
    name, source = _split_spec(spec)
    info = SUITES[name]
    if info.needs_source and not source:
        raise ConfigError(f"suite {name!r} needs a path: --suite {name}:PATH")
    if source and not (info.needs_source or info.source_optional):
        raise ConfigError(f"suite {name!r} takes no path (got {source!r})")
    root = os.path.dirname(os.path.abspath(source)) if source and os.path.isfile(source) else source
    scenarios = [s if isinstance(s, Scenario) else Scenario.from_dict(s, root) for s in info.resolve_loader()(source)]
    if only:
        wanted = set(only)
        unknown = wanted - {s.id for s in scenarios}
        if unknown:
            raise ConfigError(f"suite {name!r} has no scenario(s) {', '.join(sorted(unknown))}")
        scenarios = [s for s in scenarios if s.id in wanted]
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"limit must be at least 1, got {limit}")
        scenarios = scenarios[:limit]
    return Suite(name, scenarios, source)


def _split_spec(spec: str) -> tuple[str, str | None]:
    spec = str(spec).strip()
    if not spec:
        raise ConfigError("empty suite name")
    head, sep, tail = spec.partition(":")
    if sep and head in SUITES and len(head) > 1:  # "tgve:/data/tgve" (not a Windows drive letter)
        return head, os.path.expanduser(tail)
    if spec in SUITES:
        return spec, None
    path = os.path.expanduser(spec)
    if os.path.isfile(path):
        if path.lower().endswith((".yaml", ".yml", ".json")):
            return "scenarios", path
        raise ConfigError(f"{spec}: a suite file must be .yaml, .yml or .json")
    if os.path.isdir(path):
        return ("tgve" if find_tgve_csv(path, required=False) else "folder"), path
    raise ConfigError(f"unknown suite {spec!r}: not a registered suite ({', '.join(suite_names())}) nor an existing file or folder")


# ------------------------------------------------------------------------------------------
# TGVE (LOVEU 2023)
# ------------------------------------------------------------------------------------------

TGVE_FOLDERS = ("DAVIS_480p", "youtube_480p", "videvo_480p")
TGVE_EDITS = {
    "style": "style change caption",
    "object": "object change caption",
    "background": "background change caption",
    "multiple": "multiple changes caption",
}


def _norm_header(h: str) -> str:
    return " ".join(h.replace("\ufeff", "").strip().lower().split())


def find_tgve_csv(folder: str | os.PathLike, required: bool = True) -> Path | None:
    """The CSV in ``folder`` (or one level below) whose header has "Video name" and "Our GT caption"."""
    folder = Path(folder)
    candidates = sorted(folder.glob("*.csv")) + sorted(folder.glob("*/*.csv"))
    for path in candidates:
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh), [])
        except (OSError, UnicodeDecodeError):
            continue
        names = {_norm_header(h) for h in header}
        if "video name" in names and "our gt caption" in names:
            return path
    if required:
        raise InputError(f"{folder}: no TGVE CSV (with 'Video name' and 'Our GT caption' columns) found")
    return None


def _find_video(root: Path, folder: str, name: str) -> Path | None:
    """A video file (preferred) or a frame folder named ``name`` somewhere under ``root/folder``."""
    base = root / folder
    if not base.is_dir():
        return None
    stem_matches: list[Path] = []
    for path in sorted(base.rglob(f"{name}*")):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() in READ_VIDEO_EXTENSIONS and path.stem == name:
            return path
        if path.is_dir() and path.name == name and list_frame_files(path):
            stem_matches.append(path)
    return stem_matches[0] if stem_matches else None


def load_tgve(source: str | None) -> list[Scenario]:
    """LOVEU-TGVE-2023: one scenario per CSV row, tuned on the video with "Our GT caption",
    generating the style, object, background and multiple-change captions (those present).

    Videos are looked up by name under ``DAVIS_480p``, ``youtube_480p`` and ``videvo_480p`` (a
    video file ``NAME.mp4`` at any depth, else a frame folder ``NAME/``); the folder becomes the
    scenario's group. Rows without a name or GT caption (section headers) are skipped; a row
    whose video cannot be found raises :class:`InputError`.
    """
    root = Path(source or ".")
    csv_path = find_tgve_csv(root)
    root = csv_path.parent if not any((root / f).is_dir() for f in TGVE_FOLDERS) else root
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    scenarios: list[Scenario] = []
    for row in rows:
        cells = {_norm_header(k): (v or "").strip() for k, v in row.items() if k is not None}
        name, gt = cells.get("video name", ""), cells.get("our gt caption", "")
        if not name or not gt:
            continue
        prompts = [cells[col] for col in TGVE_EDITS.values() if cells.get(col)]
        found = [(folder, _find_video(root, folder, name)) for folder in TGVE_FOLDERS]
        found = [(folder, path) for folder, path in found if path is not None]
        if not found:
            raise InputError(f"{csv_path}: video {name!r} not found under {', '.join(TGVE_FOLDERS)} in {root}")
        folder, path = found[0]
        edits = {key: cells[col] for key, col in TGVE_EDITS.items() if cells.get(col)}
        scenarios.append(Scenario(
            id=scenario_id(name), prompts=prompts or [gt], videos=[str(path)], captions=[gt], group=folder,
            metadata={"video_name": name, "edits": edits},
        ))
    return scenarios


# ------------------------------------------------------------------------------------------
# Scenario files (subjects x motions x prompts, or explicit scenarios)
# ------------------------------------------------------------------------------------------


def _read_mapping(path: str) -> dict[str, Any]:
    import yaml

    if not os.path.isfile(path):
        raise InputError(f"{path}: scenario file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh) if path.lower().endswith(".json") else yaml.safe_load(fh)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot parse ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: a scenario file must be a mapping (with 'scenarios', or 'motions' and 'prompts')")
    return data


def _listed(entry: Mapping[str, Any], single: str, plural: str) -> list[Any]:
    value = entry.get(plural, entry.get(single, []))
    return [value] if isinstance(value, str) else list(value or [])


def load_scenario_file(source: str | None) -> list[Scenario]:
    """Scenarios from a YAML/JSON file (paths relative to the file).

    Either an explicit list::

        scenarios:
          - {id: dog-dance, video: dance.mp4, caption: a man dances, images: [dog.jpg],
             image_caption: a photo of a dog, prompts: [a dog dances in the snow]}

    or the subjects x motions x prompts grid of the JointTuner / DualReal evaluations, one
    scenario per (subject, motion) pair (motions alone when there are no subjects), the prompt
    templates filled with the subject's and the motion's ``name``::

        subjects:
          dog: {images: [dog/0.jpg, dog/1.jpg], caption: a photo of a dog, name: a dog}
        motions:
          dance: {video: motions/dance.mp4, caption: a man is dancing, name: dancing}
        prompts: ["{subject} is {motion} in the snow", "{subject} is {motion} on the moon"]

    Both forms may appear together, as may ``group``/``scorers``/``size`` defaults at the top.
    """
    if not source:
        raise ConfigError("the scenario-file suite needs a path: --suite scenarios:FILE")
    data = _read_mapping(source)
    known = {"name", "scenarios", "subjects", "motions", "prompts", "group", "scorers", "size", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}")
    defaults = {k: data[k] for k in ("group", "scorers", "size") if k in data}
    root = os.path.dirname(os.path.abspath(source))
    out: list[Scenario] = []
    for entry in data.get("scenarios") or []:
        if not isinstance(entry, Mapping):
            raise InputError(f"{source}: each scenario must be a mapping, got {entry!r}")
        out.append(Scenario.from_dict({**defaults, **entry}, root))
    motions, subjects, templates = data.get("motions"), data.get("subjects"), data.get("prompts")
    if motions or subjects:
        if not templates:
            raise InputError(f"{source}: 'motions'/'subjects' need 'prompts' templates")
        templates = [templates] if isinstance(templates, str) else list(templates)
        out.extend(_grid(source, root, dict(motions or {}), dict(subjects or {}), templates, defaults))
    elif templates:
        raise InputError(f"{source}: 'prompts' templates need 'motions' (and optionally 'subjects')")
    return out


def _grid(source: str, root: str, motions: dict, subjects: dict, templates: list[str], defaults: dict) -> list[Scenario]:
    if not motions:
        raise InputError(f"{source}: 'subjects' need 'motions' to pair with")
    pairs = [(s, m) for s in (subjects or {None: None}) for m in motions]
    out = []
    for skey, mkey in pairs:
        motion = motions[mkey] or {}
        subject = (subjects.get(skey) or {}) if skey is not None else {}
        names = {"motion": motion.get("name", str(mkey)), "subject": subject.get("name", str(skey or ""))}
        try:
            prompts = [t.format(**names) for t in templates]
        except (KeyError, IndexError) as exc:
            raise InputError(f"{source}: prompt templates may use only {{subject}} and {{motion}} ({exc})") from exc
        sid = f"{skey}-{mkey}" if skey is not None else str(mkey)
        out.append(Scenario.from_dict({
            **defaults,
            "id": scenario_id(sid),
            "prompts": prompts,
            "videos": _listed(motion, "video", "videos"),
            "captions": _listed(motion, "caption", "captions"),
            "images": _listed(subject, "image", "images"),
            "image_captions": _listed(subject, "caption", "captions"),
            "group": defaults.get("group", str(mkey)),
            "metadata": {"subject": skey, "motion": mkey},
        }, root))
    return out


# ------------------------------------------------------------------------------------------
# A folder of videos with captions (MotionBench shape)
# ------------------------------------------------------------------------------------------


def _caption_entry(value: Any, where: str) -> tuple[str, list[str]]:
    if isinstance(value, str):
        return value.strip(), []
    if isinstance(value, Mapping) and isinstance(value.get("caption"), str):
        prompts = value.get("prompts", [])
        return value["caption"].strip(), [prompts] if isinstance(prompts, str) else list(prompts)
    raise InputError(f"{where}: a caption entry must be a string or {{caption: ..., prompts: [...]}}, got {value!r}")


def load_video_folder(source: str | None) -> list[Scenario]:
    """Every video under a folder (recursively), captioned by ``captions.json`` or a ``.txt`` beside it.

    ``captions.json`` (in the folder) maps a video's file name, stem or relative path to its
    caption, or to ``{caption: ..., prompts: [...]}``. A ``VIDEO.txt`` next to a video holds the
    caption on its first non-empty line and target prompts on the following ones. Without
    target prompts the caption itself is generated (reconstruction). The sub-folder a video is
    in becomes its group (MotionBench's camera / single object / ... categories).
    """
    from motiontune.utils.files import read_text

    if not source or not os.path.isdir(source):
        raise InputError(f"{source}: not a folder of videos")
    root = Path(source)
    captions: dict[str, Any] = {}
    cap_file = root / "captions.json"
    if cap_file.is_file():
        try:
            captions = json.loads(read_text(str(cap_file)))
        except json.JSONDecodeError as exc:
            raise InputError(f"{cap_file}: invalid JSON ({exc})") from exc
        if not isinstance(captions, dict):
            raise InputError(f"{cap_file}: must map video names to captions")
    videos = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in READ_VIDEO_EXTENSIONS
         and not any(part.startswith(".") for part in p.relative_to(root).parts)),
        key=lambda p: natural_sort_key(str(p.relative_to(root))),
    )
    out: list[Scenario] = []
    for path in videos:
        rel = path.relative_to(root)
        caption, prompts = "", []
        for key in (rel.as_posix(), path.name, path.stem):
            if key in captions:
                caption, prompts = _caption_entry(captions[key], str(cap_file))
                break
        else:
            txt = path.with_suffix(".txt")
            if txt.is_file():
                lines = [ln.strip() for ln in read_text(str(txt)).splitlines() if ln.strip()]
                if lines:
                    caption, prompts = lines[0], lines[1:]
        if not caption:
            raise InputError(f"{path}: no caption (add it to captions.json or to {path.with_suffix('.txt').name})")
        group = rel.parts[0] if len(rel.parts) > 1 else ""
        out.append(Scenario(
            id=scenario_id(rel.with_suffix("").as_posix().replace("/", "-")), prompts=prompts or [caption],
            videos=[str(path)], captions=[caption], group=group, metadata={"file": rel.as_posix()},
        ))
    if not out:
        raise InputError(f"{source}: no videos ({', '.join(READ_VIDEO_EXTENSIONS)}) found")
    return out


def _expand_image_folders(items: list[Any]) -> list[Any]:
    """Folders among ``items`` expand to the images inside them (natural order)."""
    out: list[Any] = []
    for item in items:
        if not isinstance(item, np.ndarray) and os.path.isdir(str(item)):
            out.extend(str(f) for f in sorted(Path(item).iterdir(), key=lambda f: natural_sort_key(f.name))
                       if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."))
        else:
            out.append(item)
    return out


def _builtin_suites() -> None:
    register_suite("tgve", load_tgve, "LOVEU-TGVE-2023 folder: the CSV and DAVIS_480p / youtube_480p / videvo_480p", needs_source=True)
    register_suite("scenarios", load_scenario_file, "a YAML/JSON scenario file (explicit, or subjects x motions x prompts)", needs_source=True)
    register_suite("folder", load_video_folder, "a folder of videos with captions.json or VIDEO.txt captions (MotionBench shape)", needs_source=True)
    # provided by the toy world (motiontune/toyworld/plugin.py), imported only when loaded
    register_suite("toy", "motiontune.toyworld.plugin:load_suite",
                   "the toy-world suite, scored with the toy oracle metrics (toy:KINDS picks motion, appearance, joint, fewshot or all)",
                   source_optional=True)


_builtin_suites()

__all__ = [
    "SUITES",
    "Scenario",
    "Suite",
    "SuiteInfo",
    "SuiteLoader",
    "TGVE_FOLDERS",
    "find_tgve_csv",
    "load_scenario_file",
    "load_suite",
    "load_tgve",
    "load_video_folder",
    "register_suite",
    "scenario_id",
    "suite_names",
]
