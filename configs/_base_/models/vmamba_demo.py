# The small VSSM of the demos (configs/demo/): four stages of widths 32-256 and
# 1, 1, 2, 1 blocks, with the tiny-s1l8 layer design (v05_noz scan, ln2d norms,
# v3 downsampling, v2 patch embedding); a few minutes of CPU training learn the
# demo shapes. Each demo adds its model type, heads and out_indices.
model = dict(
    backbone=dict(
        type='VSSM',
        arch=dict(depths=[1, 1, 2, 1], dims=32, ssm_d_state=1, ssm_ratio=1.0,
                  forward_type='v05_noz', mlp_ratio=2.0, downsample_version='v3',
                  patchembed_version='v2', norm_layer='ln2d'),
        drop_path_rate=0.05))
