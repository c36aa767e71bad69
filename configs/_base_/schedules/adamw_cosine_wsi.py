# The MIL recipe of the 2DMambaMIL release: Adam, lr 2e-4, weight decay 1e-5, cross-entropy,
# one slide per step.
optim_wrapper = dict(optimizer=dict(type='Adam', lr=2e-4, weight_decay=1e-5))
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=1)
val_cfg = dict()
test_cfg = dict()
