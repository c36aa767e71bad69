# The 2D medical template with U-Mamba2's click prompts (interactive refinement): a click says
# "this pixel is class k"; training draws 0-3 per image in the largest structures, testing places
# one in each of the three largest, as a user would. Edit data_root (and classes) in
# umamba2_medical-2d_template.py, or override them here. Tested without clicks:
#   tools/test.py configs/umamba2/umamba2_medical-2d_clicks_template.py CKPT \
#       --cfg-options test_dataloader.dataset.pipeline.2.num_clicks=0
_base_ = ['./umamba2_medical-2d_template.py']

# The clicks as input maps (umamba2_demo_clicks.py says why): a Gaussian of `radius` pixels per
# click, about a third of a structure's width; stages=(-1, ) adds U-Mamba2's click tokens at the
# bottleneck (num_heads=8 divides its 320 channels).
# model.train_cfg.error_clicks / test_cfg.error_clicks: clicks on the model's own largest
# errors, in training (SAM's recipe) or as a simulated user at test (umamba2_demo_clicks.py).
model = dict(backbone=dict(clicks=dict(num_classes={{_base_.num_classes}}, stages=(),
                                       input_maps=dict(radius=12.0))))

# The clicks go into each data sample's metainfo (data_sample.clicks) through PackSegInputs.
pack_keys = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor',
             'flip', 'flip_direction', 'reduce_zero_label', 'clicks')
background = 0  # clicks go on the structures; a background click says little
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}),
    dict(type='RandomRotate', prob=0.2, degree=30, pad_val=0, seg_pad_val=255),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    # after the geometric transforms: the clicks are sampled where the structures now are
    dict(type='SampleClicks', num_clicks=(0, 3), jitter=True, skip_classes=(background, )),
    dict(type='PackSegInputs', meta_keys=pack_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='SampleClicks', num_clicks=3, skip_classes=(background, )),
    dict(type='PackSegInputs', meta_keys=pack_keys),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
