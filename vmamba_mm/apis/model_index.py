"""Every shipped config by name: the repository's model index (``model-index.yml``, OpenMMLab's
format) read for lookups, registered with mmpretrain, and the ``vmamba-mm://`` checkpoint scheme.

Importing this module (``import vmamba_mm`` does it where mmengine is installed):

- registers the classification metafiles with mmpretrain's ``ModelHub``, so that
  ``mmpretrain.get_model('vmamba-tiny-s1l8_8xb128_in1k')``, ``inference_model`` and
  ``ImageClassificationInferencer`` take the names, and ``mmpretrain.list_models('*vmamba*')``
  lists them. Detection and segmentation names are not given to mmpretrain (it would build them
  in its own registry and fail); mmdet's ``DetInferencer`` and mmseg's ``MMSegInferencer`` look
  names up only in their own packages' model index, so for them :func:`find_model` gives the
  config path and the checkpoint (``demo/image_demo.py`` takes the names of all three tasks);
- registers the ``vmamba-mm://FILE`` scheme with mmengine's ``CheckpointLoader``: FILE in the
  local checkpoint folder (``$VMAMBA_MM_CHECKPOINTS``, else ``checkpoints/`` in the repository
  root). The metafiles' ``Weights`` use it: the released files cannot be downloaded by name, the
  user converts each once with ``tools/model_converters/vmamba2mm.py`` into that folder, and a
  missing file is an error that names the release and the conversion command.

The metafiles and configs are read from the repository this package is in (an editable install
or a checkout on the path); without them nothing is registered and a lookup says where it looked.
"""
import difflib
import fnmatch
import os
import os.path as osp
from functools import lru_cache
from typing import NamedTuple, Optional, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))  # the repository
MODEL_INDEX = osp.join(ROOT, 'model-index.yml')
SCHEME = 'vmamba-mm://'
CHECKPOINT_FOLDER_VARIABLE = 'VMAMBA_MM_CHECKPOINTS'
CONVERTER = osp.join(ROOT, 'tools', 'model_converters', 'vmamba2mm.py')
CLASSIFICATION = 'Image Classification'
# The task package whose inferencer runs each metafile task.
TASK_SCOPES = {
    CLASSIFICATION: 'mmpretrain',
    'Object Detection': 'mmdet',
    'Instance Segmentation': 'mmdet',
    'Semantic Segmentation': 'mmseg',
}


class UnknownModelError(ValueError):
    """A name that is not in the model index; the message lists the nearest names."""


class ModelEntry(NamedTuple):
    name: str
    tasks: Tuple[str, ...]  # metafile Results tasks, e.g. ('Object Detection', 'Instance ...')
    config: str  # absolute path
    weights: str  # the metafile's Weights: vmamba-mm://FILE
    released_weights: Optional[str]  # the official file it is converted from, where one is known
    released_code: Optional[str]
    metafile: str  # absolute path

    @property
    def scope(self):
        """The task package of the model (mmpretrain, mmdet or mmseg)."""
        return TASK_SCOPES[self.tasks[0]]

    @property
    def checkpoint(self):
        """Where the converted weights of this model are read from."""
        return local_checkpoint_path(self.weights)


def _read_yaml(path):
    import yaml
    with open(path, encoding='utf-8') as f:
        return yaml.safe_load(f)


def metafiles():
    """The metafiles model-index.yml imports, as absolute paths."""
    if not osp.isfile(MODEL_INDEX):
        raise FileNotFoundError(
            f'no model index at {MODEL_INDEX}: model names work from a checkout of the '
            f'vmamba-mm repository (installed with pip install -e .), whose model-index.yml and '
            f'configs/ they name; give a config file instead.')
    return [osp.join(ROOT, path) for path in _read_yaml(MODEL_INDEX)['Import']]


@lru_cache(maxsize=None)
def entries():
    """Every model of the index by name, in the order of the metafiles."""
    found = {}
    for metafile in metafiles():
        for model in _read_yaml(metafile)['Models']:
            converted = model.get('Converted From') or {}
            entry = ModelEntry(
                name=model['Name'],
                tasks=tuple(result['Task'] for result in model['Results']),
                config=osp.join(ROOT, model['Config']),
                weights=model['Weights'],
                released_weights=converted.get('Weights'),
                released_code=converted.get('Code'),
                metafile=metafile)
            if entry.name in found:
                raise ValueError(f'model name {entry.name} is in both {found[entry.name].metafile} '
                                 f'and {metafile}')
            found[entry.name] = entry
    return found


