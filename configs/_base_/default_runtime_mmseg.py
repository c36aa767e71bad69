# Runtime for the UperNet (mmseg) configs. The classification runtime,
# default_runtime.py, is scoped to mmpretrain; segmentation needs mmseg's
# registries, hooks and visualizer, and counts iterations, not epochs.
default_scope = 'mmseg'

# registers VSSM (and the rest of vmamba_mm) in the OpenMMLab registries
custom_imports = dict(imports=['vmamba_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # every 16k of the 160k iterations, as the evaluation; keep the last 3
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=16000,
        max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # draws predictions when tools/test.py --show-dir asks for it
    visualization=dict(type='SegVisualizationHook'),
)

env_cfg = dict(
    cudnn_benchmark=True,  # fixed 512x512 crops in training
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches this to gloo on machines without a GPU
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
