# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The README's module table and layout match the code."""
import inspect
import os
import os.path as osp
import re

import mmmaskclip

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.dirname(mmmaskclip.__file__)


def readme() -> str:
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        return f.read()


def registered_classes() -> dict:
    """``{name: file}`` of every class mmmaskclip registers in a registry."""
    from mmdet import registry as det_registry
    from mmengine.registry import Registry
    found = {}
    for reg in vars(det_registry).values():
        if not isinstance(reg, Registry):
            continue
        for name, obj in reg.module_dict.items():
            if inspect.isclass(obj) and obj.__module__.startswith('mmmaskclip.'):
                found[name] = osp.relpath(inspect.getfile(obj), REPO)
    return found


def module_table() -> list:
    """``(names, files)`` of each row of the 'Modules' table."""
    text = readme().split('## Modules', 1)[1].split('\n## ', 1)[0]
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 3 and cells[1].startswith('`mmmaskclip/'):
            rows.append((re.findall(r'`(\w+)`', cells[0]), re.findall(r'`([^`]+)`', cells[1])))
    return rows


def test_every_registered_class_is_in_the_module_table_at_its_file():
    rows = module_table()
    listed = {name: files for names, files in rows for name in names}
    for name, path in registered_classes().items():
        assert name in listed, f'{name} ({path}) is not in the README module table'
        assert any(path == f or (f.endswith('/') and path.startswith(f))
                   for f in listed[name]), (name, path, listed[name])


def test_module_table_and_layout_name_existing_paths():
    for _, files in module_table():
        for f in files:
            assert osp.exists(osp.join(REPO, f)), f
    layout = readme().split('## Layout', 1)[1].split('```')[1]
    actual = {d for d in os.listdir(PACKAGE) if osp.isfile(osp.join(PACKAGE, d, '__init__.py'))}
    actual |= {
        f'models.{d}'
        for d in os.listdir(osp.join(PACKAGE, 'models'))
        if osp.isfile(osp.join(PACKAGE, 'models', d, '__init__.py'))
    }
    top = set(re.findall(r'^  (\w+)/', layout, flags=re.M))  # mmmaskclip's subpackages
    sub = {f'models.{d}' for d in re.findall(r'^    (\w+)/', layout, flags=re.M)}  # models'
    assert top | sub == actual
