# Licensed under a 3-clause BSD style license - see LICENSE
"""Sphinx configuration of the ezbkg-ccd documentation."""

import sys
from importlib.metadata import version as _version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from inventories import write_inventories  # noqa: E402

project = 'ezbkg-ccd'
author = 'the ezbkg-ccd developers'
copyright = f'2026, {author}'
release = _version('ezbkg-ccd')
version = '.'.join(release.split('.')[:2])

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.doctest',
    'sphinx.ext.intersphinx',
    'sphinx.ext.mathjax',
    'numpydoc',
    'sphinx_automodapi.automodapi',
    'sphinx_automodapi.smart_resolver',
    'matplotlib.sphinxext.plot_directive',
]

default_role = 'obj'
exclude_patterns = ['_build', '_inventories', 'conftest.py']
numpydoc_show_class_members = False
automodapi_inheritance_diagram = False
automodsumm_inherited_members = False
intersphinx_mapping = write_inventories(Path(__file__).parent / '_build'
                                        / 'inventories')
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [('png', 90)]
html_theme = 'alabaster'
html_static_path = []
suppress_warnings = ['config.cache']
