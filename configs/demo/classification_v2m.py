# The classification demo with V2M's 2D SSM in place of SS2D in every block: the same small
# VSSM layout, data and schedule. make demo TASK=cls-v2m (data: tools/misc/generate_demo_data.py
# cls data/demo_cls).
_base_ = ['./classification.py']

model = dict(backbone=dict(arch=dict(mixer='v2m')))
