# U-Mamba2 for interactive single-object segmentation on the segmentation demo (RITM's and SAM's
# setting): one shape of each scene is the target, the others background, and a click on it is
# the only way to tell which. Training draws the shape at random; testing takes a fixed shape
# per image, chosen by its file name, so the image alone does not give it away. The clicks reach
# the network as input maps, as in umamba2_demo_clicks.py, whose model and packing this takes.
# Tested without the click:
#   tools/test.py configs/umamba2/umamba2_demo_objects.py CKPT \
#       --cfg-options test_dataloader.dataset.pipeline.3.num_clicks=0
_base_ = ['./umamba2_demo_clicks.py']

metainfo = dict(classes=('background', 'object'), palette=[[40, 40, 40], [230, 25, 75]])
model = dict(backbone=dict(clicks=dict(num_classes=2)), decode_head=dict(num_classes=2))

# The click demo's pipelines with SelectObject in SampleClicks' place.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale={{_base_.crop_size}}, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    # after the flip: the object is picked, and clicked, where the shapes now are
    dict(type='SelectObject', choose='random', num_clicks=1, jitter=True,
         skip_classes=({{_base_.background}}, )),
    dict(type='PackSegInputs', meta_keys={{_base_.pack_keys}}),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={{_base_.crop_size}}, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='SelectObject', choose='by_name', num_clicks=1,
         skip_classes=({{_base_.background}}, )),
    dict(type='PackSegInputs', meta_keys={{_base_.pack_keys}}),
]
train_dataloader = dict(dataset=dict(metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
