# Licensed under a 3-clause BSD style license - see LICENSE
"""Give the docstring examples a temporary directory to write in."""

import pytest


@pytest.fixture(autouse=True)
def _doctest_tmp_path(doctest_namespace, tmp_path):
    """Expose pytest's ``tmp_path`` to doctests."""
    doctest_namespace['tmp_path'] = tmp_path


#: The deprecated alias modules warn on import and hold no examples
#: (``tests/test_layers.py`` tests them).
collect_ignore = [f'{name}.py' for name in (
    'edges', 'generator', 'science_image', 'source_mask', 'strips')]
