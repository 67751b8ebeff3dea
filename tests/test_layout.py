"""The package's layout rules, checked from the source alone (nothing is imported):

* no import cycle among ``ndr_plugin`` and our top-level modules (``ndr_plugin_hook``, ``ndr_plugin_legacy``). Counted:
  the import statements that run when a module is imported (module level, ``if``/``try`` blocks, class bodies; an
  import inside a function is a deliberate deferral and is not), and every ``importlib.import_module('...')`` with a
  literal name, wherever it is (the start-up hook imports ``ndr_plugin`` that way, from a loader that runs while
  BasicSR is imported). ``from pkg import submodule`` depends on the submodule, not on ``pkg/__init__``;
* no module in ``ndr_plugin/`` over 400 lines;
* no function over 60 lines, unless its ``def`` line carries a ``# long: <reason>`` comment.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / 'ndr_plugin'
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_files() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package and the top-level modules beside it (not setup.py)."""
    files = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = path.relative_to(REPO_ROOT).with_suffix('').parts
        files['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    for path in sorted(REPO_ROOT.glob('*.py')):
        if path.name != 'setup.py':
            files[path.stem] = path
    return files


def _absolute(name: str, level: int, module: str, is_package: bool) -> str:
    if level == 0:
        return name
    base = module.split('.') if is_package else module.split('.')[:-1]
    base = base[:len(base) - (level - 1)]
    return '.'.join(base + ([name] if name else []))


def _literal_import_module(node: ast.Call) -> tuple[str, int] | None:
    """``importlib.import_module('x')`` / ``import_module('.x', ...)``: the name and its number of leading dots."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)
    if called != 'import_module' or not node.args:
        return None
    arg = node.args[0]
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        return None
    name = arg.value.lstrip('.')
    return name, len(arg.value) - len(name)


def _import_time_nodes(tree: ast.Module):
    """The nodes that run when the module is imported: everything but function bodies."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))


def imported_names(module: str, path: Path) -> set[tuple[str, ...]]:
    """What ``module`` imports, each as alternatives: the first name that is one of our modules is the dependency."""
    is_package = path.name == '__init__.py'
    tree = ast.parse(path.read_text(encoding='utf-8'), filename=str(path))
    names = set()
    for node in _import_time_nodes(tree):
        if isinstance(node, ast.Import):
            names.update((alias.name,) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module or '', node.level, module, is_package)
            names.update((f'{base}.{alias.name}', base) for alias in node.names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (found := _literal_import_module(node)):
            names.add((_absolute(found[0], found[1], module, is_package),))
    return names


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph = {}
    for module, path in files.items():
        targets = (next((name for name in alternatives if name in files), None)
                   for alternatives in imported_names(module, path))
        graph[module] = {target for target in targets if target is not None and target != module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), as a readable path."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                components.append(set(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(component, graph) for component in components]


def _cycle_through(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    # Breadth-first from the smallest name back to itself, inside the component: the shortest such cycle.
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return paths[node] + [start]
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    following.append(target)
        frontier = following
    return sorted(component)


def test_cycle_finder_reports_a_cycle():
    graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    assert find_cycles(graph) == [['a', 'b', 'c', 'a']]
    assert find_cycles({'a': {'b'}, 'b': set()}) == []


def test_import_graph_sees_the_hooks_import_module_call():
    graph = import_graph()
    assert 'ndr_plugin' in graph['ndr_plugin_hook'], "the hook's importlib.import_module('ndr_plugin')"
    assert 'ndr_plugin_legacy' in graph['ndr_plugin_hook'] and 'ndr_plugin_legacy' in graph['ndr_plugin.compat']
    assert graph['ndr_plugin_legacy'] == set(), 'the legacy-module finder imports nothing of ours'
    assert 'ndr_plugin.compat' in graph['ndr_plugin']


def test_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, 'import cycles:\n' + '\n'.join(' -> '.join(cycle) for cycle in cycles)


def test_modules_stay_small():
    too_long = []
    for path in sorted(PACKAGE.rglob('*.py')):
        lines = len(path.read_text(encoding='utf-8').splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f'{path.relative_to(REPO_ROOT)}: {lines} lines')
    assert not too_long, f'modules over {MAX_MODULE_LINES} lines (split them):\n' + '\n'.join(too_long)


def test_functions_stay_short():
    too_long = []
    for path in sorted(module_files().values()):
        source = path.read_text(encoding='utf-8')
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and '# long:' not in lines[node.lineno - 1]:
                too_long.append(f'{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}: {length} lines')
    assert not too_long, (f'functions over {MAX_FUNCTION_LINES} lines (split them, or give the reason in a '
                          '"# long: ..." comment on the def line):\n' + '\n'.join(too_long))
