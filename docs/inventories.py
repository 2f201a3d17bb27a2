# Licensed under a 3-clause BSD style license - see LICENSE
"""
Offline intersphinx inventories.

The build machines reach package registries only, so the inventories of
astropy, ccdproc, photutils, numpy and Python cannot be downloaded. This
writes small ``objects.inv`` files for the objects our pages link to,
from the installed packages and each project's URL layout; ``conf.py``
points ``intersphinx_mapping`` at them.
"""

import importlib
import inspect
import zlib
from pathlib import Path

#: project -> (base URL, page pattern, {module: names or None for all public}).
PROJECTS = {
    'python': ('https://docs.python.org/3/', None, {
        'builtins': ['FileNotFoundError', 'FileExistsError', 'OSError',
                     'ValueError', 'TypeError', 'ImportError', 'dict',
                     'float', 'int', 'str', 'bool', 'list', 'tuple'],
        'pathlib': ['Path']}),
    'numpy': ('https://numpy.org/doc/stable/',
              'reference/generated/{name}.html#{name}', {
                  'numpy': ['ndarray', 'dtype'],
                  'numpy.random': ['Generator', 'default_rng']}),
    'astropy': ('https://docs.astropy.org/en/stable/',
                'api/{name}.html#{name}', {
                    'astropy.nddata': None, 'astropy.units': None,
                    'astropy.io.fits': None, 'astropy.stats': None,
                    'astropy.visualization': None,
                    'astropy.utils.exceptions': None}),
    'ccdproc': ('https://ccdproc.readthedocs.io/en/latest/',
                'api/{name}.html#{name}', {'ccdproc': None}),
    'photutils': ('https://photutils.readthedocs.io/en/stable/',
                  'api/{name}.html#{name}', {'photutils.background': None}),
}

_PYTHON_PAGES = {'builtins': 'library/exceptions.html#{short}',
                 'pathlib': 'library/pathlib.html#pathlib.{short}'}


def _entries(project, pattern, modules):
    for module_name, names in modules.items():
        module = importlib.import_module(module_name)
        if names is None:
            names = [name for name in getattr(module, '__all__', dir(module))
                     if not name.startswith('_')]
        for short in names:
            member = getattr(module, short, None)
            if member is None:
                continue
            role = 'class' if inspect.isclass(member) else 'function'
            if module_name == 'builtins':
                full = short
                if role == 'class' and not issubclass(member, BaseException):
                    uri = f'library/functions.html#{short}'
                else:
                    uri = _PYTHON_PAGES['builtins'].format(short=short)
                role = 'exception' if issubclass(member, BaseException) \
                    else 'class'
            elif project == 'python':
                full = f'{module_name}.{short}'
                uri = _PYTHON_PAGES[module_name].format(short=short)
            else:
                full = f'{module_name}.{short}'
                uri = pattern.format(name=full)
            yield f'{full} py:{role} 1 {uri} -'


def write_inventories(folder):
    """Write ``<project>.inv`` files into ``folder``; return the mapping."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for project, (base, pattern, modules) in PROJECTS.items():
        lines = sorted(set(_entries(project, pattern, modules)))
        header = (f'# Sphinx inventory version 2\n# Project: {project}\n'
                  '# Version: \n# The remainder of this file is compressed '
                  'using zlib.\n').encode()
        body = zlib.compress(('\n'.join(lines) + '\n').encode())
        path = folder / f'{project}.inv'
        path.write_bytes(header + body)
        mapping[project] = (base, str(path))
    return mapping
