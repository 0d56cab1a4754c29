"""The layers read like the data flow: foundation → ingest → indexes → rag → medlit. No module imports a
layer above its own (lazy imports inside functions included), and modules import each other in no circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["foundation", "ingest", "indexes", "rag", "medlit"]


def _imports(path: Path) -> set[str]:
    """Every medlit module ``path`` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] in LAYERS}


def _modules() -> dict[str, Path]:
    found = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for name, path in _modules().items():
        own = LAYERS.index(name.split(".")[0])
        for imported in _imports(path):
            if LAYERS.index(imported.split(".")[0]) > own:
                upward.append(f"{name} imports {imported}")
    assert upward == []


def test_modules_import_each_other_in_no_circle() -> None:
    modules = _modules()
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()
    }
    # a package's __init__ re-exporting its own modules is not a circle of the data flow
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".") and "." in m}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_base_imports_no_heavy_library() -> None:
    """foundation loads in any process (a parse child, a CLI start) without numpy, torch or FAISS."""
    code = (
        "import sys, foundation.settings, foundation.errors, foundation.durable, foundation.redaction, "
        "foundation.progress, foundation.clock\n"
        "print(sorted(m for m in ('numpy', 'torch', 'faiss', 'ingest', 'rag', 'medlit') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_import_medlit_is_the_public_face() -> None:
    import medlit

    assert medlit.Library.__module__ == "medlit.library"
    assert medlit.Filters.__name__ == "Filters" and medlit.Answer.__name__ == "Answer"
    assert isinstance(medlit.__version__, str) and medlit.__version__
    assert callable(medlit.ask)
