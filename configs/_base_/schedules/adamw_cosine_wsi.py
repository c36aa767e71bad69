# The MIL recipe of the 2DMambaMIL release, as its sample runs use it (no optimiser options on
# the command line, so main.py's argument defaults): AdamW (--opt adamw), lr 1e-4 (--lr), weight
# decay 1e-5 (--reg), 20 epochs (--max_epochs), cosine annealing of the lr to 0 over the epochs,
# stepped once per epoch (utils/core_utils.py: CosineAnnealingLR(T_max=max_epochs, eta_min=0)),
# cross-entropy, one slide per step. Source: github.com/AtlasAnalyticsLab/2DMamba at 9fe12aa,
# 2DMambaMIL/main.py, utils/utils.py (get_optim), utils/core_utils.py, README.md.
# Another number of epochs: set train_cfg.max_epochs and the scheduler's T_max and end alike.
max_epochs = 20
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-5))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=max_epochs, eta_min=0,
                        begin=0, end=max_epochs)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
