"""vmamba-mm in the OpenMMLab registries: one function, run by ``import vmamba_mm`` when mmengine
is installed (configs import the package through ``custom_imports``).

It registers ``VSSM`` in the MODELS of each task package that is installed (mmpretrain, mmdet,
mmseg; a missing one is skipped alone), whole-slide classification (``WSIFeatureDataset``,
``MILClassifier`` and its aggregators, ``SlideMetrics``) in mmpretrain's, U-Mamba2-style
segmentation (``UMamba2``, ``UMamba2Head``, ``PromptedEncoderDecoder``, ``SoftDiceLoss``, and the
click transforms ``SampleClicks`` and ``SelectObject``) in mmseg's, the hooks, the validation loop,
the CPU DDP wrapper and the data checks in mmengine's registries (``ValidateSegLabels`` in mmseg's
TRANSFORMS), installs the checkpoint loader that works on torch >= 2.6 and the strict, converting
loading of weights into models that hold a VSSM (``vmamba_mm.checkpoint.fit``), and sends the model
core's and the kernels' log records (stdlib ``logging``, loggers ``vmamba_mm`` and
``vmamba_kernels``) to mmengine's current logger.
"""
import importlib
import importlib.util
import logging

from .models import VSSM

TASK_PACKAGES = ('mmpretrain', 'mmdet', 'mmseg')
registered_in = []


def is_installed(package):
    return importlib.util.find_spec(package) is not None


class MMEngineLogBridge(logging.Handler):
    """Hands ``vmamba_mm`` and ``vmamba_kernels`` log records to mmengine's current logger (what
    a run writes)."""

    def emit(self, record):
        from mmengine.logging import print_log
        print_log(self.format(record), logger='current', level=record.levelno)


# The loggers whose records belong in a run's log: the model core's and the kernels' (which
# backend each scan operation runs, and why).
BRIDGED_LOGGERS = ('vmamba_mm', 'vmamba_kernels')


def _route_logs_to_mmengine():
    for name in BRIDGED_LOGGERS:
        package_logger = logging.getLogger(name)
        if any(isinstance(h, MMEngineLogBridge) for h in package_logger.handlers):
            continue
        package_logger.addHandler(MMEngineLogBridge())
        if package_logger.level == logging.NOTSET:
            # they log at INFO what they loaded and chose; mmengine's logger filters by its level
            package_logger.setLevel(logging.INFO)


def _register_in_mmengine():
    from mmengine.registry import HOOKS, LOOPS, MODEL_WRAPPERS, TRANSFORMS

    from .checkpoint.fit import install_strict_loading
    from .checkpoint.mmengine_loader import register_checkpoint_loader
    from .datasets.transforms import RefuseEmptyFiles
    from .engine.dist import CPUDistributedDataParallel
    from .engine.hooks import (AtomicCheckpointHook, CheckpointFitHook, RandomStateHook,
                               StopOnNonFiniteLossHook)
    from .engine.loops import RawAndEMAValLoop
    for hook in (AtomicCheckpointHook, StopOnNonFiniteLossHook, CheckpointFitHook,
                 RandomStateHook):
        HOOKS.register_module(module=hook, force=True)
    LOOPS.register_module(module=RawAndEMAValLoop, force=True)
    MODEL_WRAPPERS.register_module(module=CPUDistributedDataParallel, force=True)
    TRANSFORMS.register_module(module=RefuseEmptyFiles, force=True)
    register_checkpoint_loader()
    install_strict_loading()
    _route_logs_to_mmengine()


def register_all_modules():
    """Register everything vmamba-mm adds to OpenMMLab; idempotent. Returns the task packages
    VSSM is registered in."""
    if not is_installed('mmengine'):
        raise RuntimeError('vmamba_mm.registry.register_all_modules needs mmengine, which is not '
                           'installed; the model core (vmamba_mm.create_model, VSSM) works '
                           'without it.')
    _register_in_mmengine()
    for package in TASK_PACKAGES:
        if package in registered_in or not is_installed(package):
            continue
        registry = importlib.import_module(f'{package}.registry')
        registry.MODELS.register_module(name='VSSM', module=VSSM, force=True)
        if package == 'mmpretrain':
            # whole-slide classification: the CLAM-layout dataset, the classifier, its
            # aggregators (MODELS, so that the config checks read model.aggregator's keys) and
            # its metrics
            from .datasets.wsi import WSIFeatureDataset
            from .engine.slide_metrics import SlideMetrics
            from .models.mil import ABMIL, MambaMIL, TwoDMambaMIL
            from .models.mil.classifier import MILClassifier
            registry.DATASETS.register_module(name='WSIFeatureDataset', module=WSIFeatureDataset,
                                              force=True)
            registry.MODELS.register_module(name='MILClassifier', module=MILClassifier,
                                            force=True)
            registry.MODELS.register_module(name='ABMIL', module=ABMIL, force=True)
            registry.MODELS.register_module(name='MambaMIL', module=MambaMIL, force=True)
            registry.MODELS.register_module(name='TwoDMambaMIL', module=TwoDMambaMIL, force=True)
            registry.METRICS.register_module(name='SlideMetrics', module=SlideMetrics, force=True)
        if package == 'mmseg':
            from .datasets.clicks import SampleClicks, SelectObject
            from .datasets.transforms import ValidateSegLabels
            from .models.umamba2.losses import SoftDiceLoss
            from .models.umamba2.segmentor import PromptedEncoderDecoder
            from .models.umamba2.unet import UMamba2, UMamba2Head
            registry.TRANSFORMS.register_module(name='ValidateSegLabels',
                                                module=ValidateSegLabels, force=True)
            registry.TRANSFORMS.register_module(name='SampleClicks', module=SampleClicks,
                                                force=True)
            registry.TRANSFORMS.register_module(name='SelectObject', module=SelectObject,
                                                force=True)
            # U-Mamba2-style segmentation
            registry.MODELS.register_module(name='UMamba2', module=UMamba2, force=True)
            registry.MODELS.register_module(name='UMamba2Head', module=UMamba2Head, force=True)
            registry.MODELS.register_module(name='PromptedEncoderDecoder',
                                            module=PromptedEncoderDecoder, force=True)
            registry.MODELS.register_module(name='SoftDiceLoss', module=SoftDiceLoss, force=True)
        registered_in.append(package)
    return list(registered_in)
