# The classification demo with 2DMamba's 2D selective scan on every route (2DVMamba's scan) in
# place of the 1D scans: the same small VSSM, data, schedule and parameters.
# make demo TASK=cls2d (data: tools/misc/generate_demo_data.py cls data/demo_cls).
_base_ = ['./classification.py']

model = dict(backbone=dict(arch=dict(scan_2d=True)))
