"""The table of dataset layouts the pre-run data checks know, and what a layout provides.

A layout is one way a task's datasets lay out their files (class folders, a COCO annotation file,
image and label-map folders). Each is a file in this package with a ``DatasetLayout`` subclass
decorated by ``register_layout``; ``layouts/__init__.py`` imports the files, one line each. The
checks (``datasets.checks.check_datasets``) know nothing of a layout beyond this interface.
"""
from typing import Dict, Optional

from ..class_agreement import ClassAgreement, SplitClasses

# name -> layout, in registration order.
LAYOUTS: Dict[str, 'DatasetLayout'] = {}


class DatasetLayout:
    """One dataset layout: which dataset configs have it and how their files are checked.

    A subclass sets ``name`` and implements ``matches`` and ``check``; ``training_classes`` and
    ``add_load_checks`` are optional.
    """

    name = ''

    def matches(self, dataset_class, dataset_cfg) -> bool:
        """Whether a dataset config (whose registered class is ``dataset_class``, None where the
        registry does not know its type) has this layout."""
        raise NotImplementedError(f'{type(self).__name__} must say which datasets it checks '
                                  f'(matches)')

    def check(self, cfg, split, dataset_cfg, dataset_class, agreement: ClassAgreement):
        """Check the files the dataset reads; raise DataError naming the first problem.

        ``agreement`` compares this split's classes with the other splits'. Returns the
        dataset's classes where it knows them (handed to ``add_load_checks``), else None.
        """
        raise NotImplementedError(f'{type(self).__name__} must check its datasets (check)')

    def training_classes(self, split, dataset_cfg, dataset_class) -> Optional[SplitClasses]:
        """The classes of a training dataset where they can be read without checking its data
        (a test-only run compares its split with them), else None."""
        return None

    def add_load_checks(self, pipelines, classes):
        """Insert the checks that run on each file as it loads into the dataset's pipelines
        (empty files are refused for every layout by ``check_datasets`` itself)."""


def register_layout(layout_class):
    """Class decorator: put an instance of a DatasetLayout subclass in the table, by its name."""
    name = layout_class.name
    if not name:
        raise ValueError(f'{layout_class.__name__} has no name; set name = "..." on the class.')
    if name in LAYOUTS:
        raise ValueError(f'dataset layout {name!r} is registered twice ({type(LAYOUTS[name])} '
                         f'and {layout_class}); give one of them another name.')
    LAYOUTS[name] = layout_class()
    return layout_class


def layout_of(dataset_class, dataset_cfg) -> Optional[DatasetLayout]:
    """The layout of a dataset config, or None when no layout knows it (it is not checked).

    A dataset has one layout: two that match are a mistake in their ``matches``.
    """
    found = [layout for layout in LAYOUTS.values() if layout.matches(dataset_class, dataset_cfg)]
    if len(found) > 1:
        raise RuntimeError(f'dataset type {dataset_cfg.get("type")!r} matches the layouts '
                           f'{[layout.name for layout in found]}; narrow their matches() so '
                           f'that one dataset has one layout.')
    return found[0] if found else None
