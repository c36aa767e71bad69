"""MILClassifier: a whole slide per step, any number of patches: an aggregator (ABMIL, MambaMIL,
TwoDMambaMIL) pools the slide's patch features into one embedding, a linear head classifies it.

An mmengine model (registered in mmpretrain's MODELS by ``vmamba_mm.registry``): it takes what
``WSIFeatureDataset`` yields, collated by ``pseudo_collate`` (or ``default_collate`` for one slide
per batch), and writes ``pred_score``/``pred_label`` into mmpretrain ``DataSample``s, so
mmpretrain's metrics score it. Each predicted sample also carries the aggregator's per-patch
``attention`` (and, for TwoDMambaMIL, ``scan_norm``) in its metainfo for heat maps.
"""
import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from torch import nn


def build_aggregator(aggregator):
    """The aggregator: the module given, or one built by mmpretrain's MODELS from its config, where
    ``vmamba_mm.registry`` puts ABMIL, MambaMIL and TwoDMambaMIL (and a user may register more)."""
    if isinstance(aggregator, nn.Module):
        return aggregator
    from mmpretrain.registry import MODELS
    arguments = dict(aggregator)
    name = arguments.pop('type', None)
    # Looked up in mmpretrain's MODELS itself: MODELS.build would search the registry of the
    # current default scope, which in a process that also ran mmseg or mmdet may be theirs.
    cls = MODELS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise KeyError(f'model.aggregator.type {name!r} is not a model of mmpretrain\'s MODELS: '
                       f'use ABMIL, MambaMIL or TwoDMambaMIL, or register your aggregator there.')
    return cls(**arguments)


def _slides(inputs):
    """[(features (n, d), positions (n, 2))] from a pseudo- or default-collated batch."""
    features, positions = inputs['features'], inputs['positions']
    if torch.is_tensor(features):  # default_collate stacked one slide per batch
        features, positions = list(features.unbind(0)), list(positions.unbind(0))
    return list(zip(features, positions))


class MILClassifier(BaseModel):
    """Args: aggregator (a module or a config dict for MODELS, e.g. ``type='ABMIL'``; its
    ``in_features`` None takes the width from the first slide), num_classes, class_weight (of the
    loss)."""

    # The config checks resolve this part's type in MODELS and check its keys before the Runner
    # builds the model.
    PARTS_BUILT_FROM_MODELS = ('aggregator', )

    def __init__(self, aggregator, num_classes, class_weight=None, data_preprocessor=None,
                 init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = BaseDataPreprocessor()
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.aggregator = build_aggregator(aggregator)
        self.num_classes = num_classes
        self.head = nn.Linear(self.aggregator.out_features, num_classes)
        self.class_weight = None if class_weight is None else torch.tensor(class_weight).float()

    def init_weights(self):
        # mmengine reads every parameter's shape here, which a lazy first layer does not have yet.
        if self.aggregator.in_features is None:
            raise ValueError('model.aggregator.in_features is None and no slide has been seen: '
                             'tools/train.py and tools/test.py set it from the data; a Runner '
                             'built elsewhere needs it set to the features\' width.')
        super().init_weights()

    def _check_width(self, features, sample):
        expected = self.aggregator.in_features
        if expected is not None and features.shape[-1] != expected:
            from vmamba_mm.datasets.errors import DataError
            where = (sample.metainfo.get('feature_path') if sample is not None else None) or \
                'the slide'
            raise DataError(f'{where} has {features.shape[-1]}-d features but the model takes '
                            f'{expected}-d ones (model.aggregator.in_features or the checkpoint); '
                            f'use features from the encoder the model was trained on.')

    def slide_logits(self, features, positions, sample=None):
        """(logits (num_classes,), extras {attention (n,), ...}) of one slide."""
        self._check_width(features, sample)
        embedding, extras = self.aggregator(features.float(), positions.long())
        return self.head(embedding), extras

    def forward(self, inputs, data_samples=None, mode='tensor'):
        slides = _slides(inputs)
        samples = data_samples if data_samples is not None else [None] * len(slides)
        outputs = [self.slide_logits(f, p, s) for (f, p), s in zip(slides, samples)]
        logits = torch.stack([logit for logit, _ in outputs])
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            labels = torch.cat([s.gt_label for s in data_samples]).to(logits.device)
            weight = None if self.class_weight is None else self.class_weight.to(logits.device)
            return dict(loss=F.cross_entropy(logits, labels, weight=weight))
        if mode == 'predict':
            from mmpretrain.structures import DataSample
            scores = logits.softmax(dim=-1).detach()
            predicted = []
            for index, (_, extras) in enumerate(outputs):
                sample = samples[index] if samples[index] is not None else DataSample()
                sample.set_pred_score(scores[index]).set_pred_label(scores[index].argmax())
                sample.set_metainfo({key: value.detach().cpu() for key, value in extras.items()})
                predicted.append(sample)
            return predicted
        raise ValueError(f'MILClassifier.forward: mode {mode!r} is not tensor, loss or predict.')
