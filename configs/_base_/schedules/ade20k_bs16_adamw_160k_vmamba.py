# Official VMamba UperNet schedule: 16 images per step (2 x 8 GPUs), AdamW
# lr 6e-5, wd 0.01, 1500-iteration linear warm-up, then poly (power 1) decay
# to 0 at 160k iterations.
optim_wrapper = dict(
    # Plain OptimWrapper, as the official configs (they inherit mmseg's Swin
    # UperNet, which uses it); `tools/train.py --amp` switches to
    # AmpOptimWrapper on a GPU.
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    # no weight decay on norms, biases, other 1-D parameters and the SSM
    # parameters, as in the classification and detection schedules
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.A_logs': dict(decay_mult=0.0),
            '.Ds': dict(decay_mult=0.0),
            '.dt_projs_bias': dict(decay_mult=0.0),
        }),
)

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
