"""The layers of the code stay visible: every import of a project module (at module level, inside
a function or for type checkers alike) goes to the importer's own layer or one listed before it in
the README's "The code" section, with no import cycle among the modules of core/, demos/ and
app.py; and no function-local import of a project module except where it defers a heavy
dependency (torch for the commands that read JSON only, open_clip, diffusers, gradio), which its
line says with a `# deferred: WHAT` comment. Read from the source (ast), nothing is imported."""
import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = "# deferred:"


def project_modules() -> dict[str, Path]:
    modules = {"app": REPO / "app.py"}
    for package in ("core", "demos"):
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def imported(node: ast.Import | ast.ImportFrom, module: str, modules: dict[str, Path]) -> list[str]:
    """The project modules an import statement of `module` names (a name of a package is the
    package's __init__, a name inside a module is that module)."""
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:   # relative: from the package of `module`
            package = module.split(".")[: -node.level] if not modules[module].name == "__init__.py" else \
                module.split(".")[: len(module.split(".")) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    found = []
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target:
            found.append(target)
    return found


def import_graph(every_import: bool = False):
    """({module: modules it imports}, [(module, line, imported) of function-local imports without
    the marker]). The graph holds the imports run at module level, or with `every_import` also
    those inside functions and under `if TYPE_CHECKING:`."""
    modules = project_modules()
    graph, unmarked = {}, []
    for module, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()
        graph[module] = set()

        # visit runs within this iteration; module and lines are bound to say so
        def visit(node, in_function: bool, module: str = module, lines: list[str] = lines) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test) and not every_import:
                    continue   # for type checkers only: never runs
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    targets = imported(child, module, modules)
                    if not in_function or every_import:
                        graph[module].update(targets)
                    if in_function and targets and \
                            not any(MARKER in line for line in lines[child.lineno - 1:child.end_lineno]):
                        unmarked.extend((module, child.lineno, t) for t in targets)
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

        visit(ast.parse(source), False)
    return graph, unmarked


def readme_layers() -> list[list[str]]:
    """The layers of the README's "The code" block, lowest first: per line, the paths before the
    description ("core/checks.py, images.py": a bare file name is in the previous path's folder)."""
    text = (REPO / "README.md").read_text()
    block = text[text.index("## The code"):].split("```")[1]
    layers = []
    for line in block.splitlines():
        if not line or line[0].isspace():
            continue   # a description's continuation
        paths, folder = [], ""
        for item in re.split(r"\s{2,}", line.strip())[0].split(", "):
            if "/" not in item.rstrip("/"):
                item = folder + item
            folder = item if item.endswith("/") else item.rpartition("/")[0] + "/"
            paths.append(item)
        layers.append(paths)
    return layers


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """The index of the README layer holding `module`: its own file, else its package's folder,
    else `core/*.py` for a module directly in core (core/__init__ counts as core's lowest layer)."""
    if module == "core":
        return 0
    path = module.replace(".", "/") + ".py"
    if (REPO / module.replace(".", "/") / "__init__.py").is_file():
        path = module.replace(".", "/") + "/__init__.py"   # a package: its folder holds it
    for i, paths in enumerate(layers):   # a file named for itself wins
        if path in paths:
            return i
    best = None
    for i, paths in enumerate(layers):   # else the deepest folder that holds it
        for folder in (p for p in paths if p.endswith("/")):
            if path.startswith(folder) and (best is None or len(folder) > best[1]):
                best = (i, len(folder))
    if best:
        return best[0]
    if module.count(".") == 1 and module.startswith("core."):
        return next((i for i, paths in enumerate(layers) if "core/*.py" in paths), None)
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and self-imports."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_no_import_cycle():
    graph, _ = import_graph(every_import=True)
    assert "core.cascade" in graph and "demos.common" in graph and "app" in graph   # the walk found the code
    assert cycles(graph) == []


def test_imports_follow_the_readme_layers():
    layers = readme_layers()
    assert len(layers) >= 8 and "core/diffusion/" in layers[1]   # the README block was read
    graph, _ = import_graph(every_import=True)
    unplaced = [m for m in graph if layer_of(m, layers) is None]
    assert unplaced == [], f"modules the README's layer list does not place: {unplaced}"
    upward = [f"{m} (layer {layer_of(m, layers)}) imports {t} (layer {layer_of(t, layers)})"
              for m, targets in graph.items() for t in sorted(targets) if layer_of(t, layers) > layer_of(m, layers)]
    assert upward == [], "imports against the README's layer order:\n" + "\n".join(upward)


def test_function_local_project_imports_say_what_they_defer():
    _, unmarked = import_graph()
    assert unmarked == [], "\n".join(f"{m}:{line} imports {t} inside a function without '{MARKER} WHAT'"
                                     for m, line, t in unmarked)


def test_the_check_sees_a_cycle_and_an_unmarked_import(tmp_path, monkeypatch):
    """The checks above can fail: a made-up pair of modules importing each other is a cycle, and a
    function-local import without the marker is reported."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    package = tmp_path / "core"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "one.py").write_text("def f():\n    from core import two\n    return two\n")
    (package / "two.py").write_text("def g():\n    from core import one  # deferred: a test\n    return one\n")
    (tmp_path / "demos").mkdir()
    (tmp_path / "app.py").write_text("import core.one\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    graph, unmarked = import_graph()
    assert graph["app"] == {"core.one"} and unmarked == [("core.one", 2, "core.two")]
    every, _ = import_graph(every_import=True)
    assert cycles(every) == [["core.one", "core.two"]]   # counted with the imports inside functions
    layers = [["core/one.py"], ["core/two.py"]]
    assert layer_of("core.one", layers) == 0 and layer_of("core.two", layers) == 1   # one imports two: upward
