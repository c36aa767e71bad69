# What the three demos (configs/demo/) share of the runtime: a fixed seed, so
# that a demo run, and the demo tests, reproduce their figures on the same
# machine (not across machines: the README gives the range over seeds);
# each demo sets its task's default_scope, hooks and visualizer.
custom_imports = dict(imports=['vmamba_mm'], allow_failed_imports=False)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
