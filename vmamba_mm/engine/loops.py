"""Validation of both the trained weights and their EMA, as the official VMamba reports them.

mmengine's EMAHook swaps the averaged weights into the model for validation, so a plain ValLoop
reports the EMA only. The official training script evaluates the model and its EMA every epoch
and keeps the best of each; ``RawAndEMAValLoop`` does the same in one pass over the data: the
metrics keep their usual names for the EMA weights (the ones the saved checkpoint's
``state_dict`` holds, so tools/test.py reproduces them) and get a ``raw/`` prefix for the weights
being trained.
"""
import copy

import torch
from mmengine.hooks import EMAHook
from mmengine.runner import ValLoop


class RawAndEMAValLoop(ValLoop):
    """ValLoop that also evaluates the raw weights when an EMAHook is active."""

    def _ema_hook(self):
        hooks = [h for h in self.runner.hooks if isinstance(h, EMAHook)]
        return hooks[0] if hooks else None

    def run(self):
        ema_hook = self._ema_hook()
        if ema_hook is None:
            return super().run()
        if not hasattr(self, 'raw_evaluator'):
            self.raw_evaluator = self.runner.build_evaluator(self.runner.cfg.val_evaluator)
            self.raw_evaluator.dataset_meta = getattr(self.dataloader.dataset, 'metainfo', None)
        self.runner.call_hook('before_val')
        # EMAHook swaps the averaged weights into the model here; until after_val_epoch its copy
        # of the model holds the raw ones.
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()
        raw_model = ema_hook.ema_model.module
        raw_model.eval()
        self.val_loss.clear()
        for idx, data_batch in enumerate(self.dataloader):
            raw_batch = copy.deepcopy(data_batch)  # predict writes into the data samples
            self.run_iter(idx, data_batch)
            with torch.no_grad():
                raw_outputs = raw_model.val_step(raw_batch)
            self.raw_evaluator.process(data_samples=raw_outputs, data_batch=raw_batch)
        size = len(self.dataloader.dataset)
        metrics = self.evaluator.evaluate(size)
        metrics.update({f'raw/{k}': v for k, v in self.raw_evaluator.evaluate(size).items()})
        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics
