"""Sphinx configuration of the Hyrax documentation site.

Build it with ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors). The notebooks in
``notebooks/`` are executed during the build, so every page shows real outputs; the configuration
reference is generated from the packaged defaults (``_ext/config_reference.py``).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "Hyrax"
author = "The Hyrax developers"
copyright = "2026, the Hyrax developers"  # noqa: A001 - Sphinx's name

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "config_reference"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "notebooks/results", "_ext", "_generated"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # included README sections start below the page's own title level

# Notebooks run at every build, in a scratch copy of their folder; a cell error fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_in_temp = True


autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = "Hyrax"
