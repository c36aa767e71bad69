# V2M on VMamba-S (the V2M paper's V2M-B*, arXiv 2410.10382): VMamba small-s2l15 with every
# block's SS2D replaced by V2M's 2D SSM (arch 'v2m-small': mixer 'v2m', d_state 3, delta rank 8),
# ImageNet-1k, 8 GPUs x 128 images: VMamba's config and recipe, only the mixer differs.
# 49.9 M parameters, 9.64 GFLOPs (paper: 50 M, 9.6 G). Paper top-1: 83.8 (VMamba-S: 83.6).
_base_ = ['../vmamba/vmamba-small-s2l15_8xb128_in1k.py']

model = dict(backbone=dict(arch='v2m-small'))
