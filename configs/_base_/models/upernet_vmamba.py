# UperNet with a VMamba (VSSM) backbone, as the official
# upernet_vssm_4xb4-160k_ade20k-512x512_* models (mmseg's Swin UperNet with the
# Swin backbone swapped for VSSM). ADE20K: 150 classes.
#
# The per-arch configs in configs/upernet/ set backbone.arch,
# backbone.drop_path_rate and backbone.init_cfg, and for the dims-128 (base)
# models the head input channels (decode 128..1024, auxiliary 512).
# SyncBN in the heads, as released: batch statistics over the 16 images of a
# step, not the 2 on each GPU. Where it cannot synchronise (one process, or
# no GPU) the tools build plain BN instead, which is what SyncBN computes
# per process there anyway.
head_norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        # ImageNet mean/std in RGB, as the classification pretraining
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,  # padding is ignored by the loss
        # pads training batches to the 512x512 crop (crop_size in
        # ../datasets/ade20k.py)
        size=(512, 512)),
    backbone=dict(
        type='VSSM',
        arch='tiny-s1l8',
        # all four stages feed the decoder; each has its own output norm
        # (official keys outnorm0..3)
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        # A missing checkpoint stops the run at init_weights (VSSM loads
        # strictly and loudly); the per-arch configs name their file.
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/vmamba-tiny-s1l8_in1k.pth',
            prefix='backbone.')),
    decode_head=dict(
        type='UPerHead',
        # dims * 2**stage for dims 96
        in_channels=[96, 192, 384, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=head_norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        # the stage-3 (index 2) features: dims * 4
        in_channels=384,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=head_norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    # whole-image inference, as the official configs
    test_cfg=dict(mode='whole'))

# Multi-scale + flip test (tools/test.py --tta, with the dataset's
# tta_pipeline): the softmax maps of all views, each resized back to the
# image and un-flipped by the segmentor, are averaged, then argmax.
tta_model = dict(type='SegTTAModel')
