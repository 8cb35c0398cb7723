"""What the ``motiontune`` command and the modules adding subcommands to it share.

:mod:`motiontune.cli` builds the parser and runs the commands; subcommand modules
(``motiontune.toyworld.commands``, ``motiontune.probe.commands``,
``motiontune.evaluation.commands``) register themselves here with :func:`register_command` and
reuse the argument groups and the comma-list parsing. Both sides import this module; neither
imports the other (the CLI loads the subcommand modules by name).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` declares its flags, ``run(settings)`` returns the
    exit status (settings: the flags merged over the ``--config`` file)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[dict[str, Any]], int]
    example: str | None = None


#: further subcommands registered by other modules, in registration order
EXTRA_COMMANDS: dict[str, Command] = {}


def register_command(name: str, helptext: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                     run: Callable[[dict[str, Any]], int], example: str | None = None) -> None:
    """Add the subcommand ``motiontune NAME`` (``example``: the epilog of its ``--help``)."""
    EXTRA_COMMANDS[name] = Command(name, helptext, add_arguments, run, example)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--backbone, --family, --device, --dtype and --config."""
    p.add_argument("--backbone", help="model: an alias (see `motiontune list`), a hub id, a local diffusers folder, or 'toy'")
    p.add_argument("--family", help="backbone family when --backbone is a bare hub id (wan, cogvideox, hunyuan_video, latte, unet3d)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", help="fp32 (default), bf16 or fp16")
    p.add_argument("--config", help="YAML file with settings; flags override it")


def add_size_arguments(p: argparse.ArgumentParser) -> None:
    """--num-frames, --height and --width."""
    p.add_argument("--num-frames", type=int, help="frames (default: the backbone's / the adapter's)")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)


def csv_list(v: Any) -> list[str]:
    """A comma-separated string (or a list, e.g. from a YAML config) as a list of non-empty items."""
    if v is None:
        return []
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    return list(v)


__all__ = ["Command", "EXTRA_COMMANDS", "add_model_arguments", "add_size_arguments", "csv_list", "register_command"]
