# TwoDMambaMIL on CLAM-format feature bags: abmil_clam.py with another aggregator (data_root and
# num_classes as there).
_base_ = ['./abmil_clam.py']
# in_features=None: the first layer takes the width of the slides' features
model = dict(aggregator=dict(_delete_=True, type='TwoDMambaMIL', in_features=None))
