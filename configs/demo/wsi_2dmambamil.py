# The WSI demo: TwoDMambaMIL on synthetic slides whose label is the arrangement of one
# patch type (one connected region against the same number spread out). Data:
# tools/misc/generate_demo_data.py wsi data/demo_wsi (make demo TASK=wsi does it). Any two-class
# CLAM-layout data set works with --cfg-options {train,val,test}_dataloader.dataset.data_root=...
# (classes from labels.csv, the feature width from the files).
_base_ = [
    '../_base_/datasets/wsi_clam.py',
    '../_base_/schedules/adamw_cosine_wsi.py',
    '../_base_/default_runtime_demo.py',
]
default_scope = 'mmpretrain'
data_root = 'data/demo_wsi'
model = dict(type='MILClassifier', num_classes=2,
             aggregator=dict(type='TwoDMambaMIL', in_features=None, dropout=0.0))
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
# Faster than the release's recipe on this small task: Adam at a constant 1e-3.
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-3, weight_decay=1e-5))
param_scheduler = None
train_cfg = dict(by_epoch=True, max_epochs=4, val_interval=2)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=64),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
