"""The package's architecture, checked by parsing its source (nothing is imported).

* Subpackages form layers; a module may import its own subpackage and the layers below it, never a
  layer above nor a peer of the same layer.  Lazy imports inside functions count too.
* No import cycle between modules, lazy imports included.
* No private name (``_x``) or private module is imported across subpackages, by the package, the
  book's notebooks, the benchmarks or the scripts.
* No public function or method takes more than 12 parameters; the top level exports at most 20 names.
* No function of the package is longer than 60 lines.
* Solvers are typed: no parameter of a function in ``solvers/`` is ``Any`` or unannotated (the map is a
  ``contract.MapFn`` or ``ChainMap``).
* Eq. (5) is written once: only ``operators/base.py`` composes ``A_pinv`` with ``A``.
* No solver name is compared as a string outside the registry: what a sampler needs to know about a
  solver is a fact of ``solvers.registry.SolverSpec``.
* CI runs ``ruff check`` and ``ruff format --check``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "deqir_edu"

# subpackage -> layer; imports go to a strictly lower layer (or inside the subpackage)
LAYERS: dict[str, int] = {
    "core": 0,
    "datasets": 1,
    "diffusion": 2,
    "operators": 2,
    "models": 3,
    "solvers": 4,
    "sampling": 5,
    "inversion": 6,
    "metrics": 7,
    "experiments": 8,
    "training": 8,
    "exercises": 8,
    "apps": 9,
}
MAX_PARAMS = 12
MAX_EXPORTS = 20
MAX_LINES = 60
# the one place that may compose A^+ with A: Eq. (5) and the projector (and the check of the Penrose identities)
EQ5_HOME = ("operators/base.py", ("project", "penrose_residuals", "sym", "<lambda>"))


def modules_of(pkg: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package folder ``pkg``."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = [pkg.name, *path.relative_to(pkg).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(modules: dict[str, Path], name: str) -> list[tuple[str, list[str], int]]:
    """``(absolute module, imported names, line)`` of every import in module ``name`` (lazy ones too)."""
    tree = ast.parse(modules[name].read_text())
    package = name if modules[name].name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
    return [(t, names, line) for t, names, line in found if t == "deqir_edu" or t.startswith("deqir_edu.")]


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else None  # None: the top level (the facade)


def upward_imports(modules: dict[str, Path]) -> list[str]:
    """Imports that go to a higher layer, to a peer of the same layer, or to the top level."""
    bad = []
    for name in modules:
        src = _subpackage(name)
        if src is None:  # the facade may import every layer
            continue
        for target, _, line in _imports(modules, name):
            dst = _subpackage(target)
            if dst is None:
                bad.append(f"{name}:{line} imports the top level {target}")
            elif dst != src and LAYERS.get(dst, 99) >= LAYERS.get(src, -1):
                bad.append(
                    f"{name}:{line} ({src}, layer {LAYERS.get(src)}) imports {target} ({dst}, layer {LAYERS.get(dst)})"
                )
    return bad


def import_cycles(modules: dict[str, Path]) -> list[str]:
    """Cycles of the module graph (``from pkg import sub`` is an edge to ``pkg`` and to ``pkg.sub``)."""
    graph = {}
    for name in modules:
        edges = set()
        for target, names, _ in _imports(modules, name):
            edges |= {m for m in [target] + [f"{target}.{n}" for n in names] if m in modules}
        graph[name] = edges - {name}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(modules):
        if name not in state:
            visit(name, [name])
    return cycles


def private_imports(source: str, where: str, own: str | None = None) -> list[str]:
    """Private names or modules of deqir_edu imported by ``source`` from outside subpackage ``own``."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1:
                continue  # a sibling in the same subpackage
            if node.level:
                target_sub = mod.split(".")[0] if mod else None
            elif mod == "deqir_edu" or mod.startswith("deqir_edu."):
                target_sub = _subpackage(mod)
            else:
                continue
            private_mod = any(p.startswith("_") for p in mod.split("."))
            names = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
            if (private_mod or names) and (own is None or target_sub != own):
                bad.append(f"{where}:{node.lineno}: from {'.' * node.level}{mod} import {', '.join(names) or '...'}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("deqir_edu") and any(p.startswith("_") for p in a.name.split(".")):
                    bad.append(f"{where}:{node.lineno}: import {a.name}")
    return bad


def long_signatures(modules: dict[str, Path]) -> list[str]:
    """Public functions and methods (``self`` not counted) with more than ``MAX_PARAMS`` parameters."""

    def n_params(fn: ast.FunctionDef) -> int:
        a = fn.args
        return len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)

    long = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        exported = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                try:
                    exported = set(ast.literal_eval(node.value))
                except ValueError:
                    exported = None
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                if (exported is None or node.name in exported) and n_params(node) > MAX_PARAMS:
                    long.append(f"{name}.{node.name}: {n_params(node)}")
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and (not item.name.startswith("_") or item.name == "__init__"):
                        if n_params(item) - 1 > MAX_PARAMS:
                            long.append(f"{name}.{node.name}.{item.name}: {n_params(item) - 1}")
    return long


