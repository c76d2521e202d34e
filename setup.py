# SPDX-License-Identifier: BSD-2-Clause
"""pyelog's compiled parts: the ring reader's hot path (pyelog/kernel/_ring.c)
and the text printer's (pyelog/records/_records.c).

Everything else is declared in pyproject.toml; setuptools reads both.
"""
from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Werror"]
setup(ext_modules=[Extension("pyelog.kernel._ring", ["pyelog/kernel/_ring.c"], extra_compile_args=_FLAGS),
                   Extension("pyelog.records._records", ["pyelog/records/_records.c"], extra_compile_args=_FLAGS)])
