# 2DVMamba-S (2DMamba, CVPR 2025; official config: vmambav2_2d_small_224): VMamba small-s2l15
# with 2DMamba's 2D selective scan on every route (arch '2dvmamba-small'), ImageNet-1k,
# 8 GPUs x 128 images: VMamba's config and recipe, only the scan differs. Same parameters as
# small-s2l15. Official top-1: not listed in the reference notes.
_base_ = ['../vmamba/vmamba-small-s2l15_8xb128_in1k.py']

model = dict(backbone=dict(arch='2dvmamba-small'))
