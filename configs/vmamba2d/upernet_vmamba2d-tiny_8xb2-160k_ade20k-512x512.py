# UperNet, 2DVMamba-T (VMamba tiny-s1l8 with the 2D scan, arch '2dvmamba-tiny'), ADE20K,
# 512x512 crops, 160k iterations of 16 images (8 GPUs x 2): VMamba's UperNet config and recipe,
# only the scan and the backbone's checkpoint differ.
# Official mIoU single-scale / multi-scale (--tta): 48.6 / 49.3 (VMamba-T: 47.9 / 48.8).
_base_ = ['../upernet/upernet_vmamba-tiny-s1l8_8xb2-160k_ade20k-512x512.py']

# Backbone initialisation: the released 2DVMamba-T ImageNet-1k classifier (its keys are
# VMamba's), converted once with
#   python tools/model_converters/vmamba2mm.py OFFICIAL_2DVMAMBA_CHECKPOINT.pth \
#       checkpoints/vmamba2d-tiny_in1k.pth
# (a missing file stops the run when the weights are initialised).
backbone_checkpoint = 'checkpoints/vmamba2d-tiny_in1k.pth'

model = dict(
    backbone=dict(arch='2dvmamba-tiny', init_cfg=dict(checkpoint=backbone_checkpoint)))
