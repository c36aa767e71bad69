# Official VMamba Mask R-CNN 1x schedule: 16 images per step (2 x 8 GPUs),
# AdamW lr 1e-4, wd 0.05, 12 epochs, 1000-iteration linear warm-up, lr x0.1
# after epochs 8 and 11.
_base_ = ['./adamw_vmamba.py']

# Plain OptimWrapper, as the official configs (they inherit mmdet's Swin Mask
# R-CNN, which uses it).
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.05))

max_epochs = 12
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1),
]

train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# the lr above is for 16 images per step (tools/train.py --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=16)
