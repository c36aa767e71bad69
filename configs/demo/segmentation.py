# The segmentation demo: UperNet on a small VSSM labels every pixel of procedurally drawn scenes as
# background, circle, square or triangle, trained from scratch on a CPU in minutes.
# Data: tools/misc/generate_demo_data.py seg data/demo_seg (make demo TASK=seg does it). Any
# ADE20K-layout set works: --cfg-options train_dataloader.dataset.data_root=...
# val_dataloader.dataset.data_root=... test_dataloader.dataset.data_root=...
_base_ = [
    '../_base_/models/vmamba_demo.py',
    '../_base_/schedules/adamw_vmamba.py',
    '../_base_/default_runtime_demo.py',
]
default_scope = 'mmseg'

data_root = 'data/demo_seg'
# Label maps store class i as i + 1; 0 ('unlabelled' in ADE20K) is dropped by reduce_zero_label.
metainfo = dict(classes=('background', 'circle', 'square', 'triangle'),
                palette=[[40, 40, 40], [230, 25, 75], [60, 180, 75], [0, 130, 200]])
crop_size = (128, 128)
max_iters = 1500
# Nine pixels in ten are background: unweighted, a model from scratch sits for a long time on
# 'background everywhere' (the constant prediction's mIoU); weighting it down gets past that.
class_weight = [0.25, 1.0, 1.0, 1.0]
# BatchNorm, not SyncBN: the demo runs in one CPU process.
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[127.5, 127.5, 127.5],
                           std=[127.5, 127.5, 127.5], bgr_to_rgb=True, pad_val=0,
                           seg_pad_val=255, size=crop_size),
    # the small VSSM of ../_base_/models/vmamba_demo.py
    backbone=dict(out_indices=(0, 1, 2, 3)),
    decode_head=dict(
        type='UPerHead', in_channels=[32, 64, 128, 256], in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6), channels=64, dropout_ratio=0.1,
        num_classes=len(metainfo['classes']), norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         class_weight=class_weight)),
    auxiliary_head=dict(
        type='FCNHead', in_channels=128, in_index=2, channels=32, num_convs=1,
        concat_input=False, dropout_ratio=0.1, num_classes=len(metainfo['classes']),
        norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4,
                         class_weight=class_weight)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes with each sample from the dataset
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    # After Resize: predictions are scored against the label map at its stored size.
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
shared_dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
                      img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
# Four images a step: more updates learn faster here than bigger batches.
train_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(shared_dataset, data_prefix=dict(img_path='images/training',
                                                  seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(shared_dataset, data_prefix=dict(img_path='images/validation',
                                                  seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=1e-5, power=1.0, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # The final checkpoint is always work_dir/iter_<max_iters>.pth (save_last), whatever the
    # interval; make demo tests iter_1500.pth.
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)

# tools/test.py --tta (or tools/dist_test.sh ... --tta): each image at 0.75, 1.0 and 1.25 of the
# test size, each with and without a horizontal flip; SegTTAModel averages the six softmax maps.
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug',
         transforms=[
             [dict(type='Resize', scale=(round(crop_size[0] * r), round(crop_size[1] * r)),
                   keep_ratio=True) for r in (0.75, 1.0, 1.25)],
             [dict(type='RandomFlip', prob=0., direction='horizontal'),
              dict(type='RandomFlip', prob=1., direction='horizontal')],
             [dict(type='LoadAnnotations')],
             [dict(type='PackSegInputs')],
         ]),
]
