# Official VMamba Mask R-CNN 3x schedule: the 1x optimizer for 36 epochs, lr
# x0.1 after epochs 27 and 33 (pair it with the multi-scale training data,
# ../datasets/coco_instance_ms-crop.py).
_base_ = ['./coco_bs16_adamw_1x_vmamba.py']

max_epochs = 36
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1),
]
train_cfg = dict(max_epochs=max_epochs)
