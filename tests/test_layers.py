"""The package's layers, read from its source: imports point one way, with no cycles.

From the bottom up: ``models``, ``stores``, ``core`` (the runtime without a web
framework or a server), ``observability``, ``servers``, ``web`` (the Flask
adapter), ``managed`` (the managed runtime played locally), ``cli``, and the
package's own ``__init__``. A module imports only
from its own layer or those below; lazy imports (inside functions) count, imports
under ``if TYPE_CHECKING:`` do not. The core also constructs without
process-wide effects.
"""

from __future__ import annotations

import ast
import atexit
import gc
import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "agentcore_sync"
LAYERS = [
    "models",
    "stores",
    "core",
    "observability",
    "servers",
    "web",
    "managed",
    "cli",
    "__init__",
]
#: Third-party libraries the framework-free layers must not import.
OUTER_LIBRARIES = {"flask", "werkzeug", "gunicorn", "waitress", "prometheus_client", "click"}
FRAMEWORK_FREE = {"models", "stores", "core"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return "__init__" if parts[1] == "__main__" else parts[1]


class _Imports(ast.NodeVisitor):
    """Every import of a module, lazy ones included, TYPE_CHECKING blocks excluded."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.is_package = is_package
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module.split(".")
            if not self.is_package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        self.found.add(target)
        self.found.update(f"{target}.{alias.name}" for alias in node.names)


def package_imports() -> dict[str, set[str]]:
    """Module -> the imports it makes (package modules and top-level libraries)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        visitor = _Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[module] = {
            name
            for name in visitor.found
            if name != module and not (path.name == "__init__.py" and name.startswith(module))
        }
    return graph


GRAPH = package_imports()
OWN = set(GRAPH)


def own_imports(module: str) -> set[str]:
    return {name for name in GRAPH[module] if name in OWN}


def test_the_layers_are_the_expected_subpackages() -> None:
    assert {layer_of(module) for module in GRAPH} == set(LAYERS)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_the_layers(module: str) -> None:
    rank = LAYERS.index(layer_of(module))
    upward = sorted(name for name in own_imports(module) if LAYERS.index(layer_of(name)) > rank)
    assert not upward, f"{module} ({layer_of(module)}) imports from layers above it: {upward}"


@pytest.mark.parametrize(
    "module", sorted(m for m in GRAPH if layer_of(m) in FRAMEWORK_FREE), ids=str
)
def test_the_core_imports_no_framework_server_or_metrics_library(module: str) -> None:
    libraries = {name.split(".")[0] for name in GRAPH[module] if name not in OWN}
    assert not libraries & OUTER_LIBRARIES, f"{module} imports {libraries & OUTER_LIBRARIES}"


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in own_imports(module):
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            connect(module)
    assert not cycles


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself: an import from web into core is found, lazy or not."""
    source = "def f():\n    from ..web.app import BedrockAgentCoreApp\n"
    visitor = _Imports("agentcore_sync.core.example", is_package=False)
    visitor.visit(ast.parse(source))
    assert "agentcore_sync.web.app" in visitor.found
    assert layer_of("agentcore_sync.web.app") == "web"


def process_wide_state() -> tuple[object, ...]:
    """What a library may change for the whole process: logging, signals, tuning, exit hooks."""
    root = logging.getLogger()
    return (
        list(root.handlers),
        root.level,
        signal.getsignal(signal.SIGTERM),
        signal.getsignal(signal.SIGINT),
        gc.get_threshold(),
        sys.getswitchinterval(),
        atexit._ncallbacks(),
    )


def test_constructing_a_runtime_has_no_process_wide_effect() -> None:
    from agentcore_sync import AgentCore, BedrockAgentCoreApp
    from agentcore_sync.core.runtime import Runtime

    Runtime(result_store="memory://")  # the first one may register the exit hook
    before = process_wide_state()
    Runtime(result_store="memory://")
    for make in (AgentCore, BedrockAgentCoreApp):  # JSON logging is theirs, on request
        make(result_store="memory://", configure_logging=False)
    after = process_wide_state()
    assert after == before


def test_a_runtime_is_not_kept_alive_by_the_process() -> None:
    import weakref

    from agentcore_sync import BedrockAgentCoreApp

    app = BedrockAgentCoreApp(result_store="memory://")
    runtime = weakref.ref(app.runtime)
    del app
    gc.collect()
    assert runtime() is None


def test_every_folder_of_the_package_is_shipped() -> None:
    """setup.cfg's ``packages = find:`` ships folders with an ``__init__.py`` only."""
    folders = {path.parent for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts}
    assert sorted(f for f in folders if not (f / "__init__.py").exists()) == []


@pytest.mark.unit
def test_what_a_process_that_serves_nothing_imports() -> None:
    """gunicorn's arbiter reads the settings module and serves nothing: Flask, werkzeug
    and the runtime stay out of it (its memory, its start), as they do of a bare
    ``import agentcore_sync``; the names are still there when asked for."""
    script = (
        "import sys, json\n"
        "import agentcore_sync.servers.gunicorn_config\n"
        "heavy = ('flask', 'werkzeug', 'asyncio', 'agentcore_sync.core.runtime', 'sqlite3')\n"
        "arbiter = [m for m in heavy if m in sys.modules]\n"
        "import agentcore_sync\n"
        "bare = [m for m in heavy if m in sys.modules]\n"
        "from agentcore_sync import BedrockAgentCoreApp, PingStatus\n"
        "named = [BedrockAgentCoreApp.__name__, PingStatus.HEALTHY.value]\n"
        "listed = all(hasattr(agentcore_sync, name) for name in agentcore_sync.__all__)\n"
        "print(json.dumps([arbiter, bare, named, listed]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    arbiter, bare, named, listed = json.loads(done.stdout)
    assert arbiter == [] and bare == []
    assert named == ["BedrockAgentCoreApp", "Healthy"] and listed
