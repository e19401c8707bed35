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


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
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


# ----------------------------------------------------------------------------- defaults once

SCHEMA = PACKAGE / "schemas" / "config.schema.yaml"


def schema_defaults(path=SCHEMA) -> dict:
    """``{dotted key: default}`` of every leaf key of the config schema that has a default."""
    import yaml

    out = {}

    def walk(node, prefix):
        for name, sub in (node.get("properties") or {}).items():
            key = f"{prefix}{name}"
            if "properties" in sub:
                walk(sub, f"{key}.")
            elif "default" in sub:
                out[key] = sub["default"]

    walk(yaml.safe_load(Path(path).read_text()), "")
    return out


def _leaf_names(key: str) -> set[str]:
    """The names code may use for a schema key: its leaf (``max_pixels``), without a unit suffix
    (``timeout_s`` -> ``timeout``), and with its section (``predict_tta``)."""
    leaf = key.rsplit(".", 1)[-1]
    names = {leaf, key.replace(".", "_")}
    if leaf.endswith("_s"):
        names.add(leaf[:-2])
    return names


def _constant(node):
    """The value of a literal (numbers, strings, booleans, lists/tuples of them, constant
    arithmetic such as ``4096 * 4096``), else a marker that equals nothing."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Add, ast.Sub, ast.Pow)):
        left, right = _constant(node.left), _constant(node.right)
        if isinstance(left, (int, float)) and isinstance(right, (int, float)):
            return {ast.Mult: left * right, ast.Add: left + right, ast.Sub: left - right,
                    ast.Pow: left ** right}[type(node.op)]
    return _NOT_LITERAL


_NOT_LITERAL = object()


def literal_argparse_defaults(paths, defaults: dict) -> list[str]:
    """``file:line --option default=<literal> (schema key)`` for every ``add_argument`` whose option
    is a schema key (:func:`_leaf_names`) and whose default is written as a literal (not None)."""
    by_name = {}
    for key in defaults:
        for name in _leaf_names(key):
            by_name.setdefault(name, []).append(key)
    out = []
    for p in paths:
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"):
                continue
            kw = {k.arg: k.value for k in node.keywords}
            flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            dest = kw["dest"].value if isinstance(kw.get("dest"), ast.Constant) else \
                next((f.lstrip("-").replace("-", "_") for f in flags if f.startswith("--")), None)
            if dest not in by_name or "default" not in kw:
                continue
            value = _constant(kw["default"])
            if value is not _NOT_LITERAL and value is not None and value != ():
                where = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
                out.append(f"{where}:{node.lineno} --{dest.replace('_', '-')} default={value!r} "
                           f"({', '.join(by_name[dest])})")
    return out


def shadowing_constants(paths, defaults: dict) -> list[str]:
    """``file:line NAME = value (schema key)`` for every module-level constant named like a schema
    key (:func:`_leaf_names`, also with ``DEFAULT_`` before it) whose value is that key's default:
    a second copy of the default, which drifts when the schema changes."""
    out = []
    for p in paths:
        for node in ast.parse(p.read_text(), filename=str(p)).body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                targets, value = [node.target], node.value
            elif isinstance(node, ast.Assign):
                targets, value = [t for t in node.targets if isinstance(t, ast.Name)], node.value
            else:
                continue
            literal = _constant(value)
            if literal is _NOT_LITERAL:
                continue
            for t in targets:
                name = t.id.lower().removeprefix("default_").removesuffix("_default")
                for key, default in defaults.items():
                    if name in _leaf_names(key) and literal == default and type(literal) is type(default):
                        where = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
                        out.append(f"{where}:{node.lineno} {t.id} = {literal!r} ({key})")
    return out


def test_defaults_are_written_once_in_the_schema():
    """Options of a schema key take their default from it (config.default / config.section), and
    no module keeps a copy of a schema default in a constant of its name."""
    defaults = schema_defaults()
    assert literal_argparse_defaults(_py(PACKAGE, SCRIPTS), defaults) == []
    assert shadowing_constants(_py(PACKAGE, SCRIPTS), defaults) == []


def test_the_defaults_checker_finds_literal_defaults(tmp_path):
    schema = tmp_path / "schema.yaml"
    schema.write_text("properties:\n  cutouts:\n    properties:\n      max_pixels: {default: 16777216}\n"
                      "      timeout_s: {default: 30}\n  predict:\n    properties:\n      tta: {default: 8}\n")
    defaults = schema_defaults(schema)
    assert defaults == {"cutouts.max_pixels": 16777216, "cutouts.timeout_s": 30, "predict.tta": 8}
    (tmp_path / "bad.py").write_text(
        "import argparse\nfrom galmet.config import default\n\nMAX_PIXELS = 4096 * 4096\nDEFAULT_TTA = 8\n"
        "OTHER = 16777216\nTTA_LIMIT = 8\n\n\ndef parser():\n    p = argparse.ArgumentParser()\n"
        "    p.add_argument('--timeout', type=float, default=30.0)\n"
        "    p.add_argument('--max-pixels', type=int, default=default('cutouts.max_pixels'))\n"
        "    p.add_argument('--tta', default=None)\n    p.add_argument('--label', default='x')\n"
        "    p.add_argument('-n', dest='tta', default=4)\n    return p\n")
    bad = tmp_path / "bad.py"
    assert literal_argparse_defaults([bad], defaults) == [
        f"{bad}:12 --timeout default=30.0 (cutouts.timeout_s)", f"{bad}:16 --tta default=4 (predict.tta)"]
    assert shadowing_constants([bad], defaults) == [
        f"{bad}:4 MAX_PIXELS = 16777216 (cutouts.max_pixels)", f"{bad}:5 DEFAULT_TTA = 8 (predict.tta)"]


# ----------------------------------------------------------------------------- one way: library <- command line


def cli_imports(graph: dict[str, set[str]]) -> list[str]:
    """``module -> galmet.cli...`` for every library module (outside ``galmet.cli``) that imports the CLI."""
    return sorted(f"{m} -> {d}" for m, deps in graph.items() if not m.startswith("galmet.cli")
                  for d in deps if d == "galmet.cli" or d.startswith("galmet.cli."))


def private_imports(paths) -> list[str]:
    """``file:line module._name`` for every import of another module's private name."""
    out = []
    for p in paths:
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("galmet"):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        where = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
                        out.append(f"{where}:{node.lineno} {node.module}.{a.name}")
    return out


