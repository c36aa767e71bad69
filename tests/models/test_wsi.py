"""Whole-slide classification: WSIFeatureDataset on generated CLAM-layout files (h5 and pt), its
named errors, the MIL aggregators on ragged bags, the 2D Mamba layer's scan against the reference
backend of selective_scan_2d."""
import csv
import os.path as osp

import numpy as np
import pytest
import torch

h5py = pytest.importorskip('h5py')
pytest.importorskip('mmpretrain')

from vmamba_mm.datasets.errors import DataError  # noqa: E402
from vmamba_mm.datasets.wsi import WSIFeatureDataset  # noqa: E402
from vmamba_mm.models.mil.classifier import MILClassifier  # noqa: E402
from vmamba_mm.models.mil.mamba_layer import MambaLayer  # noqa: E402

PATCH = 256
WIDTH = 6
# (row, col) cells of each slide: holes, odd and non-square extents; corners offset per slide.
SLIDES = {
    'a': dict(cells=[(0, 0), (0, 2), (1, 1), (2, 0), (2, 2), (4, 1)], offset=(1000, 37),
              label='tumour', kind='h5'),
    'b': dict(cells=[(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 4), (2, 4)], offset=(5, 999),
              label='normal', kind='pt'),
    'c': dict(cells=[(3, 1)], offset=(0, 0), label='normal', kind='h5'),
}


def write_slide(folder, slide_id, cells, offset, kind, width=WIDTH, patch_size=PATCH):
    rows, cols = np.array(cells).T
    coords = np.stack([offset[0] + cols * patch_size, offset[1] + rows * patch_size], 1)
    features = np.random.default_rng(len(cells)).normal(size=(len(cells), width))
    if kind == 'h5':
        with h5py.File(osp.join(folder, f'{slide_id}.h5'), 'w') as handle:
            handle['features'] = features.astype(np.float32)
            handle['coords'] = coords
            handle['coords'].attrs['patch_size'] = patch_size
            handle['coords'].attrs['patch_level'] = 0
    else:
        torch.save({'features': torch.tensor(features), 'coords': torch.tensor(coords),
                    'patch_size': patch_size}, osp.join(folder, f'{slide_id}.pt'))
    return features


