"""Where the repository's files are, the same from every folder under tests/.

Paths are strings: the tests hand them to subprocesses, f-strings and mmengine configs.
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, 'configs')
DATA_DIR = os.path.join(ROOT, 'tests', 'data')
TOOLS_DIR = os.path.join(ROOT, 'tools')

DEMO_CLASSIFICATION = os.path.join(CONFIG_DIR, 'demo', 'classification.py')
DEMO_CLASSIFICATION_2D = os.path.join(CONFIG_DIR, 'demo', 'classification_2d.py')
DEMO_CLASSIFICATION_V2M = os.path.join(CONFIG_DIR, 'demo', 'classification_v2m.py')
DEMO_CLASSIFICATION_SSD = os.path.join(CONFIG_DIR, 'demo', 'classification_ssd.py')
DEMO_DETECTION = os.path.join(CONFIG_DIR, 'demo', 'detection.py')
DEMO_SEGMENTATION = os.path.join(CONFIG_DIR, 'demo', 'segmentation.py')
DEMO_WSI = os.path.join(CONFIG_DIR, 'demo', 'wsi_2dmambamil.py')
IMAGENET_TINY = os.path.join(CONFIG_DIR, 'vmamba', 'vmamba-tiny-s1l8_8xb128_in1k.py')

CONVERTER = os.path.join(TOOLS_DIR, 'model_converters', 'vmamba2mm.py')
DEMO_DATA_GENERATOR = os.path.join(TOOLS_DIR, 'misc', 'generate_demo_data.py')

# Every state-dict key with its shape, and the parameter count, of the nine official classifiers
# as the official model code builds them (a copy of the reference file of the same name).
OFFICIAL_KEYS_JSON = os.path.join(DATA_DIR, 'official_vmamba_keys.json')
