"""RawAndEMAValLoop: the trained weights and their EMA are both evaluated, each on its own."""
import pytest

from tests.paths import DEMO_CLASSIFICATION as DEMO
from tests.tool_runs import generate_demo_data


@pytest.fixture(scope='module')
def unbalanced_data(tmp_path_factory):
    root = generate_demo_data('cls', tmp_path_factory.mktemp('ema_data'), '--train-per-class', '4',
                              '--val-per-class', '4')
    # 1 circle and 4 of each other class: a constant prediction scores 1/13 or 4/13.
    for image in sorted((root / 'val' / 'circle').iterdir())[1:]:
        image.unlink()
    return root


def predict_always(classifier, label):
    import torch
    with torch.no_grad():
        classifier.head.fc.weight.zero_()
        classifier.head.fc.bias.zero_()
        classifier.head.fc.bias[label] = 1.0


def demo_config_on(data_root, work_dir):
    """The classification demo's config on data_root, in one process, with a local log only."""
    import vmamba_mm  # noqa: F401
    from mmengine.config import Config

    cfg = Config.fromfile(DEMO)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(data_root)
        cfg[f'{split}_dataloader'].num_workers = 0
        cfg[f'{split}_dataloader'].persistent_workers = False
    cfg.work_dir = str(work_dir)
    cfg.val_cfg = dict(type='RawAndEMAValLoop')
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    return cfg


def test_raw_and_ema_weights_are_each_evaluated(unbalanced_data, tmp_path):
    from mmengine.runner import Runner

    cfg = demo_config_on(unbalanced_data, tmp_path)
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=10)
    cfg.custom_hooks = [dict(type='EMAHook', momentum=1e-4)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert type(runner.val_loop).__name__ == 'RawAndEMAValLoop'

    ema_hook = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
    predict_always(runner.model, 0)  # the weights being trained: always 'circle'
    predict_always(ema_hook.ema_model.module, 1)  # their average: always 'square'
    metrics = runner.val_loop.run()
    assert metrics['raw/accuracy/top1'] == pytest.approx(100 * 1 / 13, abs=1e-4)
    assert metrics['accuracy/top1'] == pytest.approx(100 * 4 / 13, abs=1e-4)
    # After validation the trained weights are back in the model.
    assert runner.model.head.fc.bias[0] == 1.0 and ema_hook.ema_model.module.head.fc.bias[1] == 1


def test_without_ema_it_is_a_plain_val_loop(unbalanced_data, tmp_path):
    from mmengine.runner import Runner

    cfg = demo_config_on(unbalanced_data, tmp_path)
    runner = Runner.from_cfg(cfg)
    predict_always(runner.model, 2)
    metrics = runner.val()
    assert metrics == {'accuracy/top1': pytest.approx(100 * 4 / 13, abs=1e-4)}
