"""The ``motiontune`` command.

Settings come from flags or a YAML file (``--config run.yaml``, keys named like the long flags
with underscores); flags given on the command line override the file. User mistakes print one
line on stderr and exit with status 2; the traceback is kept for bugs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from motiontune.cli_shared import EXTRA_COMMANDS, add_model_arguments, add_size_arguments, csv_list
from motiontune.cli_shared import register_command  # noqa: F401  (kept importable from here)
from motiontune.errors import ConfigError, MotiontuneError

EXAMPLES = {
    "train": """example:
  motiontune train --backbone wan2.1-1.3b --video ref.mp4 \\
      --caption "a man dances in a park" --recipe lora --steps 400 \\
      --num-frames 49 --height 480 --width 832 --output runs/dance
  motiontune train --backbone toy --video orbit.mp4 \\
      --caption "a red circle orbits on a black background" --steps 150 --output runs/orbit
  motiontune train --config run.yaml --lr 5e-5     # flags override the file""",
    "generate": """example:
  motiontune generate --adapter runs/dance --prompt "a bear dances in the snow" \\
      --prompt "a robot dances on the moon" --seed 0 --format mp4,gif --output outputs/dance
  motiontune generate --backbone toy --prompt "a red circle moves left on a black background" --output outputs/base""",
    "list": """example:
  motiontune list            # backbones, aliases, recipes, metrics and the toy model's words
  motiontune list recipes
  motiontune list presets    # the authors' settings per recipe and backbone (train/generate --preset NAME)
  motiontune list vocabulary # the words the toy model knows (others are read as unknown)""",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2
        raise ConfigError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="motiontune", description="Customized video generation: teach a text-to-video model a motion.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--threads", metavar="N|auto|keep", default=argparse.SUPPRESS,
                        help="CPU threads for torch (any position on the line; default auto: the cores other processes "
                             "leave free, rechecked during the run; env MOTIONTUNE_THREADS)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="customize a backbone on reference videos/images", epilog=EXAMPLES["train"],
                       formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS)
    add_model_arguments(t)
    t.add_argument("--recipe", help="method (see `motiontune list recipes`; default lora)")
    t.add_argument("--preset", help="start from a shipped preset (see `motiontune list presets`); flags override it")
    t.add_argument("--video", action="append", help="reference video (mp4/mov/webm/gif or a folder of frames); repeatable")
    t.add_argument("--caption", action="append", help="caption of the reference video(s); one, or one per --video")
    t.add_argument("--image", action="append", help="reference image (png/jpg); repeatable")
    t.add_argument("--image-caption", action="append", help="caption of the reference image(s)")
    t.add_argument("--output", help="folder for the adapter, checkpoints and logs")
    add_size_arguments(t)
    t.add_argument("--frame-sampling", choices=["uniform", "stride", "first"], help="how frames are taken from a longer clip")
    t.add_argument("--frame-stride", type=int)
    t.add_argument("--start", type=int, metavar="FRAME", help="use each clip from this frame on (0-based; default 0)")
    t.add_argument("--end", type=int, metavar="FRAME", help="use each clip up to this frame, not included (default: its end)")
    t.add_argument("--resize-mode", choices=["crop", "stretch", "pad"],
                   help="fit clips and images to the training size: scale and center-crop (default), stretch, or scale and pad")
    t.add_argument("--steps", type=int, help="optimizer steps (default: the recipe's own, e.g. 150 for motiondirector, else 300)")
    t.add_argument("--lr", type=float, help="learning rate (default: the recipe's setting, else the model folder's default_learning_rate, else the recipe's default)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--gradient-accumulation-steps", type=int)
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"])
    t.add_argument("--seed", type=int)
    t.add_argument("--timestep-distribution", choices=["uniform", "logit_normal"])
    t.add_argument("--train-timesteps", help="train only on t in LOW:HIGH (native units, e.g. 700:1000; append 'ddpm' to give DDPM timesteps)")
    t.add_argument("--infer-timesteps", help="apply the adapter only for t in LOW:HIGH when generating (default: as trained)")
    t.add_argument("--rank", type=int, help="LoRA rank")
    t.add_argument("--alpha", type=float, help="LoRA alpha")
    t.add_argument("--projections", help="comma list of q,k,v,o")
    t.add_argument("--attention", help="comma list of attention kinds: spatial,temporal,joint,cross")
    t.add_argument("--subject", action="append", help="synmotion: the subject phrase of the captions; one, or one per --video")
    t.add_argument("--motion", help="synmotion: the motion phrase of the captions (or mark captions like \"[a person] {claps}\")")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other recipe setting; repeatable")
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist (a saved adapter is replaced only when the new run finishes)")
    t.add_argument("--cache-dir", help="on-disk cache of latents and prompt embeddings")
    t.add_argument("--tensorboard", action="store_true")
    t.add_argument("--validation-prompt", action="append")
    t.add_argument("--validation-every", type=int)
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    g = sub.add_parser("generate", help="generate videos with a base model or a trained adapter", epilog=EXAMPLES["generate"],
                       formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS)
    add_model_arguments(g)
    g.add_argument("--adapter", help="folder written by `motiontune train`")
    g.add_argument("--preset", help="sampling settings of a shipped preset (see `motiontune list presets`); flags override them")
    g.add_argument("--prompt", action="append", help="prompt; repeatable")
    g.add_argument("--negative-prompt")
    g.add_argument("--output", help="output folder (default outputs/)")
    g.add_argument("--format", help="comma list of mp4, gif, png (default mp4)")
    add_size_arguments(g)
    g.add_argument("--steps", type=int, help="sampling steps")
    g.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    g.add_argument("--seed", type=int)
    g.add_argument("--adapter-scale", type=float)
    g.add_argument("--noise-prior", type=float, help="motiondirector: start from the reference's inverted noise mixed with fresh noise, this share of it (0-1; the authors use 0.5)")
    g.add_argument("--subject", action="append", help="synmotion: the subject phrase of the prompts; one, or one per --prompt")
    g.add_argument("--motion", help="synmotion: the motion phrase of the prompts (default: the trained one)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--quiet", action="store_true")

    ls = sub.add_parser("list", help="list backbones, recipes and metrics", epilog=EXAMPLES["list"],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("what", nargs="?", choices=["all", "backbones", "recipes", "metrics", "presets", "vocabulary"], default="all")

    for name, command in EXTRA_COMMANDS.items():
        p = sub.add_parser(name, help=command.help, epilog=command.example or EXAMPLES.get(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS)
        command.add_arguments(p)
    return parser


def load_yaml_config(path: str) -> dict[str, Any]:
    import yaml

    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file not found")
    from motiontune.utils.files import read_text

    try:
        data = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def merged_settings(args: argparse.Namespace) -> dict[str, Any]:
    flags = {k: v for k, v in vars(args).items() if k != "command"}
    settings: dict[str, Any] = {}
    if flags.get("config"):
        settings.update(load_yaml_config(flags["config"]))
    settings.update(flags)
    settings.pop("config", None)
    return settings


def _parse_set(items: list[str] | None) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = yaml.safe_load(v)
    return out


TRAIN_KEYS = {
    "steps": "steps", "lr": "learning_rate", "batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps", "gradient_checkpointing": "gradient_checkpointing",
    "compile": "compile",
    "mixed_precision": "mixed_precision", "seed": "seed", "timestep_distribution": "timestep_distribution",
    "checkpoint_every": "checkpoint_every", "cache_dir": "cache_dir", "tensorboard": "tensorboard",
    "validation_every": "validation_every",
}
RECIPE_KEYS = ("train_timesteps", "infer_timesteps", "rank", "alpha", "projections", "attention", "subject", "motion")


def run_train(s: dict[str, Any]) -> int:
    from motiontune import api

    backbone = s.pop("backbone", None)
    videos, captions = s.pop("video", None), s.pop("caption", None)
    output = s.pop("output", None)
    if not backbone:
        raise ConfigError("train needs --backbone (an alias, hub id, folder or 'toy')")
    if not videos and not s.get("image"):
        raise ConfigError("train needs at least one --video (or --image)")
    if videos and not captions:
        raise ConfigError("train needs --caption for the reference video(s)")
    if not output:
        raise ConfigError("train needs --output (the folder for the adapter)")
    recipe_settings = {k: s.pop(k) for k in RECIPE_KEYS if k in s}
    if "subject" in recipe_settings:
        recipe_settings["subject"] = _one_or_list(recipe_settings["subject"])
    recipe_settings.update(_parse_set(s.pop("set", None)))
    recipe_settings.update(s.pop("recipe_settings", {}) or {})
    train_settings = {TRAIN_KEYS[k]: s.pop(k) for k in list(s) if k in TRAIN_KEYS}
    if s.pop("no_resume", False):
        train_settings["resume"] = False
    if s.pop("quiet", False):
        train_settings["progress"] = False
    vp = s.pop("validation_prompt", None)
    if vp:
        train_settings["validation_prompts"] = csv_list(vp) if isinstance(vp, str) else list(vp)
    kwargs = dict(
        recipe=s.pop("recipe", "lora"),
        family=s.pop("family", None),
        images=s.pop("image", None),
        image_captions=s.pop("image_caption", None),
        num_frames=s.pop("num_frames", None),
        height=s.pop("height", None),
        width=s.pop("width", None),
        frame_sampling=s.pop("frame_sampling", "uniform"),
        frame_stride=s.pop("frame_stride", None),
        frame_start=s.pop("start", 0),
        frame_end=s.pop("end", None),
        resize_mode=s.pop("resize_mode", "crop"),
        device=s.pop("device", None),
        dtype=s.pop("dtype", "fp32"),
    )
    if s:  # before any work: a misspelt key in a --config file
        raise ConfigError(f"unknown setting(s) for train: {', '.join(sorted(s))}")
    result = api.train(backbone, videos=videos or [], captions=captions or [], output_dir=output,
                       recipe_settings=recipe_settings, **kwargs, **train_settings)
    print(f"trained {result.steps} steps in {result.seconds:.1f}s (final loss {result.final_loss:.4f}); adapter written to {result.output_dir}")
    return 0


def run_generate(s: dict[str, Any]) -> int:
    from motiontune import api

    prompts = s.pop("prompt", None)
    if not prompts:
        raise ConfigError("generate needs at least one --prompt")
    if not s.get("adapter") and not s.get("backbone"):
        raise ConfigError("generate needs --adapter (a trained folder) or --backbone")
    out = s.pop("output", "outputs")
    formats = csv_list(s.pop("format", "mp4"))
    quiet = s.pop("quiet", False)
    kwargs = dict(
        adapter=s.pop("adapter", None), backbone=s.pop("backbone", None), family=s.pop("family", None),
        output_dir=out, formats=formats, num_frames=s.pop("num_frames", None), height=s.pop("height", None),
        width=s.pop("width", None), steps=s.pop("steps", None), guidance=s.pop("guidance", None),
        negative_prompt=s.pop("negative_prompt", ""), seed=s.pop("seed", 0), adapter_scale=s.pop("adapter_scale", None),
        batch_size=s.pop("batch_size", 4), device=s.pop("device", None), dtype=s.pop("dtype", "fp32"), progress=not quiet,
        noise_prior=s.pop("noise_prior", None), subject=_one_or_list(s.pop("subject", None)), motion=s.pop("motion", None),
    )
    if s:  # before any work: a misspelt key in a --config file
        raise ConfigError(f"unknown setting(s) for generate: {', '.join(sorted(s))}")
    result = api.generate(prompts if isinstance(prompts, list) else [prompts], **kwargs)
    for p in result.paths:
        print(p)
    return 0


def _one_or_list(values: Any) -> Any:
    return values[0] if isinstance(values, list) and len(values) == 1 else values


def run_list(what: str) -> int:
    from motiontune.backbones import all_aliases, backbone_families, get_spec_class, model_aliases
    from motiontune.recipes import get_recipe_class, recipe_names

    if what in ("all", "backbones"):
        print("backbones (family: description)")
        for fam in backbone_families():
            print(f"  {fam:14s} {get_spec_class(fam).description}")
        for name, local in model_aliases().items():
            print(f"  {name:14s} {local.description}, loaded with --backbone {name}")
        print("aliases")
        for alias, (fam, hub) in sorted(all_aliases().items()):
            print(f"  {alias:20s} {fam:14s} {hub}")
    if what in ("all", "recipes"):
        print("recipes")
        for name in recipe_names():
            print(f"  {name:14s} {get_recipe_class(name).summary}")
    if what in ("all", "metrics"):
        import motiontune.evaluation.learned  # noqa: F401  (registers the learned metrics)
        from motiontune.evaluation.registry import METRICS

        print("metrics")
        for name, info in sorted(METRICS.items()):
            needs = f" (needs {info.weights})" if info.needs_weights else ""
            print(f"  {name:22s} {info.definition}{needs}")
    if what in ("all", "presets"):
        from motiontune.interop.presets import list_presets

        list_presets()
    if what in ("all", "vocabulary"):
        _list_vocabularies()
    return 0


def _list_vocabularies() -> None:
    """The words of each named local model with a word-level tokenizer (the toy model); a prompt's
    other words are read as unknown."""
    import json
    import textwrap

    from motiontune.backbones import model_aliases, resolve_model_alias

    for name in model_aliases():
        try:
            path = os.path.join(resolve_model_alias(name)[0], "tokenizer", "tokenizer.json")
        except MotiontuneError:  # a model that is not available here
            continue
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if data.get("model", {}).get("type") != "WordLevel":
            continue
        special = {t.get("content") for t in data.get("added_tokens", [])}
        words = sorted(w for w in data["model"]["vocab"] if w not in special)
        print(f"vocabulary of --backbone {name} ({len(words)} words; others are read as unknown)")
        print(textwrap.fill(" ".join(words), width=100, initial_indent="  ", subsequent_indent="  "))


class _StderrLog(logging.Handler):
    """The ``motiontune`` logger's lines (info and up) on the current stderr, prefixed like errors."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"motiontune: {self.format(record)}", file=sys.stderr)


def _setup_logging() -> None:
    logger = logging.getLogger("motiontune")
    if not any(isinstance(h, _StderrLog) for h in logger.handlers):
        logger.addHandler(_StderrLog())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    _setup_logging()
    _load_extra_commands()
    parser = build_parser()
    try:
        argv, threads = _take_threads_option(sys.argv[1:] if argv is None else list(argv))
        args = parser.parse_args(argv)
        if args.command not in (None, "list") and not getattr(args, "version", False):
            from motiontune.utils.threads import configure

            configure(threads)
        if getattr(args, "version", False):
            from motiontune import __version__

            print(__version__)
            return 0
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "list":
            return run_list(args.what)
        settings = merged_settings(args)
        settings.pop("version", None)
        _check_text_options(settings)
        if args.command in ("train", "generate") and settings.get("preset"):
            from motiontune.interop import presets

            apply = presets.apply_train_preset if args.command == "train" else presets.apply_generate_preset
            settings = apply(settings)
        if args.command == "train":
            return run_train(settings)
        if args.command == "generate":
            return run_generate(settings)
        return EXTRA_COMMANDS[args.command].run(settings)
    except MotiontuneError as exc:
        print(f"motiontune: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("motiontune: interrupted", file=sys.stderr)
        return 130


def _take_threads_option(argv: list[str]) -> tuple[list[str], str | None]:
    """``--threads N`` / ``--threads=N`` taken out of ``argv`` wherever it stands (the last wins)."""
    rest: list[str] = []
    value = None
    it = iter(argv)
    for arg in it:
        if arg == "--threads":
            value = next(it, None)
            if value is None:
                raise ConfigError("--threads needs a value: a number, auto or keep")
        elif arg.startswith("--threads="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, value


TEXT_OPTIONS = ("prompt", "negative_prompt", "caption", "image_caption", "validation_prompt", "subject", "motion")


def _check_text_options(settings: dict[str, Any]) -> None:
    """Refuse a caption or prompt holding bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    for key in TEXT_OPTIONS:
        values = settings.get(key)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise ConfigError(f"--{key.replace('_', '-')}: not valid UTF-8 text (give the text in UTF-8)") from None


def _load_extra_commands() -> None:
    """Import the modules that register further subcommands (demo, probe, eval, bench)."""
    import importlib

    for module in ("motiontune.toyworld.commands", "motiontune.probe.commands", "motiontune.evaluation.commands",
                   "motiontune.analysis.commands", "motiontune.interop.commands"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not (exc.name and module.startswith(exc.name)):
                raise


if __name__ == "__main__":
    # the command registry lives in motiontune.cli_shared, so `python -m motiontune.cli` sees the
    # commands the subcommand modules register
    sys.exit(main())
