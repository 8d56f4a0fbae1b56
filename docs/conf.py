"""Sphinx configuration for the skfairtune documentation.

Build (offline; nothing is fetched)::

    python -m sphinx -W -b html docs docs/_build/html
"""

import os
import sys

# Document the source tree even when the package is not installed.
sys.path.insert(0, os.path.abspath(".."))

import skfairtune  # noqa: E402

project = "skfairtune"
author = "skfairtune developers"
copyright = "2026, skfairtune developers"
release = skfairtune.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# No intersphinx: the build must work without network. Cross-references to
# scikit-learn, fairlearn, Optuna or torch objects stay plain text.
nitpicky = False

autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
# Methods are documented through autodoc's members; numpydoc's autosummary
# tables of members would need generated stub pages.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"skfairtune {release}"
html_theme_options = {
    "description": "FairTune for scikit-learn",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_static_path = []
# The mathjax script is referenced, not downloaded: pages render formulas when
# opened online and show the TeX source offline.
