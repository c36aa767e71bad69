"""The data checks' table of dataset layouts: a new layout is one registered class, and the
checks run it without being edited."""
import pytest
from mmengine.config import Config

from vmamba_mm.datasets import check_datasets
from vmamba_mm.datasets.layouts import LAYOUTS, DatasetLayout, layout_of, register_layout


def test_the_four_layouts_are_in_the_table():
    assert {'folder', 'annotation list', 'coco', 'segmentation'} <= set(LAYOUTS)


@pytest.fixture
def toy_layout():
    """A layout for datasets of type 'ToyDataset' that records what it was asked to do."""
    calls = []

    class ToyLayout(DatasetLayout):
        name = 'toy'

        def matches(self, dataset_class, dataset_cfg):
            return dataset_cfg.get('type') == 'ToyDataset'

        def check(self, cfg, split, dataset_cfg, dataset_class, agreement):
            calls.append(('check', split))
            return ('a', 'b')

        def add_load_checks(self, pipelines, classes):
            calls.append(('add_load_checks', len(pipelines), classes))

    register_layout(ToyLayout)
    yield calls
    del LAYOUTS['toy']


def test_a_registered_layout_is_checked_and_its_pipeline_gets_the_empty_file_check(toy_layout):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    cfg = Config(dict(default_scope='mmengine', model=dict(),
                      train_dataloader=dict(dataset=dict(type='ToyDataset', pipeline=pipeline))))
    check_datasets(cfg, splits=('train_dataloader', ))
    assert toy_layout == [('check', 'train_dataloader'), ('add_load_checks', 1, ('a', 'b'))]
    assert [t['type'] for t in cfg.train_dataloader.dataset.pipeline] == [
        'RefuseEmptyFiles', 'LoadImageFromFile', 'PackInputs']


def test_a_dataset_no_layout_knows_is_not_checked():
    assert layout_of(None, dict(type='SomethingElse')) is None


def test_a_layout_name_is_registered_once(toy_layout):

    class Another(DatasetLayout):
        name = 'toy'

    with pytest.raises(ValueError, match="'toy' is registered twice"):
        register_layout(Another)


def test_two_layouts_matching_one_dataset_is_an_error(toy_layout):

    class Greedy(DatasetLayout):
        name = 'greedy'

        def matches(self, dataset_class, dataset_cfg):
            return True

    register_layout(Greedy)
    try:
        with pytest.raises(RuntimeError, match=r"matches the layouts \['toy', 'greedy'\]"):
            layout_of(None, dict(type='ToyDataset'))
    finally:
        del LAYOUTS['greedy']
