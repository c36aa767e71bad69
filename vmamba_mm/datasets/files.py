"""Files a dataset lists that are empty (0 bytes): OpenCV refuses them without naming them."""
import os.path as osp

from .errors import DataError


def empty_files(paths):
    return [path for path in paths if osp.getsize(path) == 0]


def refuse_empty_files(split, kind, empty, total):
    if empty:
        raise DataError(f'{split}.dataset: {len(empty)} of the {total} {kind} files are empty '
                        f'(0 bytes), e.g. {empty[:3]}; replace them, or remove them and their '
                        f'annotations.')
