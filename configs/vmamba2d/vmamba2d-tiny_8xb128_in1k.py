# 2DVMamba-T (2DMamba, CVPR 2025; official config: vmambav2v_2d_tiny_224): VMamba tiny-s1l8
# with 2DMamba's 2D selective scan on every route (arch '2dvmamba-tiny'), ImageNet-1k,
# 8 GPUs x 128 images, VMamba's recipe. Same parameters as tiny-s1l8.
# Official top-1: 82.8 (VMamba-T tiny-s1l8: 82.6).
_base_ = [
    '../_base_/models/vmamba.py',
    '../_base_/datasets/imagenet_bs128_vmamba.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vmamba.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(arch='2dvmamba-tiny', drop_path_rate=0.2),
)
