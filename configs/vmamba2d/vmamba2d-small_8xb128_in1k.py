# 2DVMamba-S (2DMamba, CVPR 2025; official config: vmambav2_2d_small_224): VMamba small-s2l15
# with 2DMamba's 2D selective scan on every route (arch '2dvmamba-small'), ImageNet-1k,
# 8 GPUs x 128 images, VMamba's recipe. Same parameters as small-s2l15.
# Official top-1: not listed in the reference notes.
_base_ = [
    '../_base_/models/vmamba.py',
    '../_base_/datasets/imagenet_bs128_vmamba.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vmamba.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(arch='2dvmamba-small', drop_path_rate=0.3),
)
