# V2M on VMamba-T (the V2M paper's V2M-S*, arXiv 2410.10382): VMamba tiny-s1l8 with every
# block's SS2D replaced by V2M's 2D SSM (arch 'v2m-tiny': mixer 'v2m', d_state 4, delta rank 8),
# ImageNet-1k, 8 GPUs x 128 images: VMamba's config and recipe, only the mixer differs.
# 30.2 M parameters, 5.41 GFLOPs (paper: 30 M, 5.4 G). Paper top-1: 82.9 (VMamba-T: 82.6).
_base_ = ['../vmamba/vmamba-tiny-s1l8_8xb128_in1k.py']

model = dict(backbone=dict(arch='v2m-tiny'))