def list_names(pattern='*', task=None):
    """Sorted names matching a shell-style pattern, of one metafile task if given."""
    return sorted(name for name, entry in entries().items()
                  if fnmatch.fnmatch(name, pattern) and (task is None or task in entry.tasks))


def find_model(name):
    """The entry of a model name; an unknown name raises UnknownModelError with close names."""
    known = entries()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
    hint = (f'did you mean {", ".join(close)}?' if close
            else f'known names: {", ".join(sorted(known))}')
    raise UnknownModelError(f'unknown model name {name!r} (not in {MODEL_INDEX}); {hint}')


def checkpoint_folder():
    """The folder that vmamba-mm://FILE names a file of."""
    return os.environ.get(CHECKPOINT_FOLDER_VARIABLE) or osp.join(ROOT, 'checkpoints')


def local_checkpoint_path(weights):
    """The local file of a vmamba-mm://FILE address."""
    if not weights.startswith(SCHEME):
        raise ValueError(f'{weights!r} is not a {SCHEME}FILE address')
    return osp.join(checkpoint_folder(), weights[len(SCHEME):])


def missing_checkpoint_message(weights, path):
    """Why a vmamba-mm:// file is missing and how to make it: the release and the command."""
    owners = [entry for entry in entries().values() if entry.weights == weights] \
        if osp.isfile(MODEL_INDEX) else []
    lead = f'{owners[0].name}: ' if owners else ''
    message = (f'{lead}no converted checkpoint at {path} (from {weights}; the folder is '
               f'${CHECKPOINT_FOLDER_VARIABLE}, else checkpoints/ in {ROOT}). Released weights '
               f'are not downloaded by name: ')
    released = owners[0].released_weights if owners else None
    if released:
        message += (f'download {released} and convert it once with '
                    f'python {CONVERTER} {released.rsplit("/", 1)[-1]} {path}')
    else:
        code = owners[0].released_code if owners else None
        message += (f'convert the released checkpoint{f" ({code})" if code else ""} once with '
                    f'python {CONVERTER} RELEASED.pth {path}')
    return message + ', or pass a converted file itself (pretrained=PATH, or the CHECKPOINT ' \
        'argument of the tools).'


def load_local_checkpoint(filename, map_location=None):
    """mmengine CheckpointLoader scheme for vmamba-mm://FILE: read the local converted file (with
    the project's safe reader), or say how to make it."""
    path = local_checkpoint_path(filename)
    if not osp.isfile(path):
        raise FileNotFoundError(missing_checkpoint_message(filename, path))
    # needs mmengine, as this scheme does
    from ..checkpoint.mmengine_loader import remember_source, trusted_load
    return remember_source(trusted_load(path, map_location=map_location), path)


def register_checkpoint_scheme():
    from mmengine.runner.checkpoint import CheckpointLoader
    if CheckpointLoader._schemes.get(SCHEME) is not load_local_checkpoint:
        CheckpointLoader.register_scheme(prefixes=SCHEME, loader=load_local_checkpoint,
                                         force=True)


def classification_metafiles():
    """The metafiles whose models are all classifiers: those mmpretrain is given."""
    return [metafile for metafile in metafiles()
            if all(entry.tasks == (CLASSIFICATION, ) for entry in entries().values()
                   if entry.metafile == metafile)]


def register_with_mmpretrain():
    """Give mmpretrain's ModelHub the classifiers (config paths relative to the repository root).
    Idempotent: a metafile whose names are registered already is skipped (ModelHub refuses a
    name twice). Returns the names registered by this call."""
    from mmpretrain.apis.model import ModelHub
    added = []
    for metafile in classification_metafiles():
        names = [name for name, entry in entries().items() if entry.metafile == metafile]
        if all(ModelHub.has(name.lower()) for name in names):
            continue
        ModelHub.register_model_index(metafile, config_prefix=ROOT)
        added += names
    return added


def _register_on_import():
    import importlib.util
    if importlib.util.find_spec('mmengine') is None:
        return
    register_checkpoint_scheme()
    if osp.isfile(MODEL_INDEX) and importlib.util.find_spec('mmpretrain') is not None:
        register_with_mmpretrain()


_register_on_import()
