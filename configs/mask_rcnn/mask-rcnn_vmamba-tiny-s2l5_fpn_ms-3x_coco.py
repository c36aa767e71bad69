# Mask R-CNN + FPN, VMamba tiny-s2l5 (official: mask_rcnn_vssm_fpn_coco_tiny1_ms_3x), COCO,
# 3x schedule with DETR-style multi-scale training, 8 GPUs x 2 images.
# Official box / mask AP: 48.9 / 43.7.
_base_ = [
    '../_base_/models/mask-rcnn_vmamba_fpn.py',
    '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/coco_bs16_adamw_3x_vmamba.py',
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
