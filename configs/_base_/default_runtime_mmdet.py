# Runtime for the Mask R-CNN (mmdet) configs. The classification runtime,
# default_runtime.py, is scoped to mmpretrain; detection needs mmdet's
# registries, hooks and visualizer.
default_scope = 'mmdet'

# registers VSSM (and the rest of vmamba_mm) in the OpenMMLab registries
custom_imports = dict(imports=['vmamba_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # one checkpoint per epoch; 12-36 epochs of a 70-110M model add up, so
    # only the last 3 are kept (resume needs the latest one only).
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # draws predictions when tools/test.py --show-dir asks for it
    visualization=dict(type='DetVisualizationHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches this to gloo on machines without a GPU
    dist_cfg=dict(backend='nccl'),
)

# local files and TensorBoard (tensorboard --logdir work_dirs), as the
# classification runtime
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
