"""User-facing error types.

Every error a user can cause by a bad file, option or input derives from :class:`BenchmarkError`;
the CLIs print its message alone (no traceback) and exit with status 2.
"""
from __future__ import annotations


class BenchmarkError(Exception):
    """A problem with the user's input: config, CLI option, data files."""


class ConfigError(BenchmarkError, ValueError):
    """A YAML key, CLI option or method/dataset option is invalid. The message names it."""


class DatasetLayoutError(BenchmarkError, FileNotFoundError):
    """A dataset root, file or column is missing or malformed. The message names the path."""
