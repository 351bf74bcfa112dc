# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Imports inside mmmaskclip point one way: a layer never imports a higher one."""
import ast
import glob
import os.path as osp

import pytest

PACKAGE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'mmmaskclip')

#: The layers, lowest first (README "Layout"); a unit may import lower layers only.
LAYERS = (
    ('mmmaskclip.version', 'mmmaskclip.utils'),
    ('mmmaskclip.models.utils', 'mmmaskclip.datasets', 'mmmaskclip.engine'),
    ('mmmaskclip.models.geometry', 'mmmaskclip.models.clip_loader', 'mmmaskclip.evaluation'),
    ('mmmaskclip.models.layers', ),
    ('mmmaskclip.models.backbones', 'mmmaskclip.models.text', 'mmmaskclip.models.proposers',
     'mmmaskclip.models.heads', 'mmmaskclip.models.post_processing'),
    ('mmmaskclip.models.detectors', ),
    ('mmmaskclip.models', ),  # the registering aggregate
    ('mmmaskclip', ),  # importing it registers everything
    ('mmmaskclip.apis', ),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """The layer unit of a dotted module name (its longest prefix in ``RANK``)."""
    parts = module.split('.')
    for n in range(len(parts), 0, -1):
        if '.'.join(parts[:n]) in RANK:
            return '.'.join(parts[:n])
    raise KeyError(f'{module} is in no layer: add it to LAYERS')


def submodule_or_package(package: str, name: str) -> str:
    """What ``from package import name`` imports: the submodule if there is one."""
    path = osp.join(osp.dirname(PACKAGE), *package.split('.'), name)
    return f'{package}.{name}' if osp.isdir(path) or osp.isfile(path + '.py') else package


def imports() -> list:
    """``(importer, imported)`` module names of every mmmaskclip import."""
    edges = []
    for path in glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True):
        rel = osp.relpath(path, osp.dirname(PACKAGE))[:-3].replace(osp.sep, '.')
        is_pkg = rel.endswith('.__init__')
        module = rel[:-len('.__init__')] if is_pkg else rel
        package = module if is_pkg else module.rsplit('.', 1)[0]
        for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1])
                    base = f'{base}.{node.module}' if node.module else base
                else:
                    base = node.module
                targets = [submodule_or_package(base, alias.name) for alias in node.names]
            else:
                continue
            edges += [(module, t) for t in targets if t.split('.')[0] == 'mmmaskclip']
    return edges


def test_every_module_is_in_a_layer():
    for importer, imported in imports():
        unit_of(importer), unit_of(imported)


@pytest.mark.parametrize('rank', range(len(LAYERS)), ids=lambda r: LAYERS[r][0])
def test_no_import_goes_up(rank):
    for importer, imported in imports():
        src, dst = unit_of(importer), unit_of(imported)
        if RANK[src] == rank and src != dst:
            assert RANK[dst] < rank, f'{importer} (layer {rank}) imports {imported} ' \
                f'(layer {RANK[dst]})'
