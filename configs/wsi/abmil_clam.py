# ABMIL on CLAM-format feature bags; set data_root in ../_base_/datasets/wsi_clam.py (or
# --cfg-options {train,val,test}_dataloader.dataset.data_root=...) and model.num_classes.
_base_ = [
    '../_base_/datasets/wsi_clam.py',
    '../_base_/schedules/adamw_cosine_wsi.py',
    '../_base_/default_runtime.py',
]
default_scope = 'mmpretrain'
# in_features=None: the first layer takes the width of the slides' features
model = dict(type='MILClassifier', num_classes=2,
             aggregator=dict(type='ABMIL', in_features=None))
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1,
                    save_best='auto'),
    logger=dict(type='LoggerHook', interval=50),
    visualization=dict(type='VisualizationHook', enable=False))
