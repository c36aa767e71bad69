# UperNet, VMamba base-s2l15 (official: upernet_vssm_4xb4-160k_ade20k-512x512_base), ADE20K,
# 512x512 crops, 160k iterations of 16 images (8 GPUs x 2; the official run
# used 4 x 4). Official mIoU single-scale / multi-scale (--tta): 51.0 / 51.6.
_base_ = [
    '../_base_/models/upernet_vmamba.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/ade20k_bs16_adamw_160k_vmamba.py',
    '../_base_/default_runtime_mmseg.py',
]

# Backbone initialisation: the official ImageNet-1k classifier, converted once with
#   python tools/model_converters/vmamba2mm.py vssm_base_0229_ckpt_epoch_237.pth \
#       checkpoints/vmamba-base-s2l15_in1k.pth
# (a missing file stops the run when the weights are initialised).
backbone_checkpoint = 'checkpoints/vmamba-base-s2l15_in1k.pth'

model = dict(
    backbone=dict(
        arch='base-s2l15',
        drop_path_rate=0.6,
        init_cfg=dict(checkpoint=backbone_checkpoint)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512),
)
