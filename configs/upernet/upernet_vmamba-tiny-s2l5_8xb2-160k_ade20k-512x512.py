# UperNet, VMamba tiny-s2l5 (official: upernet_vssm_4xb4-160k_ade20k-512x512_tiny1), ADE20K,
# 512x512 crops, 160k iterations of 16 images (8 GPUs x 2; the official run
# used 4 x 4). Official mIoU single-scale / multi-scale (--tta): 48.3 / 48.6.
_base_ = [
    '../_base_/models/upernet_vmamba.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/ade20k_bs16_adamw_160k_vmamba.py',
    '../_base_/default_runtime_mmseg.py',
]

# Backbone initialisation: the official ImageNet-1k classifier, converted once with
#   python tools/model_converters/vmamba2mm.py vssm_tiny_0230_ckpt_epoch_262.pth \
#       checkpoints/vmamba-tiny-s2l5_in1k.pth
# (a missing file stops the run when the weights are initialised).
backbone_checkpoint = 'checkpoints/vmamba-tiny-s2l5_in1k.pth'

model = dict(
    backbone=dict(
        arch='tiny-s2l5',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint=backbone_checkpoint)),
)
