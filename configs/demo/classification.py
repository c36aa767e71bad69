# The demo: a small VSSM learns to tell four procedurally drawn shapes apart, on a CPU, in minutes.
# Data: tools/misc/generate_demo_data.py cls data/demo_cls (make demo does it). Any folder dataset
# of the same layout works: --cfg-options train_dataloader.dataset.data_root=...
# val_dataloader.dataset.data_root=... test_dataloader.dataset.data_root=...
# model.head.num_classes=K
_base_ = [
    '../_base_/models/vmamba_demo.py',
    '../_base_/schedules/adamw_vmamba.py',
    '../_base_/default_runtime_demo.py',
]
default_scope = 'mmpretrain'

data_root = 'data/demo_cls'
num_classes = 4

model = dict(
    type='ImageClassifier',
    # the small VSSM of ../_base_/models/vmamba_demo.py
    backbone=dict(out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=256,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, )))

data_preprocessor = dict(num_classes=num_classes, mean=[127.5, 127.5, 127.5],
                         std=[127.5, 127.5, 127.5], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=32, num_workers=2, persistent_workers=True,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64, num_workers=2, persistent_workers=True,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=20,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=5)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=5),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

# tools/test.py --tta: each image and its mirror, class scores averaged.
tta_model = dict(type='AverageClsScoreTTA')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug',
         transforms=[[dict(type='RandomFlip', prob=0.), dict(type='RandomFlip', prob=1.)],
                     [dict(type='PackInputs')]]),
]
