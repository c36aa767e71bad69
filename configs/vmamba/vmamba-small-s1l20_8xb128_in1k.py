# VMamba small-s1l20 (official: vmamba_small_s1l20), ImageNet-1k, 8 GPUs x 128 images.
# Official top-1: 83.3.
_base_ = [
    '../_base_/models/vmamba.py',
    '../_base_/datasets/imagenet_bs128_vmamba.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vmamba.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(arch='small-s1l20', drop_path_rate=0.3),
)
