# SPDX-License-Identifier: BSD-2-Clause
"""Where pyelog's C sources (``bpf/``) and schemas (``schemas/``) are.

In the repository they sit beside the package, where people edit them; a
wheel carries them as package data (``pyproject.toml`` maps ``bpf/`` to
``pyelog.bpf`` and ``schemas/`` to ``pyelog.schemas``), found here with
:mod:`importlib.resources`. A checkout that is not installed, or installed
editable (which maps only the ``pyelog`` package itself), falls back to the
directories beside the package.
"""
from __future__ import annotations

import importlib.resources
from importlib.abc import Traversable
from pathlib import Path

__all__ = ["bpf_source", "schema_dir"]


def _data(name: str) -> Traversable:
    try:
        return importlib.resources.files(f"pyelog.{name}")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / name


def bpf_source(filename: str) -> str:
    """The text of one file of ``bpf/`` (e.g. ``eventlog.h``)."""
    return _data("bpf").joinpath(filename).read_text()


def schema_dir() -> Path:
    """The directory of the shipped schemas.

    A real directory: schema files are read, listed and named in messages
    by path. (A wheel installs package data as files, so this holds for
    every install that :mod:`importlib.resources` can see into.)
    """
    d = _data("schemas")
    if not isinstance(d, Path):
        # A package without __init__.py (data only) comes back as a
        # MultiplexedPath; its entries are real paths in that directory.
        d = next(iter(d.iterdir())).parent
    return d
