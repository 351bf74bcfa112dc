# Copyright (c) mmmaskclip contributors. All rights reserved.
"""``mmmaskclip::`` config paths, as ``mmdet::`` names a config shipped with mmdet."""
import os.path as osp
from typing import Optional

from .input_checks import MissingInputError, check_file

PREFIX = 'mmmaskclip::'


def resolve_config_path(path: str) -> str:
    """``'mmmaskclip::proposals/x.py'`` -> the file in this package's configs
    (``mmmaskclip/.mim/configs`` when installed, ``configs/`` of a checkout);
    other paths are returned unchanged.

    Raises:
        MissingInputError: (a ``FileNotFoundError``) naming the places
            searched.
    """
    if not path.startswith(PREFIX):
        return path
    relpath = path[len(PREFIX):]
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    candidates = [
        osp.join(package, '.mim', 'configs', relpath),
        osp.join(osp.dirname(package), 'configs', relpath)
    ]
    for candidate in candidates:
        if osp.isfile(candidate):
            return candidate
    raise MissingInputError(f'{path} is not a config of mmmaskclip (looked for '
                            f'{" and ".join(candidates)}).')


def load_config(path: str, cfg_options: Optional[dict] = None):
    """A config file (``mmmaskclip::`` paths resolved) with ``cfg_options``
    merged, a missing file reported in one sentence.

    Raises:
        MissingInputError: the file does not exist.
    """
    from mmengine.config import Config
    path = resolve_config_path(path)
    if '::' not in path:
        check_file(path, 'config')
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(cfg_options or {})
    return cfg
