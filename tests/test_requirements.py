# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The requirement files agree with each other and with the lint hooks."""
import os.path as osp
import re

import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def pins(name: str) -> dict:
    """``{package: specifier}`` of ``requirements/<name>.txt``."""
    out = {}
    with open(osp.join(REPO, 'requirements', f'{name}.txt')) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line:
                package, spec = re.match(r'([A-Za-z0-9_.-]+)(.*)', line).groups()
                out[package.lower().replace('_', '-')] = spec.strip()
    return out


def test_mim_extra_and_install_requires_agree():
    runtime, mim = pins('runtime'), pins('mminstall')
    for package, spec in mim.items():
        if package in runtime:
            assert runtime[package] == spec, package


def test_lint_pins_match_pre_commit_hooks():
    with open(osp.join(REPO, '.pre-commit-config.yaml')) as f:
        hooks = yaml.safe_load(f)['repos']
    revs = {h['repo'].rstrip('/').split('/')[-1].lower(): h['rev'].lstrip('v') for h in hooks}
    lint = pins('lint')
    assert set(revs) == set(lint)
    for package, rev in revs.items():
        assert lint[package] == f'=={rev}', package
