# Mask R-CNN + FPN, VMamba small-s2l15 (official: mask_rcnn_vssm_fpn_coco_small), COCO,
# 1x schedule, 8 GPUs x 2 images. Official box / mask AP: 48.7 / 43.7.
_base_ = [
    '../_base_/models/mask-rcnn_vmamba_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/coco_bs16_adamw_1x_vmamba.py',
    '../_base_/default_runtime_mmdet.py',
]

# Backbone initialisation: the official ImageNet-1k classifier, converted once with
#   python tools/model_converters/vmamba2mm.py vssm_small_0229_ckpt_epoch_222.pth \
#       checkpoints/vmamba-small-s2l15_in1k.pth
# (a missing file stops the run when the weights are initialised).
backbone_checkpoint = 'checkpoints/vmamba-small-s2l15_in1k.pth'

model = dict(
    backbone=dict(
        arch='small-s2l15',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=backbone_checkpoint)),
)
