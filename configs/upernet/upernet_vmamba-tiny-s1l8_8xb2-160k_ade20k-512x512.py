# UperNet, VMamba tiny-s1l8 (official: upernet_vssm_4xb4-160k_ade20k-512x512_tiny), ADE20K,
# 512x512 crops, 160k iterations of 16 images (8 GPUs x 2; the official run
# used 4 x 4). Official mIoU single-scale / multi-scale (--tta): 47.9 / 48.8.
_base_ = [
    '../_base_/models/upernet_vmamba.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/ade20k_bs16_adamw_160k_vmamba.py',
    '../_base_/default_runtime_mmseg.py',
]

# Backbone initialisation: the official ImageNet-1k classifier, converted once with
#   python tools/model_converters/vmamba2mm.py vssm1_tiny_0230s_ckpt_epoch_264.pth \
#       checkpoints/vmamba-tiny-s1l8_in1k.pth
# (a missing file stops the run when the weights are initialised).
backbone_checkpoint = 'checkpoints/vmamba-tiny-s1l8_in1k.pth'

model = dict(
    backbone=dict(
        arch='tiny-s1l8',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint=backbone_checkpoint)),
)
