"""Config checks before anything trains: keys against what reads them, syntax errors with their
file and line, --cfg-options value types. Through load_config (what the tools call) and, for
the cases the issue reported, through tools/train.py itself."""
import argparse
import glob
import os

import pytest
from mmengine.config import DictAction

import vmamba_mm  # noqa: F401  (registers VSSM and the loops, as the tools do)
from vmamba_mm.config import ConfigError
from vmamba_mm.engine import load_config

from tests.paths import CONFIG_DIR, ROOT
from tests.paths import DEMO_CLASSIFICATION as DEMO, DEMO_DETECTION as DETECTION
from tests.paths import DEMO_SEGMENTATION as SEGMENTATION, DEMO_WSI as WSI
from tests.paths import IMAGENET_TINY as IMAGENET
from tests.tool_runs import run_python

SHIPPED = sorted(
    os.path.relpath(path, ROOT)
    for path in glob.glob(os.path.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if f'{os.sep}_base_{os.sep}' not in path)


def options(*pairs):
    """--cfg-options KEY=VALUE ... parsed as the tools parse them."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *pairs]).cfg_options


def test_the_shipped_configs_are_found():
    assert len(SHIPPED) == 48 and 'configs/demo/classification.py' in SHIPPED


@pytest.mark.parametrize('config', SHIPPED)
def test_every_shipped_config_passes(config):
    load_config(os.path.join(ROOT, config))


@pytest.mark.parametrize('config, option, nearest', [
    # CheckpointHook's **kwargs go to Runner.save_checkpoint, which takes none of these.
    (DEMO, 'default_hooks.checkpoint.max_keep_ckpt=3', 'max_keep_ckpts'),
    (DEMO, 'default_hooks.checkpoint.type=CheckpointHok', 'CheckpointHook'),
    # mmpretrain's VisualizationHook passes its extras to UniversalVisualizer.visualize_cls.
    (DEMO, 'default_hooks.visualization.draw_scor=False', 'draw_score'),
    # mmengine reads env_cfg with dict.get, so it refuses nothing itself.
    (DEMO, 'env_cfg.cudnn_benchmarkk=True', 'cudnn_benchmark'),
    (DEMO, 'env_cfg.mp_cfg.mp_start_methd=spawn', 'mp_start_method'),
    (DEMO, 'env_cfg.dist_cfg.timeot=1800', 'timeout'),
    (DEMO, 'optim_wrapper.accumulative_count=2', 'accumulative_counts'),
    (DEMO, 'optim_wrapper.optimizer.weight_decy=0.1', 'weight_decay'),
    (DEMO, 'optim_wrapper.paramwise_cfg.norm_decay_mul=0.', 'norm_decay_mult'),
    (DEMO, 'param_scheduler.0.start_factr=0.5', 'start_factor'),
    (DEMO, 'param_scheduler.1.convert_to_iter=True', 'convert_to_iter_based'),
    (DEMO, 'train_dataloader.num_worker=0', 'num_workers'),
    (DEMO, 'train_dataloader.sampler.shufle=False', 'shuffle'),
    # CustomDataset -> BaseDataset (mmpretrain) -> BaseDataset (mmengine) through **kwargs.
    (DEMO, 'train_dataloader.dataset.serialise_data=False', 'serialize_data'),
    (DEMO, 'train_cfg.max_epoch=3', 'max_epochs'),  # the by_epoch shorthand's loop
    (DEMO, 'val_cfg.fp17=True', 'fp16'),
    (DEMO, 'randomness.seeed=1', 'seed'),
    # mmpretrain EMAHook -> mmengine EMAHook -> ExponentialMovingAverage.
    (IMAGENET, 'custom_hooks.0.momentun=1e-4', 'momentum'),
    # Model parts: every dict whose type MODELS builds.
    (DEMO, 'model.backbone.drop_path_ratee=0.1', 'drop_path_rate'),  # VSSM.__init__'s TypeError
    (DEMO, 'model.head.num_clases=3', 'num_classes'),
    (DEMO, 'model.head.loss.loss_wieght=2.0', 'loss_weight'),
    (DEMO, 'model.backbone.arch.dimz=8', 'dims'),  # the arch dict's own keys
    (DETECTION, 'model.data_preprocessor.pad_size_divisr=32', 'pad_size_divisor'),
    (DETECTION, 'model.roi_head.bbox_roi_extractor.out_channel=256', 'out_channels'),
    (SEGMENTATION, 'model.decode_head.channel=8', 'channels'),
    # MILClassifier's aggregator: its classes are registered in MODELS, so the walk reads it
    (WSI, 'model.aggregator.dropuot=0.1', 'dropout'),
    (WSI, 'model.aggregator.d_stat=8', 'd_state'),
    (WSI, 'model.aggregator.type=TwoDMambaMl', 'TwoDMambaMIL'),
])
def test_a_misspelt_key_is_named_with_the_nearest_valid_one(config, option, nearest):
    with pytest.raises(ConfigError) as error:
        load_config(config, options(option))
    key = option.split('=')[0]
    assert str(error.value).startswith(f'{key}: '), error.value
    assert f"did you mean '{nearest}'?" in str(error.value), error.value


@pytest.mark.parametrize('option', [
    'default_hooks.checkpoint.save_optimizer=False',
    'default_hooks.visualization.draw_score=False',  # a visualize_cls argument
    'default_hooks.timer=None',  # removes a default hook
    'train_dataloader.pin_memory=True',  # a DataLoader argument
    'train_dataloader.dataset.serialize_data=False',  # mmengine BaseDataset's, via **kwargs
    'env_cfg.dist_cfg.timeout=1800',  # init_process_group's
    'env_cfg.resource_limit=8192',
    'optim_wrapper.optimizer.lr=1',  # an int where a float was
    'model.head.topk=1',  # one number where a tuple of numbers was
    'load_from=work_dirs/x.pth',  # anything where None was
    'model.backbone.arch.ssm_d_state=2',
    'param_scheduler.1.eta_min=0',  # a key inside a list item
])
def test_valid_overrides_pass(option):
    load_config(DEMO, options(option))


@pytest.mark.parametrize('option, words', [
    ('train_dataloader.batch_size=abc', ["train_dataloader.batch_size='abc'", 'an int', 'a str']),
    ('train_dataloader.batch_size=[1,2]', ['an int', 'a list']),
    ('train_cfg.max_epochs=True', ['an int', 'a bool']),
    ('train_dataloader.persistent_workers=3', ['a bool', 'True or False']),
    ('param_scheduler.0=5', ['param_scheduler.0', 'cannot replace a list item']),
    ('param_scheduler.7.begin=1', ["no '7' under param_scheduler"]),
    ('train_cfg.max_epochs.x=1', ['train_cfg.max_epochs is an int, 20; it has no keys']),
    ('model.backbone.out_indices.0=1', ['model.backbone.out_indices is a tuple']),
    ('env_cfg=None', ['env_cfg must be a dict']),
    ('randomness=None', ['randomness must be a dict']),
    ('default_scope=mmnothing', ["default_scope 'mmnothing' is not an installed"]),
    ('train_cfg=None train_cfg.max_epochs=1', ['sets both train_cfg and train_cfg.max_epochs']),
    ('default_hooks.logger.type=.LoggerHook', ['default_hooks.logger.type must be the name of']),
])
def test_overrides_of_the_wrong_kind_are_named(option, words):
    with pytest.raises(ConfigError) as error:
        load_config(DEMO, options(*option.split()))
    assert all(word in str(error.value) for word in words), error.value


def test_a_syntax_error_names_the_file_and_line(tmp_path):
    base = tmp_path / 'base.py'
    base.write_text('a = 1\nb = dict(x=(2,\nc = 3\n')
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['./base.py']\nx = 1\n")
    with pytest.raises(ConfigError, match=rf"^{base}:2: syntax error: '\(' was never closed"):
        load_config(str(child))
    child.write_text("_base_ = ['./base.py']\nx = = 1\n")
    with pytest.raises(ConfigError, match=rf'^{child}:2: syntax error: invalid syntax'):
        load_config(str(child))
    child.write_text("_base_ = ['./nowhere.py']\n")
    with pytest.raises(ConfigError, match=rf'_base_ file not found: {tmp_path}/nowhere.py'):
        load_config(str(child))


def run_train(*args):
    return run_python('tools/train.py', *args, timeout=300)


@pytest.mark.parametrize('option, message', [
    # The case: it used to fail after the first epoch had trained.
    ('default_hooks.checkpoint.max_keep_ckpt=3',
     "default_hooks.checkpoint.max_keep_ckpt: CheckpointHook has no setting 'max_keep_ckpt'; "
     "did you mean 'max_keep_ckpts'?"),
    # VSSM's TypeError used to come from the Runner, as a traceback.
    ('model.backbone.drop_path_ratee=0.1',
     "model.backbone.drop_path_ratee: VSSM has no setting 'drop_path_ratee'; did you mean "
     "'drop_path_rate'?"),
])
def test_the_tools_stop_before_training_in_one_line(tmp_path, option, message):
    work = tmp_path / 'work'
    result = run_train(DEMO, '--work-dir', str(work), '--cfg-options', option)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f'error: {message}'
    assert 'Traceback' not in result.stderr
    assert not work.exists()  # no Runner, so no log and no epoch


def test_a_config_syntax_error_is_named_by_the_tool(tmp_path):
    work = tmp_path / 'work'
    broken = tmp_path / 'broken.py'
    broken.write_text(f"_base_ = ['{DEMO}']\ntrain_cfg = dict(max_epochs=1\n")
    result = run_train(str(broken), '--work-dir', str(work))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: {broken}:2: syntax error: '(' was never closed"


@pytest.mark.parametrize('config, option', [
    # Not built by MODELS.build from their keys: layer specs, loop settings, task utilities.
    (SEGMENTATION, 'model.decode_head.norm_cfg.anything=1'),
    (DETECTION, 'model.train_cfg.rpn.anything=1'),
    (DETECTION, 'model.rpn_head.anchor_generator.anything=1'),
    (DETECTION, 'tta_model.tta_cfg.anything=1'),
    (DEMO, 'model.backbone.frozen_stages=4'),
    (DEMO, 'model.backbone.out_indices=-1'),
])
def test_model_settings_read_elsewhere_or_valid_pass(config, option):
    load_config(config, options(option))


@pytest.mark.parametrize('option, key, words', [
    ('model.backbone.arch.dims=-4', 'model.backbone.arch.dims', 'at least 1, got -4'),
    ('model.backbone.arch.depths=[1,1,2]', 'model.backbone.out_indices', 'stages 0..2'),
    ('model.backbone.arch.forward_type=v9', 'model.backbone.arch.forward_type', "'v9'"),
    ('model.backbone.arch.ssm_ratio=0.001', 'model.backbone.arch.ssm_ratio', 'no SSM channels'),
    ('model.backbone.out_indices=(0,4)', 'model.backbone.out_indices', 'stages 0..3'),
    ('model.backbone.frozen_stages=5', 'model.backbone.frozen_stages', '-1..4'),
    ('model.backbone.drop_path_rate=1.5', 'model.backbone.drop_path_rate', 'below 1.0'),
    ('model.backbone.in_channels=0', 'model.backbone.in_channels', 'positive int'),
])
def test_vssm_settings_are_checked_before_the_model_is_built(option, key, words):
    """VSSM.__init__'s own checks, run on the config and named by its key."""
    with pytest.raises(ConfigError) as error:
        load_config(DEMO, options(option))
    assert str(error.value).startswith(f'{key}: ') and words in str(error.value), error.value


@pytest.mark.parametrize('option, words', [
    ('train_dataloader.batch_size=0', 'must be an int >= 1'),
    ('val_dataloader.batch_size=-3', 'must be an int >= 1'),
    ('train_dataloader.num_workers=-1', 'must be an int >= 0'),
])
def test_dataloader_counts_out_of_range_are_named(option, words):
    key, value = option.split('=')
    with pytest.raises(ConfigError, match=rf'^{key}: {words} .*got {value}\.$'):
        load_config(DEMO, options(option))
