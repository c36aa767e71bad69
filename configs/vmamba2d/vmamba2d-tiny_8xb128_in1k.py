# 2DVMamba-T (2DMamba, CVPR 2025; official config: vmambav2v_2d_tiny_224): VMamba tiny-s1l8
# with 2DMamba's 2D selective scan on every route (arch '2dvmamba-tiny'), ImageNet-1k,
# 8 GPUs x 128 images: VMamba's config and recipe, only the scan differs. Same parameters as
# tiny-s1l8. Official top-1: 82.8 (VMamba-T tiny-s1l8: 82.6).
_base_ = ['../vmamba/vmamba-tiny-s1l8_8xb128_in1k.py']

model = dict(backbone=dict(arch='2dvmamba-tiny'))
