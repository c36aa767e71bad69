# U-Mamba2 on the segmentation demo with click prompts (U-Mamba2's interactive mode): each click
# says "this pixel is a circle / square / triangle"; the bottleneck's tokens attend to the clicks.
# Training draws 0-3 clicks per image (so the model also works without them), each in one of the
# largest unclicked shapes, near its interior; testing places 3, at the interiors of the three
# largest shapes, as a user would. The same checkpoint tested without clicks:
#   tools/test.py configs/umamba2/umamba2_demo_clicks.py CKPT \
#       --cfg-options test_dataloader.dataset.pipeline.3.num_clicks=0
_base_ = ['./umamba2_demo.py']

# U-Mamba2 prompts its bottleneck only. This small U-Net's decoder reads its bottleneck little
# (prompted there alone, the clicks moved the logits by 0.2 at most), so every stage's map, which
# the decoder reads through its skips, is prompted here. Even so, in 1,500 iterations the model
# learns next to no use of its clicks: the README gives the mIoU with and without them.
model = dict(backbone=dict(clicks=dict(num_classes={{_base_.num_classes}}, num_heads=4,
                                       stages=(0, 1, 2, 3))))

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
