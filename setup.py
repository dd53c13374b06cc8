"""`kernels/` installs as `vimamba.kernels` and `downstream/` as `vimamba.downstream`: one import root for the package."""
from setuptools import find_packages, setup

_MAPPED = {"vimamba.kernels": "kernels", "vimamba.downstream": "downstream"}

packages = find_packages(include=["vimamba", "vimamba.*"])
for name, folder in _MAPPED.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir={"vimamba": "vimamba", **_MAPPED})
