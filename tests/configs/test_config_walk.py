"""``config_dicts``: every dict of a nested config, with its dotted key, parents first."""
from vmamba_mm.config.walk import config_dicts


def test_every_dict_with_its_key_and_skipped_keys_left_out():
    model = dict(type='M', backbone=dict(type='B', norm=dict(type='SyncBN')),
                 heads=[dict(type='H', loss=(dict(type='L'), 3)), 'not a dict'],
                 train_cfg=dict(type='T'))
    assert [key for key, _ in config_dicts(model, 'model')] == [
        'model', 'model.backbone', 'model.backbone.norm', 'model.heads.0', 'model.heads.0.loss.0',
        'model.train_cfg']
    assert [key for key, _ in config_dicts(model, 'model', skip=('train_cfg', 'backbone'))] == [
        'model', 'model.heads.0', 'model.heads.0.loss.0']
    # the dicts themselves, which callers change in place (a key added while going through)
    for _, node in config_dicts(model, 'model'):
        node['seen'] = True
    assert model['backbone']['norm']['seen'] and model['heads'][0]['loss'][0]['seen']
