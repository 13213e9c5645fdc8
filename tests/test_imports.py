"""The package's import graph: no cycles, leaf modules are leaves, the rules load no Qt.

The graph is read from the source with ``ast``: an edge A → B for every import of a
qtchat module that runs when A is imported (module level, class bodies, ``try`` and
``if`` blocks; not ``if TYPE_CHECKING:``). Imports inside functions run later and are
not edges; they are listed (``python tests/test_imports.py`` prints them with the
graph), since each is a dependency the module graph does not show.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ServeProcess

import qtchat

PACKAGE_DIR = Path(qtchat.__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(body: list[ast.stmt], deferred: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement under ``body``, with whether it runs only when called."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, deferred
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _imports(node.body, True)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            continue  # never runs
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from _imports([c for c in children if isinstance(c, ast.stmt)] +
                                        [s for c in children if isinstance(c, ast.excepthandler)
                                         for s in c.body], deferred)
            if isinstance(node, ast.Match):
                for case in node.cases:
                    yield from _imports(case.body, deferred)


def _targets(node: ast.stmt, importer: str, is_package: bool,
             modules: dict[str, Path]) -> set[str]:
    """The qtchat modules an import statement loads (with the packages above them that
    are not the importer's own)."""
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        assert isinstance(node, ast.ImportFrom)
        base = node.module or ""
        if node.level:
            package = importer if is_package else importer.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        names = {base}
        names |= {f"{base}.{alias.name}" for alias in node.names
                  if f"{base}.{alias.name}" in modules}
    loaded: set[str] = set()
    own = {importer.rsplit(".", n)[0] for n in range(importer.count(".") + 1)}
    for name in names:
        if name != "qtchat" and not name.startswith("qtchat."):
            continue
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if prefix in modules and (prefix == name or prefix not in own):
                loaded.add(prefix)
    loaded.discard(importer)
    return loaded


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level edges, deferred edges) between qtchat modules."""
    modules = all_modules()
    eager: dict[str, set[str]] = {name: set() for name in modules}
    deferred: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, later in _imports(tree.body, False):
            targets = _targets(node, name, path.name == "__init__.py", modules)
            (deferred if later else eager)[name] |= targets
    for name in modules:
        deferred[name] -= eager[name]
    return eager, deferred


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def describe(graph: dict[str, set[str]]) -> str:
    return "\n".join(f"  {source} -> {', '.join(sorted(targets))}"
                     for source, targets in sorted(graph.items()) if targets)


def test_the_graph_reader_sees_cycles_and_ignores_what_does_not_run(tmp_path, monkeypatch):
    """The checker itself, on a made-up package: a cycle through a class body and a
    relative import is found; imports in functions and under TYPE_CHECKING are not edges."""
    package = tmp_path / "qtchat"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from qtchat.sub import b\n"
                                  "def later():\n    import qtchat.c\n")
    (package / "sub" / "b.py").write_text("class K:\n    from .. import a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from qtchat import a\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE_DIR", package)
    monkeypatch.setattr(sys.modules[__name__], "SOURCE_ROOT", tmp_path)
    eager, deferred = import_graph()
    assert eager["qtchat.a"] == {"qtchat.sub", "qtchat.sub.b"}
    assert eager["qtchat.sub.b"] == {"qtchat", "qtchat.a"}  # from .. import: qtchat too
    assert eager["qtchat.c"] == set()
    assert deferred["qtchat.a"] == {"qtchat.c"}
    assert find_cycles(eager) == [["qtchat.a", "qtchat.sub.b"]]


def test_module_level_imports_have_no_cycles():
    eager, deferred = import_graph()
    cycles = find_cycles(eager)
    assert not cycles, (f"import cycles: {cycles}\nmodule-level imports:\n{describe(eager)}"
                        f"\nimports inside functions (not counted):\n{describe(deferred)}")


def test_leaf_modules_import_nothing_of_qtchat_but_its_constants():
    """paths and wakeup serve the command line, the server and the app alike: they must
    not pull any of them in, at module level or later."""
    eager, deferred = import_graph()
    for leaf in ("qtchat.paths", "qtchat.wakeup"):
        assert eager[leaf] <= {"qtchat"} and deferred[leaf] <= {"qtchat"}, leaf


def test_the_entry_points_do_not_import_back_the_command_line():
    """cli parses and dispatches: it may load serve and the app when run; they never
    load cli (that was the cli <-> gui.app and cli <-> serve cycle)."""
    eager, deferred = import_graph()
    users = sorted(name for name in eager if "qtchat.cli" in eager[name] | deferred[name])
    assert users == ["qtchat.__main__"]


def _loads_no_qt(modules: list[str]) -> None:
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "qt = sorted(m for m in sys.modules if m.startswith('PySide6'))\n"
            "print(' '.join(qt))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=ServeProcess.environment(), cwd=SOURCE_ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{modules} loaded {done.stdout.strip()}"


def test_the_settings_store_and_protocol_load_no_qt():
    _loads_no_qt(["qtchat.server.config", "qtchat.server.store", "qtchat.protocol",
                  "qtchat.protocol.server_frames", "qtchat.paths", "qtchat.wakeup",
                  "qtchat.cli", "qtchat.server", "qtchat.client"])


def test_the_server_core_and_the_client_session_load_no_qt():
    """Issue 12: ``import qtchat.server.core, qtchat.client.session`` loads no PySide6."""
    missing = [name for name in ("qtchat.server.core", "qtchat.client.session")
               if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not on this branch yet (being written on others)")
    _loads_no_qt(["qtchat.server.core", "qtchat.client.session"])


if __name__ == "__main__":  # print the graph: python tests/test_imports.py
    eager_edges, deferred_edges = import_graph()
    print(f"module-level imports:\n{describe(eager_edges)}")
    print(f"imports inside functions (not counted):\n{describe(deferred_edges)}")
    print(f"cycles: {find_cycles(eager_edges) or 'none'}")
