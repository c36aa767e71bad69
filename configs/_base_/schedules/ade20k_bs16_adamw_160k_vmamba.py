# Official VMamba UperNet schedule: 16 images per step (2 x 8 GPUs), AdamW
# lr 6e-5, wd 0.01, 1500-iteration linear warm-up, then poly (power 1) decay
# to 0 at 160k iterations.
_base_ = ['./adamw_vmamba.py']

# Plain OptimWrapper, as the official configs (they inherit mmseg's Swin
# UperNet, which uses it).
optim_wrapper = dict(optimizer=dict(lr=6e-5, weight_decay=0.01))

max_iters = 160000
warmup_iters = 1500
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]

train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# the lr above is for 16 images per step (tools/train.py --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=16)
