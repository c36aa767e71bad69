# The optimizer every VMamba schedule shares: AdamW with no weight decay on
# norms, biases, any other 1-D parameter (the official rule) and -- unlike the
# official code -- the SSM parameters A_logs, Ds and dt_projs_bias, 2-D tensors
# that the official rule misses. Sharing it keeps fine-tuning (detection,
# segmentation) on the choice made in pretraining.
# The task schedules set lr and weight_decay, and the wrapper type where it
# differs: plain OptimWrapper trains on a CPU too (mmengine's AmpOptimWrapper
# asserts a GPU); `tools/train.py --amp` switches to AMP.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', betas=(0.9, 0.999)),
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
