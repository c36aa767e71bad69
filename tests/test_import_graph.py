"""No import circle in vmamba_mm: the modules form layers (config and datasets below engine, models
below config), read from the source with ``ast``, without importing anything.

An edge A -> B means that importing A runs B's module code first: ``import B``, ``from B import
name``, ``from B import submodule`` (an edge to the submodule), and the packages above B, whose
``__init__`` runs first. A package A is inside needs no edge (Python has started it before A), but
``from <that package> import name`` does: it needs the package's ``__init__`` to have got that far.
"""
import ast
import os
import os.path as osp

from tests.paths import ROOT

PACKAGE = 'vmamba_mm'
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def module_files(root=ROOT, package=PACKAGE):
    """{module name: file} for every module of the package (a package by its ``__init__.py``)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(osp.join(root, package)):
        dirnames[:] = sorted(d for d in dirnames if d != '__pycache__')
        parts = osp.relpath(dirpath, root).split(os.sep)
        for filename in sorted(filenames):
            if filename.endswith('.py'):
                stem = filename[:-len('.py')]
                name = '.'.join(parts if stem == '__init__' else parts + [stem])
                found[name] = osp.join(dirpath, filename)
    return found


def _imports(tree, with_functions):
    """The import statements of a module; at module level (class bodies and ``if``/``try``
    blocks run on import too) unless ``with_functions``."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, FUNCTIONS) and not with_functions:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def _ancestors(name):
    parts = name.split('.')
    return ['.'.join(parts[:end]) for end in range(1, len(parts))]


def _targets(module, is_package, node, modules):
    """(module imported, explicitly) for one import statement of ``module``."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, True
            for parent in _ancestors(alias.name):
                yield parent, False
        return
    if node.level:
        # Relative to the module's package: its own name for an __init__, else its parent's.
        base = module.split('.') if is_package else module.split('.')[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = '.'.join(base + ([node.module] if node.module else []))
    else:
        source = node.module
    submodules = [f'{source}.{alias.name}' for alias in node.names
                  if f'{source}.{alias.name}' in modules]
    for submodule in submodules:
        yield submodule, True
    # The names that are not submodules come from the package's (or module's) own code.
    yield source, len(submodules) < len(node.names)
    for parent in _ancestors(source):
        yield parent, False


def import_graph(with_functions=False, root=ROOT, package=PACKAGE):
    """{module: {imported module: 'file:line'}} over the package's own modules."""
    files = module_files(root, package)
    graph = {name: {} for name in files}
    for module, path in files.items():
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
        is_package = path.endswith('__init__.py')
        enclosing = set(_ancestors(module))
        for node in _imports(tree, with_functions):
            for target, explicit in _targets(module, is_package, node, files):
                if target not in files or target == module:
                    continue
                if target in enclosing and not explicit:
                    continue  # a package around this module: started before it
                graph[module].setdefault(target, f'{osp.relpath(path, root)}:{node.lineno}')
    return graph


def find_cycle(graph):
    """One import circle as [a, b, ..., a], or None."""
    state = {}  # module -> 'open' while on the DFS stack, 'done' after
    stack = []

    def visit(module):
        state[module] = 'open'
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 'open':
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = 'done'
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def describe(cycle, graph):
    return '\n'.join(f'  {a} -> {b}  ({graph[a][b]})' for a, b in zip(cycle, cycle[1:]))


def test_the_graph_is_read_from_the_package():
    graph = import_graph()
    assert f'{PACKAGE}.engine.runner' in graph
    # A relative import within a package, one from a parent package, and a package's __init__.
    assert f'{PACKAGE}.config.errors' in graph[f'{PACKAGE}.config.keys']
    assert f'{PACKAGE}.models' in graph[f'{PACKAGE}.config.model_checks']
    assert f'{PACKAGE}.config' in graph[f'{PACKAGE}.engine.runner']


def test_the_cycle_finder_finds_a_circle_through_a_package_init():
    # config/__init__ imports sections, which would take a name from config/__init__.
    graph = {'p': {'p.sections': 'p/__init__.py:1'}, 'p.sections': {'p': 'p/sections.py:3'}}
    assert find_cycle(graph) == ['p', 'p.sections', 'p']
    assert find_cycle({'a': {'b': 'a.py:1'}, 'b': {}}) is None


def test_no_import_circle_at_module_level():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, (f'import circle in {PACKAGE} (each line: importer -> imported, where):'
                           f'\n{describe(cycle, graph)}\nMove the shared names to a module both '
                           f'can import, in the package of the lower layer.')


def test_no_circle_hidden_in_a_function_level_import():
    # A function-level import of another vmamba_mm module is there for an optional dependency
    # (mmengine, a task package) or for import time, never to dodge a circle: with those
    # imports counted too the graph must still be acyclic.
    graph = import_graph(with_functions=True)
    cycle = find_cycle(graph)
    assert cycle is None, (f'a function-level import closes a circle in {PACKAGE}:\n'
                           f'{describe(cycle, graph)}\nPut the names where both sides can import '
                           f'them at module level.')


if __name__ == '__main__':
    for functions in (False, True):
        found = find_cycle(import_graph(with_functions=functions))
        print('with function-level imports' if functions else 'module level', '->', found)
