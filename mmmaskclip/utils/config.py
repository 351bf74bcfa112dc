# Copyright (c) mmmaskclip contributors. All rights reserved.
"""``mmmaskclip::`` config paths, as ``mmdet::`` names a config shipped with mmdet."""
import os.path as osp

PREFIX = 'mmmaskclip::'


def resolve_config_path(path: str) -> str:
    """``'mmmaskclip::proposals/x.py'`` -> the file in this package's configs
    (``mmmaskclip/.mim/configs`` when installed, ``configs/`` of a checkout);
    other paths are returned unchanged.

    Raises:
        FileNotFoundError: naming the places searched.
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
    raise FileNotFoundError(f'{path} is not a config of mmmaskclip (looked for '
                            f'{" and ".join(candidates)}).')
