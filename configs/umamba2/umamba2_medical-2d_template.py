# U-Mamba2 for a 2D medical segmentation set of your own: nnU-Net's residual-encoder U-Net with one
# Mamba2 (SSD) layer on the bottleneck, trained with nnU-Net's recipe (SGD with Nesterov momentum
# 0.99, lr 1e-2, poly decay, Dice + cross-entropy, deep supervision), scored by Dice and IoU.
#
# The layout, under data_root (an image and its label map share a file stem; PNG or any format
# OpenCV reads; grey images are read as three equal channels):
#   images/train/case_001.png   labels/train/case_001.png   (label: the class index of each pixel,
#   images/val/case_101.png     labels/val/case_101.png      0 .. K-1, 255 = unlabelled)
#
#   python tools/train.py configs/umamba2/umamba2_medical-2d_template.py
#   python tools/test.py configs/umamba2/umamba2_medical-2d_template.py work_dirs/.../iter_N.pth
#
# The one line to edit is data_root; a set with more than two classes also names them in classes.
_base_ = ['../_base_/default_runtime_mmseg.py']

data_root = 'data/my_2d_set'  # <-- EDIT: the folder that holds images/ and labels/
classes = ('background', 'foreground')  # class i is pixel value i in the label maps
num_classes = len(classes)
metainfo = dict(classes=classes)

crop_size = (512, 512)
# nnU-Net's 2D network stops widening at 320 channels in this template (the release's 3D cap) so
# that the release's headdim of 80 divides the bottleneck's 2 x 320 inner channels into 8 heads.
stage_channels = (32, 64, 128, 256, 320, 320)
model = dict(
    type='PromptedEncoderDecoder',
    # Images of any size: each is padded to a multiple of the encoder's total stride (2 ** 5), a
    # training batch to its largest image; predictions are cropped back.
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[127.5, 127.5, 127.5],
                           std=[127.5, 127.5, 127.5], bgr_to_rgb=True, pad_val=0,
                           seg_pad_val=255, size_divisor=32, test_cfg=dict(size_divisor=32)),
    backbone=dict(
        type='UMamba2', in_channels=3, stage_channels=stage_channels,
        blocks_per_stage=(1, 3, 4, 6, 6, 6),
        mamba=dict(d_state=32, d_conv=4, expand=2, headdim=80, chunk_size=256)),
    decode_head=dict(
        type='UMamba2Head', in_channels=stage_channels, num_classes=num_classes,
        deep_supervision=True, align_corners=False,
        loss_decode=[dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                     dict(type='SoftDiceLoss', loss_weight=1.0)]),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomRotate', prob=0.2, degree=30, pad_val=0, seg_pad_val=255),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False)
train_dataloader = dict(
    batch_size=12, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(dataset, data_prefix=dict(img_path='images/train', seg_map_path='labels/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(dataset, data_prefix=dict(img_path='images/val', seg_map_path='labels/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mDice', 'mIoU'])
test_evaluator = val_evaluator

# nnU-Net: 1000 epochs of 250 iterations, SGD (Nesterov, momentum 0.99, weight decay 3e-5),
# lr 1e-2 decayed by (1 - iter / max_iters) ** 0.9, gradients clipped at norm 12.
max_iters = 250000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5),
    clip_grad=dict(max_norm=12.0))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, by_epoch=False, begin=0, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=25000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=25000, max_keep_ckpts=2))
