# SPDX-License-Identifier: BSD-2-Clause
"""The package's layers import only downward (pyelog/__init__.py lists them).

Reads every module's source (ast, no import) and checks that each pyelog
import -- at module level or inside a function, TYPE_CHECKING blocks
included -- names a module of the same layer or one below.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pyelog"
# Lowest first; a module may import from its own layer and those before it.
LAYERS = ["pyelog", "pyelog.resources", "pyelog.records", "pyelog.schema", "pyelog.kernel",
          "pyelog.providers", "pyelog.tools", "pyelog.cli", "pyelog.__main__"]


def layer(module: str) -> int:
    """The index in LAYERS of the longest prefix naming ``module``'s layer."""
    best = 0
    for i, name in enumerate(LAYERS):
        if module == name or module.startswith(name + "."):
            if len(name) >= len(LAYERS[best]):
                best = i
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every pyelog module the file imports."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("pyelog")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.startswith("pyelog"):
                # "from pyelog.tools import capture" imports pyelog.tools.capture
                names = [f"{mod}.{a.name}" for a in node.names
                         if (PACKAGE.parent / f"{mod}.{a.name}".replace(".", "/")).exists()
                         or (PACKAGE.parent / (f"{mod}.{a.name}".replace(".", "/") + ".py")).exists()]
                found += [(node.lineno, n) for n in names] or [(node.lineno, mod)]
    return found


def test_layers_import_only_downward():
    violations = []
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20
    for path in modules:
        here = module_name(path)
        for line, mod in imports(path):
            if layer(mod) > layer(here):
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} "
                                  f"({LAYERS[layer(here)]}) imports {mod} ({LAYERS[layer(mod)]})")
    assert not violations, "imports that go up a layer:\n" + "\n".join(violations)


def test_every_module_belongs_to_a_layer():
    for path in PACKAGE.rglob("*.py"):
        here = module_name(path)
        assert here in ("pyelog", "pyelog.resources") or layer(here) > 1, here


def test_every_source_file_says_its_license():
    """An SPDX line (BSD-2-Clause, as LICENSE and pyproject say) near the top
    of every source file git tracks: Python, C, schemas, scripts."""
    import subprocess
    root = PACKAGE.parent
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=root).stdout.split()
    if not files:
        import pytest
        pytest.skip("not a git checkout")
    missing = []
    for f in files:
        p = root / f
        if p.suffix in (".py", ".c", ".h", ".src", ".sh") or p.name in ("Makefile", "Vagrantfile", "run"):
            head = p.read_text().splitlines()[:3]
            if not any("SPDX-License-Identifier: BSD-2-Clause" in line for line in head):
                missing.append(f)
    assert not missing, missing