def long_functions(modules: dict[str, Path]) -> list[str]:
    """Functions and methods longer than ``MAX_LINES`` lines (``def`` to last line, docstring included)."""
    long = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    return long


def untyped_solvers(modules: dict[str, Path]) -> list[str]:
    """Parameters of functions in ``solvers/`` that are unannotated or annotated ``Any`` (the map above all)."""
    bad = []
    for name, path in modules.items():
        if _subpackage(name) != "solvers":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            a = node.args
            for arg in a.posonlyargs + a.args + a.kwonlyargs:
                if arg.arg in ("self", "cls"):
                    continue
                if arg.annotation is None or ast.unparse(arg.annotation) in ("Any", "typing.Any"):
                    bad.append(
                        f"{name}.{node.name}({arg.arg}): {ast.unparse(arg.annotation) if arg.annotation else 'no type'}"
                    )
    return bad


def _is_call_of(node: ast.AST, attr: str) -> bool:
    f = node.func if isinstance(node, ast.Call) else None
    return (isinstance(f, ast.Attribute) and f.attr == attr) or (isinstance(f, ast.Name) and f.id == attr)


def eq5_rewritten(modules: dict[str, Path], root: Path) -> list[str]:
    """Places outside ``EQ5_HOME`` that compose ``A_pinv(... A(...))``: Eq. (5) or its projector written again."""
    bad = []
    home_file, home_funcs = EQ5_HOME
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        home = path.relative_to(root).as_posix() == home_file
        for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.Lambda)] or [tree]:
            fname = getattr(func, "name", "<lambda>")
            if home and fname in home_funcs:
                continue
            for node in ast.walk(func):
                if _is_call_of(node, "A_pinv") and any(_is_call_of(a, "A") for a in node.args):
                    bad.append(
                        f"{name}:{node.lineno} ({fname}) composes A_pinv with A; call operators.project, "
                        "null_space or null_space_project"
                    )
    return sorted(set(bad))


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _mentions_solver(node: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Name) and "solver" in n.id) or (isinstance(n, ast.Attribute) and "solver" in n.attr)
        for n in ast.walk(node)
    )


def solver_string_checks(modules: dict[str, Path]) -> list[str]:
    """Comparisons of a solver with a string (``solver == "picard"``, ``solver in ("anderson", ...)``) outside
    ``solvers/registry.py``."""
    bad = []
    for name, path in modules.items():
        if name == "deqir_edu.solvers.registry":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(_strings(s) for s in sides) and any(_mentions_solver(s) for s in sides if not _strings(s)):
                    bad.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return bad


def ci_runs_ruff(script: str) -> bool:
    """Whether a CI script runs both ``ruff check`` and ``ruff format --check`` (outside comments)."""
    code = "\n".join(line.split("#", 1)[0] for line in script.splitlines())
    return "ruff check" in code and "ruff format --check" in code


MODULES = modules_of(PKG)


