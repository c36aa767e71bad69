"""The package list, by discovery: ``vmamba_mm`` and its subpackages as they lie, and the
``kernels/`` folder with its operation subpackages installed as ``vmamba_kernels``
(``packages = find:`` in setup.cfg cannot rename a folder). Everything else is in setup.cfg."""
from setuptools import find_packages, setup

KERNELS_FOLDER = 'kernels'
kernel_packages = ['vmamba_kernels'] + [f'vmamba_kernels.{name}'
                                        for name in find_packages(KERNELS_FOLDER)]
setup(packages=find_packages(include=['vmamba_mm', 'vmamba_mm.*']) + kernel_packages,
      package_dir={'vmamba_kernels': KERNELS_FOLDER})
