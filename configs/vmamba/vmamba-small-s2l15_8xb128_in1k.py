# VMamba small-s2l15 (official: vmamba_small_s2l15), ImageNet-1k, 8 GPUs x 128 images.
# Official top-1: 83.6.
_base_ = [
    '../_base_/models/vmamba.py',
    '../_base_/datasets/imagenet_bs128_vmamba.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vmamba.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(arch='small-s2l15', drop_path_rate=0.3),
)