def test_every_subpackage_has_a_layer():
    subs = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert subs == set(LAYERS), f"subpackages without a layer or layers without a subpackage: {subs ^ set(LAYERS)}"
    loose = sorted(p.name for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"modules outside the layers: {loose}"


def test_imports_only_go_down_the_layers():
    bad = upward_imports(MODULES)
    assert not bad, "imports that go up or sideways:\n" + "\n".join(bad)


def test_no_import_cycle():
    cycles = import_cycles(MODULES)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _notebook_code(path: Path) -> str:
    nb = json.loads(path.read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    return "\n".join("\n".join(x for x in c.splitlines() if not x.lstrip().startswith(("%", "!"))) for c in cells)


def test_no_private_import_across_subpackages():
    bad = []
    for name, path in MODULES.items():
        bad += private_imports(path.read_text(), name, _subpackage(name))
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        bad += private_imports(_notebook_code(path), path.name)
    for folder in ("benchmarks", "scripts", "book/tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            bad += private_imports(path.read_text(), str(path.relative_to(ROOT)))
    assert not bad, "private imports across subpackages:\n" + "\n".join(bad)


def test_no_public_function_takes_more_than_12_parameters():
    long = long_signatures(MODULES)
    assert not long, f"public functions with more than {MAX_PARAMS} parameters:\n" + "\n".join(long)


def test_small_top_level_api():
    tree = ast.parse((PKG / "__init__.py").read_text())
    exports = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", None) == "_EXPORTS"
    )
    assert len(exports) <= MAX_EXPORTS, f"{len(exports)} top-level names; keep at most {MAX_EXPORTS}"
    assert set(exports.values()) <= set(LAYERS), "every top-level name comes from a subpackage"


def test_no_function_is_longer_than_60_lines():
    long = long_functions(MODULES)
    assert not long, f"functions longer than {MAX_LINES} lines (split them into named steps):\n" + "\n".join(long)


def test_solvers_are_typed():
    bad = untyped_solvers(MODULES)
    assert not bad, "solver parameters without a type, or typed Any (use contract.MapFn / ChainMap):\n" + "\n".join(bad)


def test_eq5_is_written_once():
    bad = eq5_rewritten(MODULES, PKG)
    assert not bad, "Eq. (5) or its projector written outside operators/base.py:\n" + "\n".join(bad)


def test_no_solver_name_is_compared_as_a_string():
    bad = solver_string_checks(MODULES)
    assert not bad, "solver names compared as strings (ask solvers.solver_spec(name) instead):\n" + "\n".join(bad)


def test_ci_runs_ruff():
    assert ci_runs_ruff((ROOT / ".ci" / "run").read_text()), ".ci/run must run ruff check and ruff format --check"
    assert not ci_runs_ruff("pytest\n# ruff check . && ruff format --check .\n"), "a comment does not run ruff"


BAD_PACKAGES = {
    "up": ({"core/bad.py": "from ..apps import cli\n"}, upward_imports),
    "sideways": ({"operators/bad.py": "from ..diffusion import chain\n"}, upward_imports),
    "lazy": ({"core/bad.py": "def f():\n    from deqir_edu.sampling import x\n"}, upward_imports),
    "cycle": ({"core/bad.py": "from . import worse\n", "core/worse.py": "from .bad import f\n"}, import_cycles),
    "long": ({"core/bad.py": "def f(a, b, c, d, e, f, g, h, i, j, k, l, m):\n    pass\n"}, long_signatures),
    "long-function": ({"core/bad.py": "def f():\n" + "    x = 1\n" * 60}, long_functions),
    "any-solver": ({"solvers/bad.py": "from typing import Any\ndef solve(f: Any, init):\n    pass\n"}, untyped_solvers),
    "untyped-solver": ({"solvers/bad.py": "def solve(f, init: int):\n    pass\n"}, untyped_solvers),
    "eq5": ({"sampling/bad.py": "def step(op, y, x):\n    return op.A_pinv(y) + x - op.A_pinv(op.A(x))\n"}, None),
    "eq5-lambda": ({"apps/bad.py": "Q = lambda op, v: v - op.A_pinv(op.A(v))\n"}, None),
    "solver-string": (
        {"sampling/bad.py": "def k(solver):\n    return 15 if solver == 'anderson' else 20\n"},
        solver_string_checks,
    ),
    "solver-in": (
        {"experiments/bad.py": "def f(m):\n    return m.solver in ('picard', 'taa')\n"},
        solver_string_checks,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PACKAGES))
def test_each_check_fails_on_a_package_that_breaks_it(case, tmp_path):
    files, check = BAD_PACKAGES[case]
    fake = tmp_path / "deqir_edu"
    for sub in LAYERS:
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    for rel, text in files.items():
        (fake / rel).write_text(text)
    found = eq5_rewritten(modules_of(fake), fake) if check is None else check(modules_of(fake))
    assert found, f"the {case!r} check passed a package that breaks it"


def test_private_import_check_fails_on_a_private_import():
    assert private_imports("from ..core.checks import _secret\n", "apps/x.py", "apps")
    assert private_imports("from deqir_edu.models.zoo import _wrap\n", "book.ipynb")
    assert private_imports("import deqir_edu._checks\n", "bench.py")
    assert not private_imports("from ._common import _gen\n", "exercises/x.py", "exercises")


def test_the_wheel_lists_every_subpackage():
    """pyproject.toml lists the packages explicitly (data/ is mapped to deqir_edu._data): none may be missing."""
    import re

    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(deqir_edu[\w.]*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    on_disk = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert on_disk | {"deqir_edu._data"} == listed, f"differ: {sorted(on_disk ^ (listed - {'deqir_edu._data'}))}"