def write_root(root, slides=SLIDES, splits=(('a', 'b'), ('c', ), ('a', 'c'))):
    features_dir = root / 'features'
    features_dir.mkdir(parents=True)
    (root / 'splits').mkdir()
    stored = {sid: write_slide(str(features_dir), sid, s['cells'], s['offset'], s['kind'])
              for sid, s in slides.items()}
    with open(root / 'labels.csv', 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(['slide_id', 'label'])
        writer.writerows([sid, s['label']] for sid, s in slides.items())
    train, val, test = splits
    length = max(map(len, splits))
    with open(root / 'splits' / 'splits_0.csv', 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(['', 'train', 'val', 'test'])
        for index in range(length):
            writer.writerow([index] + [column[index] if index < len(column) else ''
                                       for column in (train, val, test)])
    return stored


def test_dataset_reads_h5_and_pt_bags_onto_their_own_grids(tmp_path):
    stored = write_root(tmp_path)
    train = WSIFeatureDataset(data_root=str(tmp_path), split='train')
    assert train.metainfo['classes'] == ('normal', 'tumour')
    assert train.metainfo['feature_dim'] == WIDTH
    assert len(train) == 2
    for index, slide_id in enumerate(('a', 'b')):
        item = train[index]
        assert item['data_samples'].metainfo['slide_id'] == slide_id
        assert item['data_samples'].gt_label.tolist() == [('normal', 'tumour').index(
            SLIDES[slide_id]['label'])]
        assert item['inputs']['positions'].tolist() == [list(c) for c in SLIDES[slide_id]['cells']]
        assert torch.allclose(item['inputs']['features'],
                              torch.tensor(stored[slide_id], dtype=torch.float32))
    # the val column is shorter than the others: its padding is not a slide
    assert [e['slide_id'] for e in WSIFeatureDataset(data_root=str(tmp_path), split='val')
            .data_list] == ['c']
    # a grid relative to the slide's own minimum: one patch at (3, 1) becomes the cell (0, 0)
    test = WSIFeatureDataset(data_root=str(tmp_path), split='test', classes=('tumour', 'normal'))
    assert test[1]['inputs']['positions'].tolist() == [[0, 0]]
    assert test[1]['data_samples'].gt_label.tolist() == [1]


def test_dataset_patch_size_in_the_config_wins(tmp_path):
    write_root(tmp_path)
    half = WSIFeatureDataset(data_root=str(tmp_path), split='train', patch_size=PATCH // 2)
    assert half[0]['inputs']['positions'].tolist() == [[2 * r, 2 * c]
                                                        for r, c in SLIDES['a']['cells']]


def _move_one_patch_off_the_grid(path):
    with h5py.File(path, 'a') as handle:
        coords = handle['coords'][...]
        coords[2, 0] += PATCH // 3
        handle['coords'][...] = coords  # in place: keeps the patch_size attribute


def _drop_patch_size(path):
    with h5py.File(path, 'a') as handle:
        del handle['coords'].attrs['patch_size']


@pytest.mark.parametrize('breakage, named', [
    (lambda root: (root / 'labels.csv').unlink(), 'label file not found'),
    (lambda root: (root / 'splits' / 'splits_0.csv').unlink(), 'split file of fold 0 not found'),
    (lambda root: (root / 'features' / 'b.pt').unlink(), "slide 'b' of the train split"),
    (lambda root: (root / 'labels.csv').write_text('slide_id,label\na,tumour\nc,normal\n'),
     "slide 'b' of the train split of"),
    (lambda root: (root / 'labels.csv').write_text('slide_id,label\na,tumour\nb,other\nc,normal\n'),
     "label 'other', which is not one of the classes"),
    (lambda root: _move_one_patch_off_the_grid(str(root / 'features' / 'a.h5')),
     'not on the patch grid of patch_size 256, e.g. patch 2'),
    (lambda root: _drop_patch_size(str(root / 'features' / 'a.h5')),
     'a.h5 does not say its patch size'),
])
def test_dataset_names_each_bad_input(tmp_path, breakage, named):
    write_root(tmp_path)
    breakage(tmp_path)
    with pytest.raises(DataError, match=named.replace('(', r'\(')):
        # the classes given: by default any label in labels.csv is a class
        dataset = WSIFeatureDataset(data_root=str(tmp_path), split='train',
                                    classes=('normal', 'tumour'))
        dataset[0]
        dataset[1]


def test_dataset_names_missing_folders_and_other_feature_widths(tmp_path):
    with pytest.raises(DataError, match='WSI data_root not found'):
        WSIFeatureDataset(data_root=str(tmp_path / 'nowhere'))
    write_root(tmp_path)
    with pytest.raises(DataError, match='a.h5 has 6-d features but the dataset expects 8'):
        WSIFeatureDataset(data_root=str(tmp_path), feature_dim=8).check_feature_widths()
    dataset = WSIFeatureDataset(data_root=str(tmp_path), split='train')
    model = MILClassifier(dict(type='ABMIL', in_features=8), num_classes=2)
    item = dataset[0]
    with pytest.raises(DataError, match='a.h5 has 6-d features but the model takes 8-d'):
        model(dict(features=[item['inputs']['features']],
                   positions=[item['inputs']['positions']]), [item['data_samples']], 'loss')


def _ragged_bags():
    generator = torch.Generator().manual_seed(0)
    bags = []
    for count, (height, width) in ((1, (1, 1)), (7, (3, 5)), (20, (6, 4))):
        cells = torch.randperm(height * width, generator=generator)[:count]
        positions = torch.stack([cells // width, cells % width], 1)
        bags.append((torch.randn(count, WIDTH, generator=generator), positions))
    return bags


@pytest.mark.parametrize('aggregator', ['ABMIL', 'MambaMIL', 'TwoDMambaMIL'])
def test_aggregators_train_on_ragged_bags_and_return_attention(aggregator):
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    model = MILClassifier(dict(type=aggregator, dropout=0.0), num_classes=3)
    bags = _ragged_bags()
    samples = [DataSample().set_gt_label(label) for label in (0, 2, 1)]
    inputs = dict(features=[f for f, _ in bags], positions=[p for _, p in bags])
    loss = model(inputs, samples, mode='loss')['loss']
    loss.backward()
    assert model.aggregator.in_features == WIDTH  # the lazy first layer took the data's width
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    predicted = model(inputs, [DataSample() for _ in bags], mode='predict')
    for sample, (features, _) in zip(predicted, bags):
        assert sample.pred_score.shape == (3, )
        assert sample.attention.shape == (features.shape[0], )
        assert torch.allclose(sample.attention.sum(), torch.tensor(1.0))


def test_two_d_layer_scan_matches_the_reference_backend():
    torch.manual_seed(0)
    layer = MambaLayer(16, d_state=16, grid=True).double()
    tokens = torch.randn(5 * 7, 16, dtype=torch.float64)
    out, scanned = layer(tokens, 5, 7)
    layer.backend = 'reference'
    out_reference, scanned_reference = layer(tokens, 5, 7)
    assert torch.allclose(scanned, scanned_reference, atol=1e-4)
    assert torch.allclose(out, out_reference, atol=1e-4)


def test_two_d_mambamil_sees_the_arrangement_raster_order_does_not_permute():
    """The 2D model's output depends on where the patches lie, not on their order in the file."""
    torch.manual_seed(0)
    model = MILClassifier(dict(type='TwoDMambaMIL', dropout=0.0), num_classes=2).eval()
    features, positions = _ragged_bags()[2]
    order = torch.randperm(features.shape[0])
    logits = model.slide_logits(features, positions)[0]
    shuffled = model.slide_logits(features[order], positions[order])[0]
    moved = model.slide_logits(features, positions.flip(1))[0]
    assert torch.allclose(logits, shuffled, atol=1e-5)
    assert not torch.allclose(logits, moved, atol=1e-5)


def test_slide_metrics_against_hand_computed_values():
    from vmamba_mm.engine.slide_metrics import SlideMetrics
    from mmpretrain.structures import DataSample
    positive_scores = [0.1, 0.6, 0.4, 0.8, 0.8]
    labels = [0, 0, 1, 1, 1]
    metric = SlideMetrics()
    metric.process(None, [DataSample().set_gt_label(label).set_pred_score(
        torch.tensor([1 - score, score])) for score, label in zip(positive_scores, labels)])
    results = metric.compute_metrics(metric.results)
    # predicted 0 1 0 1 1: recalls 1/2 and 2/3; F1 2*1/(2+2) and 2*2/(3+3); AUC: 5 of the 6
    # (positive, negative) pairs ordered right (0.4 < 0.6 is the one wrong)
    assert results['balanced_accuracy'] == pytest.approx(100 * 7 / 12)
    assert results['macro_f1'] == pytest.approx(100 * 7 / 12)
    assert results['auc'] == pytest.approx(100 * 5 / 6)
    three = SlideMetrics()
    three.process(None, [DataSample().set_gt_label(c).set_pred_score(torch.eye(3)[c])
                         for c in (0, 1, 2, 2)])
    assert three.compute_metrics(three.results) == dict(balanced_accuracy=100.0, macro_f1=100.0,
                                                        auc=100.0)


def _wsi_config(root, **model):
    from mmengine.config import Config
    dataset = dict(type='WSIFeatureDataset', data_root=str(root))
    return Config(dict(
        default_scope='mmpretrain',
        model=dict(type='MILClassifier', aggregator=dict(type='TwoDMambaMIL', **model),
                   num_classes=2),
        train_dataloader=dict(dataset=dict(dataset, split='train')),
        val_dataloader=dict(dataset=dict(dataset, split='val'))))


def test_pre_run_check_gives_the_model_the_data_width_and_names_mismatches(tmp_path):
    from vmamba_mm.datasets import check_datasets
    from vmamba_mm.registry import register_all_modules
    register_all_modules()
    write_root(tmp_path)
    cfg = _wsi_config(tmp_path, in_features=None)
    check_datasets(cfg)
    assert cfg.model.aggregator.in_features == WIDTH
    with pytest.raises(DataError, match='in_features is 1024 but the slides of .* have 6-d'):
        check_datasets(_wsi_config(tmp_path, in_features=1024))
    with pytest.raises(ValueError, match='in_features is None and no slide has been seen'):
        MILClassifier(dict(type='ABMIL'), num_classes=2).init_weights()
    three = _wsi_config(tmp_path)
    three.model.num_classes = 3
    with pytest.raises(DataError, match='model.num_classes is 3 but .* has 2 classes'):
        check_datasets(three)


def test_demo_slides_differ_only_in_the_arrangement_of_the_marked_patches(tmp_path):
    from tests.tool_runs import load_script
    generator = load_script('tools/misc/generate_demo_data.py', 'generate_demo_data')
    assert generator.main(['wsi', str(tmp_path), '--slides', '10', '--size', '16']) == 0
    dataset = WSIFeatureDataset(data_root=str(tmp_path), split='train')
    assert dataset.metainfo['classes'] == ('clustered', 'scattered')
    assert len(dataset) == 8  # 10 slides: one for val, one for test
    for index in range(len(dataset)):
        item = dataset[index]
        features, positions = item['inputs']['features'], item['inputs']['positions']
        label = dataset.metainfo['classes'][int(item['data_samples'].gt_label)]
        # Two patches of one prototype lie about 0.5 * sqrt(2 d) = 4 apart, of two prototypes
        # about sqrt(2 d) * sqrt(1 + 0.25) = 9: the marked type is the smallest group. Its
        # centre, from the patches surely in it, is about 0.5 * sqrt(d) = 2.8 from each member.
        sizes = (torch.cdist(features, features) < 6.5).sum(1)
        centre = features[sizes == sizes.min()].mean(0, keepdim=True)
        marked = positions[torch.cdist(features, centre)[:, 0] < 5.0]
        assert len(marked) == generator.WSI_MARKED
        touching = (torch.cdist(marked.float(), marked.float()) <= 1.0).sum() - len(marked)
        if label == 'clustered':
            assert touching >= 2 * (len(marked) - 1)  # a connected region: at least a path
        else:
            assert touching == 0


def _fit_and_score(aggregator, train, test, epochs, lr):
    """Train a MILClassifier slide by slide (Adam, as the demo configs) on the loaded ``train``
    items and return its accuracy on the ``test`` items."""
    torch.manual_seed(0)
    model = MILClassifier(dict(type=aggregator, in_features=WSI_DEMO_WIDTH, dropout=0.0),
                          num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for index in torch.randperm(len(train)).tolist():
            item = train[index]
            inputs = {key: [value] for key, value in item['inputs'].items()}
            loss = model(inputs, [item['data_samples']], mode='loss')['loss']
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        correct = sum(int(model.slide_logits(**item['inputs'])[0].argmax()) ==
                      int(item['data_samples'].gt_label) for item in test)
    return correct / len(test)


WSI_DEMO_WIDTH = 32  # generate_demo_data's feature width


@pytest.fixture
def one_thread():
    # one slide per step: the ops are small, and more threads only contend with the other tests
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_on_the_arrangement_demo_2dmambamil_learns_and_abmil_stays_at_chance(tmp_path,
                                                                             one_thread):
    from tests.tool_runs import load_script
    generator = load_script('tools/misc/generate_demo_data.py', 'generate_demo_data')
    generator.main(['wsi', str(tmp_path), '--slides', '60', '--size', '16'])
    splits = {split: WSIFeatureDataset(data_root=str(tmp_path), split=split)
              for split in ('train', 'val', 'test')}
    assert splits['train'].metainfo['feature_dim'] == WSI_DEMO_WIDTH
    # read once: both models train on the same loaded slides
    train = [splits['train'][index] for index in range(len(splits['train']))]
    # the val and test columns together: 12 slides never trained on
    held_out = [dataset[index] for dataset in (splits['val'], splits['test'])
                for index in range(len(dataset))]
    assert len(held_out) == 12
    # One epoch at 3x the demo's lr: the 2D model has made its jump from chance by the end of
    # the 48 slides (6/12 after 32, 12/12 after 48; 11/12 at lr 2e-3), while ABMIL, which
    # cannot see the arrangement, stays at 6/12 throughout.
    assert _fit_and_score('TwoDMambaMIL', train, held_out, epochs=1, lr=3e-3) >= 11 / 12
    assert _fit_and_score('ABMIL', train, held_out, epochs=1, lr=3e-3) <= 9 / 12


def test_heatmap_tool_paints_a_slide(tmp_path, capsys):
    from tests.tool_runs import load_script
    from vmamba_mm.registry import register_all_modules
    register_all_modules()
    heatmap = load_script('tools/wsi/heatmap.py', 'wsi_heatmap')
    write_root(tmp_path / 'data')
    torch.manual_seed(0)
    model = MILClassifier(dict(type='TwoDMambaMIL', in_features=WIDTH), num_classes=2)
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    out = tmp_path / 'a.png'
    argv = ['configs/wsi/2dmambamil_clam.py', str(checkpoint), 'a', '--out', str(out),
            '--cfg-options', f'test_dataloader.dataset.data_root={tmp_path / "data"}']
    assert heatmap.main(argv) == 0
    from PIL import Image
    pixels = np.asarray(Image.open(out).convert('L'))
    assert pixels.std() > 10  # panels, colour bars and cells drawn, not a blank page
    argv[2] = 'missing'
    assert heatmap.main(argv) == 2
    assert "error: slide 'missing' has no features" in capsys.readouterr().err


@pytest.mark.slow  # about 10 s: two one-epoch runs through the Runner
def test_kfold_tool_writes_mean_and_std_over_folds(tmp_path):
    import json

    from tests.tool_runs import load_script
    from vmamba_mm.registry import register_all_modules
    register_all_modules()
    kfold = load_script('tools/wsi/kfold.py', 'wsi_kfold')
    generator = load_script('tools/misc/generate_demo_data.py', 'generate_demo_data')
    generator.main(['wsi', str(tmp_path / 'data'), '--slides', '10', '--size', '16'])
    options = [f'{split}_dataloader.{key}'
               for split in ('train', 'val', 'test')
               for key in (f'dataset.data_root={tmp_path / "data"}', 'num_workers=0',
                           'persistent_workers=False')]
    argv = ['configs/demo/wsi_abmil.py', '--folds', '2', '--work-dir', str(tmp_path / 'work'),
            '--cfg-options', 'train_cfg.max_epochs=1', 'default_hooks.checkpoint.interval=1',
            *options]
    assert kfold.main(argv) == 0
    result = json.loads((tmp_path / 'work' / 'kfold.json').read_text())
    accuracies = [fold['accuracy/top1'] for fold in result['folds']]
    assert len(accuracies) == 2
    assert result['summary']['accuracy/top1']['mean'] == pytest.approx(np.mean(accuracies))
    assert result['summary']['accuracy/top1']['std'] == pytest.approx(np.std(accuracies, ddof=1))
    assert '| accuracy | balanced accuracy | macro F1 | AUC |' in \
        (tmp_path / 'work' / 'kfold.md').read_text()


def test_the_aggregator_is_built_by_mmpretrains_models_so_a_registered_one_works_too():
    from mmpretrain.registry import MODELS

    from vmamba_mm.models.mil import ABMIL

    @MODELS.register_module(name='MeanPoolForTest', force=True)
    class MeanPool(torch.nn.Module):
        in_features, out_features = 4, 4

        def forward(self, features, positions=None):
            return features.mean(0), {}

    from mmengine.registry import DefaultScope

    # also while another package's scope is current (a process that ran mmseg or mmdet first)
    for scope in (None, 'mmseg'):
        with DefaultScope.overwrite_default_scope(scope):
            model = MILClassifier(dict(type='ABMIL', in_features=4), num_classes=2)
            assert isinstance(model.aggregator, ABMIL)
            assert isinstance(MILClassifier(dict(type='MeanPoolForTest'), 2).aggregator, MeanPool)
            with pytest.raises(KeyError, match="model.aggregator.type 'ABMLI' is not a model of "
                                               "mmpretrain's MODELS: use ABMIL, MambaMIL or "
                                               "TwoDMambaMIL"):
                MILClassifier(dict(type='ABMLI'), num_classes=2)
