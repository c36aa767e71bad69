# UperNet, 2DVMamba-S (VMamba small-s2l15 with the 2D scan, arch '2dvmamba-small'), ADE20K,
# 512x512 crops, 160k iterations of 16 images (8 GPUs x 2), VMamba's UperNet recipe.
# Official mIoU single-scale / multi-scale (--tta): not listed in the reference notes.
_base_ = [
    '../_base_/models/upernet_vmamba.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/ade20k_bs16_adamw_160k_vmamba.py',
    '../_base_/default_runtime_mmseg.py',
]

# Backbone initialisation: the released 2DVMamba-S ImageNet-1k classifier (its keys are
# VMamba's), converted once with
#   python tools/model_converters/vmamba2mm.py OFFICIAL_2DVMAMBA_CHECKPOINT.pth \
#       checkpoints/vmamba2d-small_in1k.pth
# (a missing file stops the run when the weights are initialised).
backbone_checkpoint = 'checkpoints/vmamba2d-small_in1k.pth'

model = dict(
    backbone=dict(
        arch='2dvmamba-small',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=backbone_checkpoint)),
)
