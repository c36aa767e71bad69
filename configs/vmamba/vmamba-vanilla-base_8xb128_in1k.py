# VMamba vanilla-base (official: vanilla_vmamba_base), ImageNet-1k, 8 GPUs x 128 images.
# Official top-1: 83.7.
_base_ = [
    '../_base_/models/vmamba.py',
    '../_base_/datasets/imagenet_bs128_vmamba.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vmamba.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(arch='vanilla-base', drop_path_rate=0.6),
    head=dict(in_channels=1024),  # 8 * dims (128)
)
