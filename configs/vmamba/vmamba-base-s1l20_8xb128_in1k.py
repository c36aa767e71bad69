# VMamba base-s1l20 (official: vmamba_base_s1l20), ImageNet-1k, 8 GPUs x 128 images.
# Official top-1: 83.8.
_base_ = [
    '../_base_/models/vmamba.py',
    '../_base_/datasets/imagenet_bs128_vmamba.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vmamba.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(arch='base-s1l20', drop_path_rate=0.5),
    head=dict(in_channels=1024),  # 8 * dims (128)
)
