"""The package's layers only look down, and no module imports itself back at run time.

Layers, lowest first; a module may import its own layer and the ones below it,
never one above (type-only and function-level imports included: they are
dependencies all the same). ``topologies/__init__.py`` is the public face on
top of everything and is imported by no module of the package.
"""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from topologies.paths import PACKAGE

LAYERS = (
    # leaves: where files are, the two exception types, lazy package exports, the
    # files (and plugins) a pytest selection uses, bytecode warmed once, scapy's
    # resolvers refused
    ("paths", "errors", "lazy", "selection", "bytecode", "scapy_guard"),
    ("verdict",),          # bytes → verdicts: no namespaces, no sockets
    ("lab",),              # namespaces, nodes, links, firewall, traffic, ownership
    ("bpf",),              # build, load, attach BPF programs (onto lab interfaces)
    ("capture",),          # AF_PACKET captures judged by the verdict engine
    ("kernels",),          # kernel images, VMs, matrix, bisect
    ("scenarios",),        # the named topologies and their known bugs
    ("report",),           # rows, tables, artifacts, lab descriptions
    ("pytest_plugin",),    # fixtures, markers, the session's guards
    ("cli",),              # the nslab command
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
FACE = len(LAYERS)        # topologies/__init__.py


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path) -> dict[str, Path]:
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports(path: Path, name: str, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported module, line, at import time?) for every import in ``path``;
    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is a module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, runtime: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
                continue
            if _type_checking_block(child):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), runtime)
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, runtime) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.append((sub if sub in known else base, child.lineno, runtime))
            visit(child, runtime)
    visit(tree, True)
    return found


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "topologies":
        return None
    return FACE if len(parts) == 1 else RANK.get(parts[1])


def violations(package: Path) -> list[str]:
    """Imports that reach up a layer, and modules in no layer at all."""
    mods = modules(package)
    problems = []
    for name, path in mods.items():
        rank = layer_of(name)
        if rank is None:
            problems.append(f"{name}: in no layer; add it to LAYERS")
            continue
        for target, line, _ in imports(path, name, set(mods)):
            target_rank = layer_of(target)
            if target_rank is not None and target_rank > rank:
                problems.append(f"{path.relative_to(package.parent)}:{line}: {name} "
                                f"imports {target}, a layer above it")
    return problems


def runtime_cycles(package: Path) -> list[list[str]]:
    """Cycles among imports that run when a module is imported (not in functions,
    not under TYPE_CHECKING)."""
    mods = modules(package)
    graph = {name: sorted({t for t, _, runtime in imports(path, name, set(mods))
                           if runtime and t in mods and t != name})
             for name, path in mods.items()}
    cycles, state = [], {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = "done"
    for name in graph:
        if name not in state:
            walk(name, [name])
    return cycles


def test_every_import_looks_down():
    assert violations(PACKAGE) == []


def test_no_runtime_import_cycle():
    assert runtime_cycles(PACKAGE) == []


def test_every_subpackage_says_what_it_is_and_exports_its_face():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree)
        summary = (doc or "").strip().split("\n\n")[0]
        assert summary and len(summary.splitlines()) <= 3, f"{init}: say in 1-3 lines what it is"
        exported = [n for n in tree.body
                    if isinstance(n, ast.Assign) and "__all__" in names_bound(n)]
        assert exported, f"{init}: no __all__"


def names_bound(assign: ast.Assign) -> set[str]:
    """``a = ...`` and ``a, b = ...`` alike (``lazy.exports`` returns ``__all__`` in a tuple)."""
    targets = [e for t in assign.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
    return {getattr(t, "id", "") for t in targets}


@pytest.mark.parametrize("package", ["topologies"] + [
    f"topologies.{init.parent.name}" for init in sorted(PACKAGE.glob("*/__init__.py"))])
def test_every_exported_name_resolves(package):
    """Exports are imported on first use: a misspelt entry would only fail then."""
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError):
        module.no_such_name   # noqa: B018


