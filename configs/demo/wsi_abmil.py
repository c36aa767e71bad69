# The WSI demo with ABMIL, a bag-of-instances aggregator: the same data and schedule as
# wsi_2dmambamil.py. The label is the arrangement of one patch type, which a model that ignores
# where the patches lie cannot see: this demo stays near chance.
_base_ = ['./wsi_2dmambamil.py']
model = dict(aggregator=dict(_delete_=True, type='ABMIL', in_features=None, dropout=0.0))
