"""``PromptedEncoderDecoder``: mmseg's EncoderDecoder whose backbone also receives each data
sample's click prompts (``data_sample.clicks``, written by the ``SampleClicks`` transform and
carried by ``PackSegInputs``' meta_keys), in training and in prediction."""
from mmseg.models.segmentors import EncoderDecoder

from .clicks import pad_clicks


class PromptedEncoderDecoder(EncoderDecoder):
    """An EncoderDecoder for a backbone that takes clicks (``backbone.takes_clicks``); with any
    other backbone it is a plain EncoderDecoder. A sample without clicks runs unprompted."""

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
        x = self.extract_feat(inputs, [sample.metainfo for sample in data_samples])
        losses = dict()
        losses.update(self._decode_head_forward_train(x, data_samples))
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(x, data_samples))
        return losses

    def slide_inference(self, inputs, batch_img_metas):
        if any(meta.get('clicks') is not None and len(meta['clicks'])
               for meta in batch_img_metas):
            raise ValueError("PromptedEncoderDecoder: test_cfg mode='slide' runs the model on "
                             "crops, where the clicks' image coordinates do not apply; use "
                             "test_cfg=dict(mode='whole') with clicks.")
        return super().slide_inference(inputs, batch_img_metas)
