"""DEVELOPING.md's standing rules, checked on the source (fast: reads files, imports nothing).

Each rule keeps a seam whole: one owner of the model file's torch calls, one owner of the
model-name format, functions short enough to read, and a package whose modules import each
other in one direction.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "galmet"
SCRIPTS = ROOT / "workflow" / "scripts"
MAX_FUNCTION_LINES = 100
TORCH_IO_OWNERS = {"model.py", "modelfile.py", "train.py"}


def _py(*dirs):
    return sorted(p for d in dirs for p in d.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def long_functions(paths, limit=MAX_FUNCTION_LINES):
    """``file:line name (N lines)`` of every function longer than ``limit`` lines."""
    out = []
    for p in paths:
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    where = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
                    out.append(f"{where}:{node.lineno} {node.name} ({n} lines)")
    return out


def import_graph(paths) -> dict[str, set[str]]:
    """Module -> the package modules it imports (at the top or inside a function)."""
    modules = {_module_name(p): p for p in paths}
    graph = {}
    for name, p in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from galmet import io` imports the module galmet.io; `from galmet import
                # __version__` the package itself
                subs = {f"{node.module}.{a.name}" for a in node.names}
                deps.update(subs)
                if not subs <= modules.keys():
                    deps.add(node.module)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
    return cycles


def test_no_package_function_is_longer_than_100_lines():
    assert long_functions(_py(PACKAGE)) == []


def test_the_rules_checker_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef f():\n{body}\n")
    (hit,) = long_functions([tmp_path / "m.py"])
    assert hit.endswith("m.py:5 f (101 lines)")


def test_torch_load_and_save_have_three_owners():
    calls = re.compile(r"torch\.(load|save)\(")
    users = {p.name for p in _py(PACKAGE, SCRIPTS) if calls.search(p.read_text())}
    assert users <= TORCH_IO_OWNERS, f"torch.load/save outside the model file's owners: {users - TORCH_IO_OWNERS}"


def test_the_model_name_format_has_one_owner():
    files = [p for d in (PACKAGE, ROOT / "workflow") for p in d.rglob("*")
             if p.is_file() and p.suffix in (".py", ".smk") or p.name == "Snakefile"]
    writers = sorted(str(p.relative_to(ROOT)) for p in files if "px-seed" in p.read_text(errors="replace"))
    assert writers == ["src/galmet/names.py"], writers


def test_no_import_cycle_in_the_package():
    assert import_cycles(import_graph(_py(PACKAGE))) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"galmet.a": {"galmet.b"}, "galmet.b": {"galmet.c"}, "galmet.c": {"galmet.a"},
             "galmet.d": {"galmet.a"}}
    assert import_cycles(graph) == [["galmet.a", "galmet.b", "galmet.c"]]
    assert import_cycles({"galmet.a": {"galmet.b"}, "galmet.b": set()}) == []
