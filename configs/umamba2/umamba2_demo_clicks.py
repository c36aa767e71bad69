# U-Mamba2 on the segmentation demo with click prompts (U-Mamba2's interactive mode): each click
# says "this pixel is a circle / square / triangle"; the clicks reach the network as input maps.
# Training draws 0-3 clicks per image (so the model also works without them), each in one of the
# largest unclicked shapes, near its interior; testing places 3, at the interiors of the three
# largest shapes, as a user would. The same checkpoint tested without clicks:
#   tools/test.py configs/umamba2/umamba2_demo_clicks.py CKPT \
#       --cfg-options test_dataloader.dataset.pipeline.3.num_clicks=0
_base_ = ['./umamba2_demo.py']

# The dense encoding (interactive nnU-Net's, RITM's): one input channel per class next to the
# image's, a Gaussian of 12 pixels around each click of that class, a third of a middling shape.
# U-Mamba2's own encoding is click tokens that the bottleneck's tokens attend to
# (stages=(-1, )). The model labels this demo at 99 mIoU without clicks, so they have little to
# add here; umamba2_demo_objects.py shows what a click carries (docs/models.md).
# model.train_cfg.error_clicks=1 adds SAM's iterative recipe (a click per step on the largest
# error of the model's own prediction); model.test_cfg.error_clicks=N measures a checkpoint
# after N such corrective clicks.
model = dict(backbone=dict(clicks=dict(num_classes={{_base_.num_classes}}, stages=(),
                                       input_maps=dict(radius=12.0))))

# The clicks go into each data sample's metainfo (data_sample.clicks) through PackSegInputs.
pack_keys = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor',
             'flip', 'flip_direction', 'reduce_zero_label', 'clicks')
# Clicks on shapes only: a background click tells the model little here.
background = 0
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale={{_base_.crop_size}}, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    # after the flip: the clicks are sampled where the shapes now are
    dict(type='SampleClicks', num_clicks=(0, 3), jitter=True, skip_classes=(background, )),
    dict(type='PackSegInputs', meta_keys=pack_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={{_base_.crop_size}}, keep_ratio=True),
    dict(type='LoadAnnotations'),
    # the label map is at its stored size here: SampleClicks maps the clicks onto the image
    dict(type='SampleClicks', num_clicks=3, skip_classes=(background, )),
    dict(type='PackSegInputs', meta_keys=pack_keys),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
