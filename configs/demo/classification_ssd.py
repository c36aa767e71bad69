# The classification demo with every block's four routes scanned by Mamba2's SSD (VMamba's m0
# forward type; two heads of 16 channels per route, state size 16 for the demo's small widths in
# place of m0's 64): the same small VSSM layout, data and schedule. make demo TASK=cls-ssd (data:
# tools/misc/generate_demo_data.py cls data/demo_cls).
_base_ = ['./classification.py']

model = dict(backbone=dict(arch=dict(forward_type='m0_noz', mixer='ssd', ssm_d_state=16)))
# Half the demo's learning rate: at 2e-3 this model collapsed in the first epochs (its features
# stopped depending on the image, the loss stayed at ln 4 and top-1 at chance for 20 epochs).
optim_wrapper = dict(optimizer=dict(lr=1e-3))
