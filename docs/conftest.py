# Licensed under a 3-clause BSD style license - see LICENSE
"""Give the docstring examples a temporary directory to write in."""

import pytest


@pytest.fixture(autouse=True)
def _doctest_tmp_path(doctest_namespace, tmp_path):
    """Expose pytest's ``tmp_path`` to doctests."""
    doctest_namespace['tmp_path'] = tmp_path


#: Sphinx configuration and build products are not doctests.
collect_ignore = ['conf.py', 'inventories.py']
collect_ignore_glob = ['_build/*', 'api/*']
