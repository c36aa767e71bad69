"""nnU-Net's soft Dice loss for mmseg: per class, over the batch, unlabelled pixels left out."""
import torch.nn.functional as F
from torch import nn


class SoftDiceLoss(nn.Module):
    """1 - mean over classes of (2 |P∩G| + smooth) / (|P| + |G| + smooth), with P the softmax
    probabilities and G the one-hot labels, summed over the batch's pixels (``batch_dice``) or
    per image and then averaged; pixels labelled ``ignore_index`` count in neither.
    ``include_background`` False (nnU-Net's default) leaves class 0 out of the mean."""

    def __init__(self, include_background=False, batch_dice=True, smooth=1e-5, loss_weight=1.0,
                 loss_name='loss_dice'):
        super().__init__()
        self.include_background, self.batch_dice = include_background, batch_dice
        self.smooth, self.loss_weight, self._loss_name = smooth, loss_weight, loss_name

    def forward(self, seg_logits, labels, weight=None, ignore_index=255, **kwargs):
        num_classes = seg_logits.shape[1]
        if num_classes < 2 and not self.include_background:
            raise ValueError('SoftDiceLoss: one class and include_background=False leave nothing '
                             'to score; use two or more classes or include_background=True.')
        probabilities = seg_logits.float().softmax(dim=1)
        labelled = (labels != ignore_index).unsqueeze(1)
        one_hot = F.one_hot(labels.where(labelled.squeeze(1), 0).long(), num_classes)
        one_hot = one_hot.permute(0, 3, 1, 2).float() * labelled
        probabilities = probabilities * labelled
        dims = (0, 2, 3) if self.batch_dice else (2, 3)
        overlap = (probabilities * one_hot).sum(dims)
        total = probabilities.sum(dims) + one_hot.sum(dims)
        dice = (2 * overlap + self.smooth) / (total + self.smooth).clamp_min(1e-8)
        if not self.include_background:
            dice = dice[..., 1:]
        return self.loss_weight * (1 - dice.mean())

    @property
    def loss_name(self):
        return self._loss_name
