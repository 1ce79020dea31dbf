"""The dev environment a fresh clone builds (`make venv`, the first step of `make run`)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

REPO = Path(__file__).resolve().parents[3]


def venv_recipe() -> str:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^\$\(STAMP\):.*?\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert match, "the Makefile has no $(STAMP) recipe"
    return match.group(1)


def test_the_project_metadata_builds_without_a_deprecation_warning() -> None:
    # GIVEN pyproject.toml as setuptools reads it for the editable install
    # WHEN it is read with every warning turned into an error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = read_configuration(REPO / "pyproject.toml")
    # THEN it reads, and the license is an SPDX expression
    assert config["project"]["license"] == "Apache-2.0"


def test_the_lock_is_installed_with_uv_at_the_version_the_lock_pins_and_pip_as_fallback() -> None:
    # GIVEN the lock file, the one source of versions
    lock = (REPO / "requirements" / "dev.txt").read_text(encoding="utf-8")
    assert re.search(r"^uv==\d+\.\d+\.\d+$", lock, re.MULTILINE), "uv is not pinned in requirements/dev.txt"
    assert re.search(r"^uv$", (REPO / "requirements" / "dev.in").read_text(encoding="utf-8"), re.MULTILINE)

    # WHEN the venv recipe is read
    recipe = venv_recipe()
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")

    # THEN uv comes from the lock's pin, installs the lock, and pip does the same when uv fails
    assert "grep -E '^uv==' requirements/dev.txt" in makefile
    assert "uv pip install --quiet --python $(PY) -r requirements/dev.txt" in recipe
    assert "$(PY) -m pip install --quiet -r requirements/dev.txt" in recipe
    assert recipe.count("--no-deps --no-build-isolation -e .") == 2
