# SPDX-License-Identifier: BSD-2-Clause
"""The one compiled part of pyelog: the ring reader's hot path (pyelog/kernel/_ring.c).

Everything else is declared in pyproject.toml; setuptools reads both.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("pyelog.kernel._ring", ["pyelog/kernel/_ring.c"],
                             extra_compile_args=["-O2", "-Wall", "-Werror"])])
