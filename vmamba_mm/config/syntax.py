"""``read_config``: ``Config.fromfile`` with a syntax error in the file or in one of its ``_base_``
files reported as ``path:line: syntax error: ...`` (mmengine reports ``File "<unknown>"``)."""
import ast
import os.path as osp

from .errors import ConfigError


def read_config(path):
    """``Config.fromfile(path)``, after checking the syntax of the file and its ``_base_`` files."""
    from mmengine.config import Config
    _check_syntax(path, chain=())
    return Config.fromfile(path)


def _check_syntax(path, chain):
    try:
        with open(path, encoding='utf-8') as f:
            source = f.read()
    except UnicodeDecodeError as exc:
        raise ConfigError(f'{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); a config '
                          f'is a Python file.') from exc
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise ConfigError(f'{path}:{exc.lineno}: syntax error: {exc.msg}') from exc
    except ValueError as exc:  # Python 3.11 says "source code string cannot contain null bytes"
        raise ConfigError(f'{path}: {exc}; a config is a Python text file.') from exc
    for base in _base_files(tree):
        if '::' in base or '{{' in base:
            continue  # a package's config, or a path mmengine substitutes: mmengine resolves it
        base_path = osp.normpath(osp.join(osp.dirname(path), base))
        if not osp.isfile(base_path):
            raise ConfigError(f'{path}: _base_ file not found: {base_path}')
        if base_path not in chain:  # mmengine itself names an inheritance cycle
            _check_syntax(base_path, chain + (path, ))


def _base_files(tree):
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == '_base_'):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []  # computed at run time; mmengine will say what is wrong with it
            values = [value] if isinstance(value, str) else value
            return [v for v in values if isinstance(v, str)] if isinstance(values,
                                                                           (list, tuple)) else []
    return []