def test_a_command_imports_only_what_it_uses():
    """``nslab --help``, ``ls``, ``down`` and ``sweep`` start without pyroute2, the
    verdict engine or the capture code: a tenth of the CPU time of a full import."""
    probe = ("import sys; from topologies.cli.main import build_parser; build_parser(); "
             "import topologies.lab.sweep, topologies.lab.owner, topologies.lab.names; "
             "print(sorted(m for m in ('pyroute2', 'topologies.verdict', "
             "'topologies.capture.af_packet', 'topologies.lab.lab') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent).stdout
    assert out.strip() == "[]", out


SCENARIOS = ("xdp_responder", "lb_snat", "pod_egress", "vxlan_overlay")
SCENARIO_FILES = ("labtests/test_xdp_responder.py", "labtests/test_pod_egress.py",
                  "labtests/test_vxlan_overlay.py", "labtests/test_lb_snat.py")


def test_every_scenario_lab_is_built_without_pyroute2(root_required):
    """The steps a scenario's lab takes (namespaces, veth and vxlan devices,
    addresses, MTU, routes, offloads, XDP, tc, teardown) go over nslab's own
    rtnetlink socket and ioctls: pyroute2, whose package imports every netlink
    family it knows (seconds in a VM guest under TCG), is imported only by what
    needs it (netkit, conntrack, listing tc filters, vxlan_info...). One process
    builds each in turn and names the first that imported it."""
    probe = ("import importlib, sys\n"
             "from topologies import Lab\n"
             f"for name in {SCENARIOS!r}:\n"
             "    scenario = importlib.import_module('topologies.scenarios.' + name)\n"
             "    with Lab() as lab:\n"
             "        scenario.build(lab, scenario.Config())\n"
             "    if 'pyroute2' in sys.modules:\n"
             "        sys.exit(name + ' imported pyroute2')\n"
             "print('built', len(" + repr(SCENARIOS) + "))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=PACKAGE.parent)
    assert (out.returncode, out.stdout.strip()) == (0, f"built {len(SCENARIOS)}"), \
        out.stderr[-2000:]


def test_collecting_a_scenario_file_imports_neither_scapy_nor_hypothesis():
    """A VM guest running one of these files gets its first result without
    importing scapy or hypothesis (~12 s together under TCG): only the tests that
    craft frames or generate them import them, when they run. Each file is
    collected by itself, as a guest would (its plugins left out the same way)."""
    from topologies.selection import unused_plugins
    each = [(f, unused_plugins([f])) for f in SCENARIO_FILES]
    probe = ("import sys, pytest\n"
             f"for test_file, plugins in {each!r}:\n"
             "    code = pytest.main([test_file, '--collect-only', '-q',\n"
             "                        '-p', 'no:cacheprovider', *plugins])\n"
             "    heavy = sorted(m for m in ('scapy', 'hypothesis') if m in sys.modules)\n"
             "    if code or heavy:\n"
             "        sys.exit(f'{test_file}: exit {code}, imported {heavy}')\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


# -- the checks themselves can fail ---------------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "topologies"
    for rel, text in files.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


@pytest.mark.parametrize("text", [
    "from ..cli import main\n",
    "def f():\n    from ..cli.main import main\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..cli import main\n",
    "import topologies.cli.main\n",
    "from .. import Lab\n",
], ids=["module-level", "in-a-function", "type-only", "absolute", "the-public-face"])
def test_an_import_reaching_up_is_found(tmp_path, text):
    package = _tree(tmp_path, {"__init__.py": "", "lab/__init__.py": "", "lab/node.py": text,
                               "cli/__init__.py": "", "cli/main.py": "main = 1\n"})
    problems = violations(package)
    assert len(problems) == 1 and "topologies.lab.node imports topologies" in problems[0]


def test_a_module_outside_the_layers_is_found(tmp_path):
    package = _tree(tmp_path, {"__init__.py": "", "gadgets/__init__.py": ""})
    assert violations(package) == ["topologies.gadgets: in no layer; add it to LAYERS"]


def test_a_runtime_cycle_is_found_and_a_lazy_one_is_not(tmp_path):
    package = _tree(tmp_path, {"__init__.py": "", "lab/__init__.py": "",
                               "lab/node.py": "from .iface import Iface\n",
                               "lab/iface.py": "from .node import Node\n"})
    assert runtime_cycles(package) == [["topologies.lab.iface", "topologies.lab.node",
                                        "topologies.lab.iface"]]
    (package / "lab/iface.py").write_text("def f():\n    from .node import Node\n")
    assert runtime_cycles(package) == []
