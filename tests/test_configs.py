# Copyright (c) mmmaskclip contributors. All rights reserved.
"""model-index.yml, metafiles and every config: they parse and resolve."""
import glob
import os.path as osp

import pytest
import yaml
from mmengine.config import Config

from mmdet.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'maskclip', '*.py')))


def test_model_index_lists_every_config():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    listed = set()
    for meta in index['Import']:
        with open(osp.join(REPO, meta)) as f:
            for model in yaml.safe_load(f)['Models']:
                assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']
                listed.add(osp.join(REPO, model['Config']))
    assert listed == set(CONFIGS)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_parses_and_types_resolve(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmdet'
    assert 'mmmaskclip' in cfg.custom_imports['imports']
    assert MODELS.get(cfg.model.type) is not None
    for key in ('visual_encoder', 'region_encoder', 'text_encoder', 'proposer', 'head'):
        if cfg.model.get(key):
            assert MODELS.get(cfg.model[key]['type']) is not None, key
