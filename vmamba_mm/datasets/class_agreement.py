"""Every split must label the same classes in the same order as the training split."""
from typing import NamedTuple, Optional

from .errors import DataError


class SplitClasses(NamedTuple):
    """The classes one split labels, in label order, where they were read, and how to align them."""
    split: str
    names: tuple
    source: str
    fix: str


class ClassAgreement:
    """Holds the first split's classes (or the training split's) and compares every other split.

    Labels are class indices: a split whose classes differ, even only in order, is scored with
    the labels of another (a model trained on one folder set tested on another is permuted).
    """

    def __init__(self, reference: Optional[SplitClasses] = None):
        self.reference = reference

    def check(self, current: SplitClasses):
        reference = self.reference
        if reference is None:
            self.reference = current
            return
        if current.names == reference.names:
            return
        only_here = [n for n in current.names if n not in reference.names]
        only_there = [n for n in reference.names if n not in current.names]
        if only_here or only_there:
            detail = '; '.join(f'only in {split}: {names[:10]}' for split, names in (
                (current.split, only_here), (reference.split, only_there)) if names)
        else:
            detail = (f'the same classes in another order: {list(current.names)[:10]} against '
                      f'{list(reference.names)[:10]}')
        raise DataError(f'{current.split}.dataset ({current.source}) does not have the classes '
                        f'of {reference.split}.dataset ({reference.source}): {detail}. Labels '
                        f'are numbered by class, so the splits would disagree on what each '
                        f'label means; {current.fix}.')
