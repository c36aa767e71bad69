# Official VMamba ImageNet-1k schedule.
# 8 GPUs x 128 images = 1024 global batch; lr = 5e-4 * 1024 / 512 = 1e-3.
# Warm-up lr 5e-7 and min lr 5e-6 per 512 images -> 1e-6 and 1e-5 at 1024,
# i.e. LinearLR start_factor 1e-3 and cosine eta_min 1e-5.
_base_ = ['./adamw_vmamba.py']

optim_wrapper = dict(
    # AMP, as published. NOTE: mmengine's AmpOptimWrapper asserts a GPU.
    type='AmpOptimWrapper',
    optimizer=dict(lr=5e-4 * 1024 / 512, weight_decay=0.05, eps=1e-8),
    clip_grad=dict(max_norm=5.0),
)

# learning policy: 20 linear warm-up epochs, then cosine, both per iteration
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=20,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=20,
        end=300,
        convert_to_iter_based=True),
]

# train, val, test setting
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
# Validate the trained weights (metrics prefixed raw/) and their EMA (the usual names), as the
# official script reports both.
val_cfg = dict(type='RawAndEMAValLoop')
test_cfg = dict()

# Model EMA, decay 0.9999 (mmengine momentum = 1 - decay).
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]

# NOTE: `auto_scale_lr` is for automatically scaling LR (--auto-scale-lr),
# based on the actual training batch size.
auto_scale_lr = dict(base_batch_size=1024)
