# Mask R-CNN + FPN, VMamba tiny-s2l5 (official: mask_rcnn_vssm_fpn_coco_tiny1), COCO,
# 1x schedule, 8 GPUs x 2 images. Official box / mask AP: 47.4 / 42.7.
_base_ = [
    '../_base_/models/mask-rcnn_vmamba_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/coco_bs16_adamw_1x_vmamba.py',
    '../_base_/default_runtime_mmdet.py',
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
