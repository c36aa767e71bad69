# VMamba image classifier (mmpretrain ImageClassifier).
#
# The official classifier head is LayerNorm -> global average pool -> Linear.
# Here the LayerNorm is the backbone's per-stage output norm (``outnorm3``),
# the pool is ``GlobalAveragePooling`` and the Linear is ``LinearClsHead``, so
# the parameter count equals the official model's exactly.
#
# The per-arch configs in ``configs/vmamba/`` override ``backbone.arch``,
# ``backbone.drop_path_rate`` and, for the dims-128 (base) models,
# ``head.in_channels=1024``.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VSSM',
        arch='tiny-s1l8',
        out_indices=(3, ),
        drop_path_rate=0.2),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,  # 8 * dims (dims 96); 1024 for dims 128
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # official head init: trunc_normal(std=0.02), bias 0
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        cal_acc=False),
    # Mixup 0.8 / CutMix 1.0, one of the two chosen per batch with equal
    # probability (timm's switch_prob=0.5). num_classes is taken from the
    # data_preprocessor (see the dataset base config).
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)
