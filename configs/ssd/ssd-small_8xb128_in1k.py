# SSD on VMamba-S: VMamba small-s2l15 with every block's four routes scanned by Mamba2's state
# space duality (arch 'ssd-small': mixer 'ssd', VMamba's m0 forward type without the gate, d_state
# 64, heads of 16 channels), ImageNet-1k, 8 GPUs x 128 images: VMamba's config and recipe, only
# the mixer differs.
_base_ = ['../vmamba/vmamba-small-s2l15_8xb128_in1k.py']

model = dict(backbone=dict(arch='ssd-small'))
