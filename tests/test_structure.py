"""The package's shape: no import circles between its modules (lazy imports included), no module
far over 600 lines."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "segbench"
MAX_LINES = 620


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts) or "segbench"


def imports() -> dict[str, set[str]]:
    """Each segbench module -> the segbench modules it imports, anywhere in its body."""
    mods = {_module(p): p for p in PKG.rglob("*.py")}
    out = {}
    for name, path in mods.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "segbench":
                    found |= {a.name for a in node.names if a.name in mods}
                elif node.module.startswith("segbench."):
                    found.add(node.module[len("segbench."):])
            elif isinstance(node, ast.Import):
                found |= {a.name[len("segbench."):] for a in node.names if a.name.startswith("segbench.")}
        out[name] = {m for m in found if m in mods and m != name}
    return out


def test_no_import_circles():
    deps = imports()
    assert {"configs", "tuned", "launch", "case"} <= set(deps) and "configs" in deps["tuned"]

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in deps.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
    assert [m for m in deps if m in reach(m)] == []
    assert not deps["configs"] & {"tuned", "launch", "case"}     # the tuned mode depends on configs


def test_no_module_far_over_600_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PKG.rglob("*.py")}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
