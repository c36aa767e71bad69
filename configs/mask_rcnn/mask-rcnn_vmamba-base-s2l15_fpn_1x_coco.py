# Mask R-CNN + FPN, VMamba base-s2l15 (official: mask_rcnn_vssm_fpn_coco_base), COCO,
# 1x schedule, 8 GPUs x 2 images. Official box / mask AP: 49.2 / 44.1.
_base_ = [
    '../_base_/models/mask-rcnn_vmamba_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/coco_bs16_adamw_1x_vmamba.py',
    '../_base_/default_runtime_mmdet.py',
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
    neck=dict(in_channels=[128, 256, 512, 1024]),
)
