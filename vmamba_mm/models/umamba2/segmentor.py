"""``PromptedEncoderDecoder``: mmseg's EncoderDecoder whose backbone also receives each data
sample's click prompts (``data_sample.clicks``, written by the ``SampleClicks`` transform and
carried by ``PackSegInputs``' meta_keys), in training and in prediction.

Clicks on the model's own errors (SAM's and RITM's iterative recipe), with ``error_clicks`` in
``train_cfg`` or ``test_cfg``: that many rounds, each predicting with the clicks so far and then
adding, per image, a click at the interior of the largest region the prediction gets wrong,
labelled with the true class there. In training this puts clicks where reading them lowers the
loss; in testing it is the simulated user of interactive benchmarks (the ground truth decides
where the next click goes), so a checkpoint's mIoU after N corrective clicks can be measured.
"""
import numpy as np
import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder

from ...datasets.clicks import click_in_image, find_regions
from .clicks import pad_clicks


class PromptedEncoderDecoder(EncoderDecoder):
    """An EncoderDecoder for a backbone that takes clicks (``backbone.takes_clicks``); with any
    other backbone it is a plain EncoderDecoder. A sample without clicks runs unprompted.
    ``train_cfg`` / ``test_cfg`` may hold ``error_clicks`` (rounds of clicks on the errors, see
    the module docstring; default 0)."""

    def extract_feat(self, inputs, batch_img_metas=None):
        if batch_img_metas is None or not getattr(self.backbone, 'takes_clicks', False):
            return super().extract_feat(inputs)
        clicks, valid = pad_clicks([meta.get('clicks') for meta in batch_img_metas],
                                   inputs.device)
        x = self.backbone(inputs, clicks=clicks, valid=valid)
        return self.neck(x) if self.with_neck else x

    def encode_decode(self, inputs, batch_img_metas):
        x = self.extract_feat(inputs, batch_img_metas)
        return self.decode_head.predict(x, batch_img_metas, self.test_cfg)

    def loss(self, inputs, data_samples):
        self.click_on_errors(inputs, data_samples, self.train_cfg, jitter=True)
        x = self.extract_feat(inputs, [sample.metainfo for sample in data_samples])
        losses = dict()
        losses.update(self._decode_head_forward_train(x, data_samples))
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(x, data_samples))
        return losses

    def predict(self, inputs, data_samples=None):
        if data_samples is not None:
            self.click_on_errors(inputs, data_samples, self.test_cfg, jitter=False)
        return super().predict(inputs, data_samples)

    def click_on_errors(self, inputs, data_samples, cfg, jitter):
        """``cfg.error_clicks`` rounds of one click per image on its largest error region (the
        module docstring), written into each sample's ``clicks``."""
        rounds = int((cfg or {}).get('error_clicks', 0))
        if not rounds or not getattr(self.backbone, 'takes_clicks', False):
            return
        if any('gt_sem_seg' not in sample for sample in data_samples):
            raise ValueError('PromptedEncoderDecoder: error_clicks needs each data sample\'s '
                             'gt_sem_seg (the simulated user clicks where the prediction is '
                             'wrong): load the annotations in the pipeline, or set '
                             'error_clicks=0.')
        ignore_index = self.decode_head.ignore_index
        for _ in range(rounds):
            metas = [sample.metainfo for sample in data_samples]
            with torch.no_grad():
                # training predicts as its loss step sees the image; testing as test_cfg says
                logits = (self.encode_decode(inputs, metas) if self.training else
                          self.inference(inputs, metas))
            predicted = logits.argmax(1)
            for sample, prediction in zip(data_samples, predicted):
                click = _click_on_largest_error(prediction, sample, ignore_index, jitter)
                if click is not None:
                    clicks = sample.metainfo.get('clicks')
                    clicks = np.zeros((0, 3), np.float32) if clicks is None else \
                        np.asarray(clicks, dtype=np.float32).reshape(-1, 3)
                    sample.set_metainfo(dict(clicks=np.concatenate(
                        [clicks, np.asarray([click], np.float32)])))

    def slide_inference(self, inputs, batch_img_metas):
        if any(meta.get('clicks') is not None and len(meta['clicks'])
               for meta in batch_img_metas):
            raise ValueError("PromptedEncoderDecoder: test_cfg mode='slide' runs the model on "
                             "crops, where the clicks' image coordinates do not apply; use "
                             "test_cfg=dict(mode='whole') with clicks.")
        return super().slide_inference(inputs, batch_img_metas)


def _click_on_largest_error(prediction, sample, ignore_index, jitter):
    """(x, y, label) in the input image's pixels at the interior of the largest region where
    ``prediction`` (H_in, W_in) differs from the sample's ground truth, or None where it has no
    error. The prediction is compared in the ground truth's frame: cropped to the image (no
    padding) and resized to the label map, as SampleClicks maps its clicks back."""
    truth = sample.gt_sem_seg.data[0]
    img_height, img_width = sample.metainfo.get('img_shape', truth.shape)[:2]
    prediction = prediction[:img_height, :img_width]
    if tuple(prediction.shape) != tuple(truth.shape):
        prediction = F.interpolate(prediction[None, None].float(), size=tuple(truth.shape),
                                   mode='nearest')[0, 0].long()
    truth = truth.to(prediction.device)
    wrong = torch.where((prediction != truth) & (truth != ignore_index), truth,
                        torch.full_like(truth, ignore_index))
    regions = find_regions(wrong.cpu().numpy(), ignore_index, limit=1)
    if not regions:
        return None
    cls, box, mask = regions[0]
    return click_in_image(float(cls), box, mask, tuple(truth.shape), (img_height, img_width),
                          jitter)
