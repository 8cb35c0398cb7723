"""Exceptions raised for user mistakes.

The CLI turns any :class:`MotiontuneError` into a single line on stderr and a non-zero exit
code; everything else is a bug and keeps its traceback.
"""


class MotiontuneError(Exception):
    """Base class of errors caused by user input (files, settings, names)."""


class InputError(MotiontuneError):
    """A reference video, image or other input file cannot be used."""


class ConfigError(MotiontuneError):
    """A setting is unknown, out of range or inconsistent with another one."""


class ModelLoadError(MotiontuneError):
    """A backbone or adapter cannot be loaded from the given id or folder."""


class TrainingDiverged(MotiontuneError):
    """Training produced a NaN or infinite loss or weights (nothing of it is saved)."""
