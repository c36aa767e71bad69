# CLAM-layout feature bags (vmamba_mm/datasets/wsi.py): data_root/features/<slide>.h5 (or .pt),
# data_root/labels.csv, data_root/splits/splits_<k>.csv. Classes come from labels.csv and the
# feature width from the files, so data_root is the one line to edit.
data_root = 'data/wsi'
fold = 0

train_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='WSIFeatureDataset', data_root=data_root, split='train', fold=fold),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='WSIFeatureDataset', data_root=data_root, split='val', fold=fold),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='WSIFeatureDataset', data_root=data_root, split='test', fold=fold),
    sampler=dict(type='DefaultSampler', shuffle=False))
# accuracy/top1 (mmpretrain's, in percent) and wsi/{balanced_accuracy,macro_f1,auc}
val_evaluator = [dict(type='Accuracy', topk=(1, )), dict(type='SlideMetrics')]
test_evaluator = val_evaluator
