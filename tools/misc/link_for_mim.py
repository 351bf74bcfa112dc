# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Let ``mim`` find an editable install of mmmaskclip (its configs, tools and model index).

mim looks for ``<site-packages>/mmmaskclip/.mim`` next to the distribution's metadata
(open-mmlab/mim#114). An editable install (``pip install -e .``, ``mim install -e .``,
PEP 660) puts only metadata and an import hook there, so ``mim train/run/search
mmmaskclip`` find nothing. This links ``<site-packages>/mmmaskclip`` to the checkout's
package, once per environment; run it with the environment's Python::

    python tools/misc/link_for_mim.py            # after an editable install
    python tools/misc/link_for_mim.py --remove   # before uninstalling / installing a wheel

Remove the link before a non-editable install into the same environment: pip would
otherwise write (and ``pip uninstall`` delete) files through it, in the checkout.
"""
import argparse
import json
import os
import os.path as osp
import sys
from importlib import metadata
from typing import List, Optional
from urllib.parse import unquote, urlparse

PACKAGE = 'mmmaskclip'


class LinkError(Exception):
    """A reason not to link, reported as one line."""


def editable_source(dist: metadata.Distribution) -> Optional[str]:
    """The checkout of an editable install (PEP 610 ``direct_url.json``), else None."""
    text = dist.read_text('direct_url.json')
    if not text:
        return None
    info = json.loads(text)
    if not info.get('dir_info', {}).get('editable'):
        return None
    return unquote(urlparse(info['url']).path)


def link(remove: bool = False) -> str:
    """Create (or with ``remove``, delete) the link; returns what was done."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise LinkError(f'{PACKAGE} is not installed in {sys.executable}: '
                        'run `pip install -e .` in the checkout first')
    dst = osp.join(str(dist.locate_file('')), PACKAGE)
    if remove:
        if osp.islink(dst):
            os.remove(dst)
            return f'removed {dst}'
        return f'no link at {dst}'
    src = editable_source(dist)
    if src is None:
        if osp.islink(dst):
            raise LinkError(f'{dst} links to {os.readlink(dst)} but {PACKAGE} is not an editable '
                            'install: remove the link with --remove, then reinstall')
        return f'{PACKAGE} is not an editable install: mim finds it already'
    pkg = osp.join(src, PACKAGE)
    if not osp.isdir(osp.join(pkg, '.mim')):
        raise LinkError(f'{pkg}/.mim is missing: run `pip install -e .` in {src} again '
                        '(setup.py links configs, tools and model-index.yml there)')
    if osp.islink(dst):
        if osp.realpath(dst) == osp.realpath(pkg):
            return f'{dst} already links to {pkg}'
        os.remove(dst)
    elif osp.exists(dst):
        raise LinkError(f'{dst} is a real folder (a non-editable install?): '
                        f'`pip uninstall {PACKAGE}` and reinstall with -e')
    os.symlink(pkg, dst)
    return f'linked {dst} -> {pkg}'


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description='Let mim find an editable install of mmmaskclip (open-mmlab/mim#114).')
    parser.add_argument(
        '--remove', action='store_true', help='delete the link (before uninstalling)')
    args = parser.parse_args(argv)
    try:
        print(f'[link_for_mim] {link(args.remove)}')
    except LinkError as err:
        print(f'[link_for_mim] error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
