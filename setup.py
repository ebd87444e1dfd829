"""Build script: the metadata is in pyproject.toml; this file only lays out the packages.

The checkout keeps experiment configs and launchers at the top level (``configs/``,
``launch/``, run as ``python -m launch.train --config=configs/image.py:quick``). A wheel
must not install packages with such generic top-level names, so it ships them inside
nfscale as ``nfscale.configs`` and ``nfscale.launch`` (``nfscale-train --config=image:quick``,
``python -m nfscale.launch.train``). ``find_packages`` keeps every new ``nfscale.*``
subpackage in the wheel without a list to maintain.
"""

import setuptools

setuptools.setup(
    packages=setuptools.find_packages(include=["nfscale", "nfscale.*"])
    + ["nfscale.configs", "nfscale.launch"],
    package_dir={"nfscale.configs": "configs", "nfscale.launch": "launch"},
)
