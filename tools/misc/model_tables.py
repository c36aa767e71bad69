#!/usr/bin/env python
"""The README's model tables, rendered from the metafiles that model-index.yml imports.

The README holds each table between marker comments::

    <!-- model-table:classification -->
    ...
    <!-- /model-table:classification -->

(and ``detection-segmentation``). Without options the tables are printed; ``--check README.md``
exits with 1 when a block differs from what the metafiles give; ``--write README.md`` replaces the
blocks in place.
"""
import argparse
import os.path as osp
import sys

import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLASSIFICATION = 'Image Classification'
DASH = '—'


class TableError(ValueError):
    """A metafile or README that the tables cannot be made from or written into."""


def read_models(index_path):
    """Every model of the index (the metafile dicts), in the order of the imports."""
    with open(index_path, encoding='utf-8') as f:
        index = yaml.safe_load(f)
    models = []
    for metafile in index.get('Import') or []:
        path = osp.join(osp.dirname(osp.abspath(index_path)), metafile)
        if not osp.isfile(path):
            raise TableError(f'{index_path} imports {metafile}, which does not exist ({path})')
        with open(path, encoding='utf-8') as f:
            models += yaml.safe_load(f)['Models']
    return models


def _count(value):
    return f'{value:,}' if value is not None else DASH


def _gflops(flops):
    return f'{flops / 1e9:g}' if flops is not None else DASH


def _metrics(model, *keys):
    """The first of each key found in the model's results, joined by ' / ', or a dash."""
    values = {}
    for result in model['Results']:
        values.update(result.get('Metrics') or {})
    shown = [str(values[key]) for key in keys if key in values]
    return ' / '.join(shown) if shown else DASH


def _source(model):
    """The released file the weights are converted from, and the local file they become."""
    converted = model.get('Converted From') or {}
    local = model['Weights'].split('://', 1)[-1]
    released = converted.get('Weights')
    if released:
        return f'[{released.rsplit("/", 1)[-1]}]({released}) → `{local}`'
    code = converted.get('Code')
    return f'[release]({code}) → `{local}`' if code else f'`{local}`'


def _row(cells):
    return '| ' + ' | '.join(cells) + ' |'


def classification_table(models):
    lines = [_row(['model name', 'config', 'params', 'GFLOPs (224²)', 'IN-1k top-1',
                   'weights: released file → converted file']),
             _row(['---'] * 6)]
    for model in models:
        if [r['Task'] for r in model['Results']] != [CLASSIFICATION]:
            continue
        meta = model.get('Metadata') or {}
        lines.append(_row([f'`{model["Name"]}`', f'[config]({model["Config"]})',
                           _count(meta.get('Parameters')), _gflops(meta.get('FLOPs')),
                           _metrics(model, 'Top 1 Accuracy'), _source(model)]))
    return '\n'.join(lines)


def dense_table(models):
    lines = [_row(['model name', 'config', 'task', 'params', 'GFLOPs (as released)',
                   'box / mask AP or mIoU SS / MS', 'weights: released file → converted file']),
             _row(['---'] * 7)]
    for model in models:
        tasks = [r['Task'] for r in model['Results']]
        if tasks == [CLASSIFICATION]:
            continue
        meta = model.get('Metadata') or {}
        datasets = sorted({r['Dataset'] for r in model['Results']})
        if 'Semantic Segmentation' in tasks:
            task, metrics = 'semantic segmentation', _metrics(model, 'mIoU', 'mIoU(ms+flip)')
        else:
            task, metrics = 'instance segmentation', _metrics(model, 'box AP', 'mask AP')
        lines.append(_row([f'`{model["Name"]}`', f'[config]({model["Config"]})',
                           f'{task} ({", ".join(datasets)})', _count(meta.get('Parameters')),
                           _gflops(meta.get('FLOPs')), metrics, _source(model)]))
    return '\n'.join(lines)


def render_tables(index_path):
    """{marker name: table markdown} from the index."""
    models = read_models(index_path)
    return {'classification': classification_table(models),
            'detection-segmentation': dense_table(models)}


def replace_blocks(text, tables, readme_name='README'):
    """text with the content of each marked block replaced by its table."""
    for name, table in tables.items():
        start, end = f'<!-- model-table:{name} -->', f'<!-- /model-table:{name} -->'
        if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
            raise TableError(f'{readme_name} needs one block {start} ... {end} for the {name} '
                             f'table')
        before, rest = text.split(start)
        after = rest.split(end)[1]
        text = f'{before}{start}\n{table}\n{end}{after}'
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Render the README model tables from the '
                                                 'metafiles.')
    parser.add_argument('--index', default=osp.join(ROOT, 'model-index.yml'),
                        help='the model index (default: the repository\'s model-index.yml)')
    action = parser.add_mutually_exclusive_group()
    action.add_argument('--check', metavar='README',
                        help='exit with 1 if the README\'s tables differ from the metafiles')
    action.add_argument('--write', metavar='README', help='replace the README\'s tables')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    readme = args.check or args.write
    try:
        if not osp.isfile(args.index):
            raise TableError(f'model index not found: {args.index}')
        tables = render_tables(args.index)
        if readme is None:
            print('\n\n'.join(tables.values()))
            return 0
        if not osp.isfile(readme):
            raise TableError(f'README not found: {readme}')
        with open(readme, encoding='utf-8') as f:
            text = f.read()
        updated = replace_blocks(text, tables, readme)
    except TableError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    if args.check:
        if updated != text:
            print(f'{readme}: the model tables differ from the metafiles; run python '
                  f'tools/misc/model_tables.py --write {readme}', file=sys.stderr)
            return 1
        print(f'{readme}: the model tables match the metafiles')
        return 0
    if updated != text:
        with open(readme, 'w', encoding='utf-8') as f:
            f.write(updated)
    print(f'{readme}: model tables {"written" if updated != text else "already up to date"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
