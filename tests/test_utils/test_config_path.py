# Copyright (c) mmmaskclip contributors. All rights reserved.
"""``mmmaskclip::`` config paths (used by the official preset's proposer)."""
import os.path as osp

import pytest

from mmmaskclip.models import DetectorProposer
from mmmaskclip.utils import resolve_config_path

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_resolve_config_path():
    rel = 'proposals/mask2former_r50_maskclip-official_class-agnostic.py'
    path = resolve_config_path('mmmaskclip::' + rel)
    assert osp.samefile(path, osp.join(REPO, 'configs', rel))
    assert resolve_config_path('configs/x.py') == 'configs/x.py'
    with pytest.raises(FileNotFoundError, match='not a config of mmmaskclip'):
        resolve_config_path('mmmaskclip::proposals/missing.py')
    model = DetectorProposer.detector_model_cfg('mmmaskclip::' + rel)
    assert model.type == 'Mask2Former' and model.panoptic_head.num_queries == 100
