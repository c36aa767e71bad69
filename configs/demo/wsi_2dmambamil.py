# The WSI demo: TwoDMambaMIL on synthetic slides whose label is the arrangement of one
# patch type (one connected region against the same number spread out). Data:
# tools/misc/generate_demo_data.py wsi data/demo_wsi (make demo TASK=wsi does it). Any two-class
# CLAM-layout data set works with --cfg-options {train,val,test}_dataloader.dataset.data_root=...
# (classes from labels.csv, the feature width from the files).
_base_ = [
    '../_base_/datasets/wsi_clam.py',
    '../_base_/schedules/adamw_cosine_wsi.py',
    '../_base_/default_runtime.py',
]
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
# mmpretrain's runtime (../_base_/default_runtime.py: scope, hooks, visualizer) with the demos'
# fixed seed (../_base_/default_runtime_demo.py's), a log line every 64 slides and the last
# checkpoint kept.
randomness = dict(seed=0, deterministic=False)
default_hooks = dict(logger=dict(interval=64),
                     checkpoint=dict(interval=2, max_keep_ckpts=1, save_best=None))
