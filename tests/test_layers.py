# Licensed under a 3-clause BSD style license - see LICENSE
"""
The package's structure: layers, no import circles, deprecated aliases.

Every module belongs to one layer and imports only from its own layer or
lower ones, with no circle, counting imports inside functions too (a
lazy import hides a circle, it does not remove it).
"""

import ast
import importlib
import sys
from pathlib import Path

import pytest
from astropy.utils.exceptions import AstropyDeprecationWarning

import ezbkg_ccd

PACKAGE = Path(ezbkg_ccd.__file__).parent

#: The layers, lowest first (the package docstring describes them).
LAYERS = (
    # foundations: no ezbkg-ccd imports
    {'_conditioning', '_dask', '_fits', '_headers', '_mesh_plot', '_moved',
     '_optional', '_uncertainty',
     '_wcs',
     '_sep', 'meshes', 'paths', 'provenance', 'registry', 'smoothing',
     'statistics', 'synthetic'},
    # reading FITS, SEP's C library, the result
    {'_reader', '_runners', '_sep.binding', 'background'},
    # the validation boundary, threaded strips
    {'_validation', '_sep.strips'},
    # the engine, estimators, FITS persistence, figures
    {'_engine', '_sep.lazy', '_sep.smooth', 'estimators', 'persistence',
     'plotting'},
    # the mask makers, file-backed backgrounds, frames on Dask
    {'masks', 'background_file', 'source_detection', 'lazy', 'subtracted'},
    # the public steps
    {'steps'},
    # workflows on top of the steps
    {'workflow', 'batch', 'demo'},
    # entry points, the package namespace and the deprecated aliases
    {'cli', '', 'conftest', 'edges', 'generator', 'science_image',
     'source_mask', 'strips'},
)

#: Deprecated module paths: what each still gives, and where it moved.
ALIASES = {'edges': ('fill_edges', 'ezbkg_ccd.meshes'),
           'generator': ('BackgroundGenerator', 'ezbkg_ccd.workflow'),
           'science_image': ('ScienceImage', 'ezbkg_ccd.workflow'),
           'source_mask': ('make_source_mask', 'ezbkg_ccd.masks'),
           'strips': ('usable', 'ezbkg_ccd._sep.strips')}


def _modules():
    """Every module of the package, by name relative to it."""
    names = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = path.relative_to(PACKAGE).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        names['.'.join(parts)] = path
    return names


MODULES = _modules()


def _imports(name, path):
    """The package modules that module ``name`` imports, anywhere in it."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ''
            if node.level:
                base = ('ezbkg_ccd.' + package).rstrip('.')
                base = base.rsplit('.', node.level - 1)[0]
                module = f'{base}.{module}'.rstrip('.')
            targets = [f'{module}.{alias.name}' for alias in node.names]
            targets = [t if t.removeprefix('ezbkg_ccd.') in MODULES
                       else module for t in targets]
        else:
            continue
        for target in targets:
            if target == 'ezbkg_ccd' or target.startswith('ezbkg_ccd.'):
                found.add(target.removeprefix('ezbkg_ccd').lstrip('.'))
    return found - {name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name):
    return next(index for index, layer in enumerate(LAYERS) if name in layer)


def test_every_module_has_one_layer():
    """A new module must be placed in a layer (and only one)."""
    placed = [name for layer in LAYERS for name in layer]
    assert sorted(placed) == sorted(set(placed))
    assert set(MODULES) == set(placed)


@pytest.mark.parametrize('name', sorted(MODULES))
def test_no_import_from_a_higher_layer(name):
    """Each module imports from its own layer or lower ones only."""
    higher = {target for target in GRAPH[name]
              if _layer(target) > _layer(name)}
    assert not higher, f'{name or "ezbkg_ccd"} imports higher: {higher}'


def test_no_import_circles():
    """No chain of imports (lazy ones included) leads back to its start."""
    finished, path = set(), []

    def visit(name):
        if name in path:
            cycle = path[path.index(name):] + [name]
            pytest.fail('import circle: ' + ' -> '.join(cycle))
        if name in finished:
            return
        path.append(name)
        for target in sorted(GRAPH[name]):
            visit(target)
        path.pop()
        finished.add(name)

    for name in sorted(GRAPH):
        visit(name)


def test_circle_is_found(monkeypatch):
    """The circle check fails on a circle (it is not vacuous)."""
    monkeypatch.setitem(GRAPH, 'meshes', GRAPH['meshes'] | {'_sep.binding'})
    with pytest.raises(pytest.fail.Exception, match='import circle: '
                       r'meshes -> _sep.binding -> meshes'):
        test_no_import_circles()


@pytest.mark.parametrize('name', sorted(set(MODULES) - {'conftest'}))
def test_modules_say_what_they_are_for(name):
    """Every module has a docstring and ``__all__``."""
    tree = ast.parse(MODULES[name].read_text())
    assert (ast.get_docstring(tree) or '').strip()
    assert any(isinstance(node, ast.Assign)
               and any(getattr(target, 'id', None) == '__all__'
                       for target in node.targets) for node in tree.body)


@pytest.mark.parametrize('alias', sorted(ALIASES))
def test_deprecated_aliases(alias, monkeypatch):
    """The module paths of 0.1 still work for one release, with a warning
    that says where to go, and give the very objects of the new home."""
    name, home = ALIASES[alias]
    monkeypatch.delitem(sys.modules, f'ezbkg_ccd.{alias}', raising=False)
    with pytest.warns(AstropyDeprecationWarning,
                      match=f'ezbkg_ccd.{alias} is deprecated since '
                      'ezbkg-ccd 0.2 and will be removed in 0.3') as caught:
        module = importlib.import_module(f'ezbkg_ccd.{alias}')
    assert caught[0].filename == __file__  # the importing line
    assert getattr(module, name) is getattr(importlib.import_module(home),
                                            name)
    monkeypatch.delitem(sys.modules, f'ezbkg_ccd.{alias}')
    monkeypatch.delattr(ezbkg_ccd, alias, raising=False)
    with pytest.warns(AstropyDeprecationWarning, match=f'ezbkg_ccd.{alias} '
                      'is deprecated'):
        assert getattr(getattr(ezbkg_ccd, alias), name) is getattr(module,
                                                                   name)
