"""What keyword arguments a class or function takes, and what keys code reads from a dict.

A config dict goes to a constructor as keyword arguments, so its valid keys are the
constructor's parameters -- and, where the signature ends in ``**kwargs``, the parameters of
wherever those go: a parent class's __init__ (found in the source, ``super().__init__(...,
**kwargs)``), or, for the few classes that keep them and pass them on later, the function they
reach (``KWARGS_DESTINATIONS``). A ``**kwargs`` that cannot be followed accepts anything, so that
nothing valid is ever refused. mmengine also reads some dicts key by key (``env_cfg.get(...)``);
``keys_read_by`` finds those keys in its source, so they follow the installed version.
"""
import ast
import dataclasses
import functools
import inspect
import textwrap


@dataclasses.dataclass(frozen=True)
class Accepted:
    """The keys a component reads; ``anything`` when a **kwargs goes where it cannot be followed."""
    names: frozenset = frozenset()
    anything: bool = False

    def __or__(self, other):
        return Accepted(self.names | other.names, self.anything or other.anything)

    def __sub__(self, names):
        return Accepted(self.names - set(names), self.anything)


def _source_tree(obj):
    """The AST of a function's or class's source, or None when there is no source to read."""
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(obj))))
    except (OSError, TypeError, SyntaxError):
        return None


def _spells(node, variable):
    """Whether an expression is ``variable`` (a name, or a dotted name such as self.args)."""
    if isinstance(node, ast.Name):
        return node.id == variable
    if isinstance(node, ast.Attribute) and '.' in variable:
        owner, attr = variable.rsplit('.', 1)
        return node.attr == attr and _spells(node.value, owner)
    return False


def _keys_read(tree, variable):
    """String keys a piece of code reads from the dict ``variable``: .get/.pop/.setdefault(k),
    variable[k] and ``k in variable``."""
    keys = set()
    for node in ast.walk(tree):
        literal = None
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ('get', 'pop', 'setdefault')
                and _spells(node.func.value, variable) and node.args):
            literal = node.args[0]
        elif isinstance(node, ast.Subscript) and _spells(node.value, variable):
            literal = node.slice
        elif (isinstance(node, ast.Compare) and len(node.ops) == 1
              and isinstance(node.ops[0], (ast.In, ast.NotIn))
              and _spells(node.comparators[0], variable)):
            literal = node.left
        if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
            keys.add(literal.value)
    return keys


@functools.lru_cache(maxsize=None)
def keys_read_by(function, variable):
    """The string keys ``function`` (or a class's methods) reads from the dict ``variable``."""
    tree = _source_tree(function)
    return frozenset(_keys_read(tree, variable)) if tree else frozenset()


def _spreads(call, variable):
    return any(kw.arg is None and _spells(kw.value, variable) for kw in call.keywords)


@functools.lru_cache(maxsize=None)
def _kwargs_use(init, variable):
    """How an __init__ uses its **kwargs: (passes them to a parent __init__, keys it reads)."""
    tree = _source_tree(init)
    if tree is None:
        return None
    to_parent = any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == '__init__' and _spreads(node, variable) for node in ast.walk(tree))
    return to_parent, frozenset(_keys_read(tree, variable))


def _parameters(function, skip=0):
    """(named parameters after the first ``skip``, name of the **kwargs or None)."""
    params = list(inspect.signature(function).parameters.values())[skip:]
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_kw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
    return named, var_kw


def arguments_left(function, owner, variable):
    """Parameters of ``function`` that ``owner``'s call spreading ``**variable`` leaves open.

    For a class that stores its **kwargs and spreads them into a call later: what the kwargs
    may still name is the callee's parameters minus those the call fills itself.
    """
    tree = _source_tree(owner)
    params = [p for p in inspect.signature(function).parameters.values() if p.name != 'self']
    taken = set()
    for node in ast.walk(tree) if tree else ():
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == function.__name__ and _spreads(node, variable)):
            taken |= {p.name for p in params[:len(node.args)]}
            taken |= {kw.arg for kw in node.keywords if kw.arg}
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return Accepted(frozenset(named - taken))


def class_arguments(cls, cfg=None, resolve=None):
    """The keyword arguments a class's constructor takes, following **kwargs up the MRO.

    A **kwargs passed on to a parent's __init__ adds the parent's arguments. One that goes
    elsewhere adds what its destination takes where that is known (``KWARGS_DESTINATIONS``); any
    other makes the class accept anything, since nothing can be checked.
    """
    names = set()
    for klass in cls.__mro__:
        init = vars(klass).get('__init__')
        if init is None:
            continue
        if klass is object:
            break
        try:
            named, var_kw = _parameters(init, skip=1)
        except (TypeError, ValueError):  # a constructor implemented in C
            return Accepted(frozenset(names), anything=True)
        names |= named
        if var_kw is None:
            break
        use = _kwargs_use(init, var_kw)
        if use is None:
            return Accepted(frozenset(names), anything=True)
        to_parent, keys = use
        names |= keys
        if to_parent:
            continue
        destination = KWARGS_DESTINATIONS.get(f'{klass.__module__}.{klass.__qualname__}')
        if destination is None:
            return Accepted(frozenset(names), anything=True)
        return Accepted(frozenset(names)) | destination(cfg or {}, resolve)
    return Accepted(frozenset(names))


def function_arguments(function, skip=0):
    try:
        named, var_kw = _parameters(function, skip)
    except (TypeError, ValueError):  # no signature to read (a builtin)
        return Accepted(anything=True)
    return Accepted(frozenset(named), anything=var_kw is not None)


def callable_arguments(target, cfg=None, resolve=None, skip=0):
    if inspect.isclass(target):
        return class_arguments(target, cfg, resolve)
    return function_arguments(target, skip)


def _to_save_checkpoint(cfg, resolve):
    # CheckpointHook keeps its extras and spreads them into every Runner.save_checkpoint call.
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import Runner
    return arguments_left(Runner.save_checkpoint, CheckpointHook, 'self.args')


def _to_ema_model(cfg, resolve):
    # EMAHook builds dict(type=ema_type, **kwargs) from MODELS, giving it the model.
    from mmengine.hooks import EMAHook
    ema_type = cfg.get('ema_type', inspect.signature(EMAHook).parameters['ema_type'].default)
    model_cls = resolve('MODELS', ema_type, 'ema_type') if resolve else None
    if model_cls is None:
        return Accepted(anything=True)
    return class_arguments(model_cls) - {'model'}


def _to_visualize_cls(cfg, resolve):
    # mmpretrain's VisualizationHook spreads its extras into UniversalVisualizer.visualize_cls.
    from mmpretrain.engine.hooks import VisualizationHook
    from mmpretrain.visualization import UniversalVisualizer
    return arguments_left(UniversalVisualizer.visualize_cls, VisualizationHook, 'self.draw_args')


def _nothing_more(cfg, resolve):
    return Accepted()


# Classes whose __init__ sends **kwargs somewhere other than a parent __init__.
KWARGS_DESTINATIONS = {
    'mmengine.hooks.checkpoint_hook.CheckpointHook': _to_save_checkpoint,
    'mmengine.hooks.ema_hook.EMAHook': _to_ema_model,
    'mmpretrain.engine.hooks.visualization_hook.VisualizationHook': _to_visualize_cls,
    # nn.Module takes **kwargs only to refuse unexpected ones.
    'torch.nn.modules.module.Module': _nothing_more,
}
