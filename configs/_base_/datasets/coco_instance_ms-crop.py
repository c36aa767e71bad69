# COCO instance segmentation with the DETR / Sparse R-CNN multi-scale training
# augmentation used by the 3x schedules: the short side drawn from 480..800
# (long side <= 1333), or, with equal probability, a resize to 400/500/600, a
# random 384..600 crop and then the 480..800 resize. Test as coco_instance.py.
_base_ = ['./coco_instance.py']

ms_short_sides = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]
ms_scales = [(short_side, 1333) for short_side in ms_short_sides]

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=ms_scales, keep_ratio=True)],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(400, 1333), (500, 1333), (600, 1333)],
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                dict(
                    type='RandomChoiceResize',
                    scales=ms_scales,
                    keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
