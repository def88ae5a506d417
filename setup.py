# Metadata lives in pyproject.toml. This file only adds the top-level zoo/ folder
# (model cards and training recipes) to the wheel as the package fcn_keras.zoo_files,
# which pyproject's automatic package discovery cannot express.
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["fcn_keras", "fcn_keras.*"]) + ["fcn_keras.zoo_files"],
    package_dir={"fcn_keras.zoo_files": "zoo"},
    package_data={"fcn_keras.zoo_files": ["*.md", "cards/*.toml", "recipes/*.toml"], "fcn_keras": ["**/*.txt", "**/*.toml", "**/*.json"]},
)
