"""The package list, derived from the folders: ``vlx/`` is ``vlx``, ``models/`` is ``vlx.models``
and ``tasks/`` is ``vlx.tasks``, each with every subpackage found in it, so a new subpackage
is never left out of the wheel. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

ROOTS = {"vlx": "vlx", "vlx.models": "models", "vlx.tasks": "tasks"}


def packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        found += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
    return found


setup(packages=packages(), package_dir=ROOTS)