def test_the_library_imports_nothing_of_the_command_line_nor_private_names():
    """The notebook API and every other library module are below galmet.cli, never above it; no
    module reaches into another's private names (an owner's seam stays its own)."""
    assert cli_imports(import_graph(_py(PACKAGE))) == []
    assert private_imports(_py(PACKAGE, SCRIPTS)) == []


def test_the_one_way_checkers_find_a_cli_import_and_a_private_name(tmp_path):
    graph = {"galmet.api": {"galmet.cli.common", "galmet.predict"}, "galmet.cli.predict": {"galmet.predict"},
             "galmet.predict": set()}
    assert cli_imports(graph) == ["galmet.api -> galmet.cli.common"]
    (tmp_path / "m.py").write_text("from galmet.imaging import _channels_equal, read_image\n"
                                   "from galmet._version import __version__\n")
    assert private_imports([tmp_path / "m.py"]) == [f"{tmp_path / 'm.py'}:1 galmet.imaging._channels_equal"]


def owner_table(text: str) -> str:
    """The rows of DEVELOPING.md's owner table (section "Where a change goes")."""
    section = text.split("\n## Where a change goes\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def _top_level_names(path: Path) -> set[str]:
    """Names a module defines at its top level (functions, classes, assignments, ``__all__``)."""
    tree = ast.parse(path.read_text())
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            names |= {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
    return names


def unknown_references(text: str, package: Path = PACKAGE) -> list[str]:
    """``galmet.<module>[.<name>]`` references of ``text`` whose module is not in ``package``
    or whose name the module does not define at its top level."""
    files = {_module_name(p, package): p for p in _py(package)}
    modules = set(files) | {_module_name(p.parent / "__init__.py", package) for p in _py(package)}
    bad = []
    for ref in sorted(set(re.findall(r"\bgalmet(?:\.\w+)+", text))):
        parts = ref.split(".")
        module = next(".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules)
        rest = parts[len(module.split(".")):]
        defined = _top_level_names(files[module]) if module in files else set()
        if rest and rest[0] not in defined:
            bad.append(ref)
    return bad


def test_every_module_has_an_owner_row_and_every_reference_exists():
    """DEVELOPING.md's owner table names every module of src/galmet and its subpackages (as
    `galmet.<module>`), and every `galmet.<module>[.<name>]` DEVELOPING.md names exists."""
    text = (ROOT / "DEVELOPING.md").read_text()
    table = owner_table(text)
    named = set(re.findall(r"\bgalmet(?:\.\w+)+", table))
    modules = sorted({_module_name(p) for p in _py(PACKAGE)} - {"galmet", "galmet.cli.__main__"})
    unowned = [m for m in modules if not any(n == m or n.startswith(m + ".") for n in named)]
    assert unowned == [], f"modules without a row in DEVELOPING.md's owner table: {unowned}"
    assert unknown_references(text) == []


def test_the_owner_check_finds_a_missing_module_and_a_missing_name(tmp_path):
    (tmp_path / "galmet").mkdir()
    (tmp_path / "galmet" / "__init__.py").write_text("")
    (tmp_path / "galmet" / "plan.py").write_text("class Study:\n    pass\n\nEXPLAIN_KEYS = ()\n")
    text = "`galmet.plan.Study`, `galmet.plan.EXPLAIN_KEYS`, `galmet.provenance`, `galmet.plan.nothing`"
    assert unknown_references(text, tmp_path / "galmet") == ["galmet.plan.nothing", "galmet.provenance"]
