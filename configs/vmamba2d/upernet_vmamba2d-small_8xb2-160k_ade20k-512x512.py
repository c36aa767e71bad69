# UperNet, 2DVMamba-S (VMamba small-s2l15 with the 2D scan, arch '2dvmamba-small'), ADE20K,
# 512x512 crops, 160k iterations of 16 images (8 GPUs x 2): VMamba's UperNet config and recipe,
# only the scan and the backbone's checkpoint differ.
# Official mIoU single-scale / multi-scale (--tta): not listed in the reference notes.
_base_ = ['../upernet/upernet_vmamba-small-s2l15_8xb2-160k_ade20k-512x512.py']

# Backbone initialisation: the released 2DVMamba-S ImageNet-1k classifier (its keys are
# VMamba's), converted once with
#   python tools/model_converters/vmamba2mm.py OFFICIAL_2DVMAMBA_CHECKPOINT.pth \
#       checkpoints/vmamba2d-small_in1k.pth
# (a missing file stops the run when the weights are initialised).
backbone_checkpoint = 'checkpoints/vmamba2d-small_in1k.pth'

model = dict(
    backbone=dict(arch='2dvmamba-small', init_cfg=dict(checkpoint=backbone_checkpoint)))
