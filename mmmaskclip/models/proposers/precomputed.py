# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Precomputed proposals: the on-disk format (read and write) and its proposer.

``tools/misc/dump_proposals.py`` writes, :class:`PrecomputedProposer` reads:
one ``<key>.npz`` of uint8-quantised mask logits per image plus a
``meta.json``. The format is specified in ``docs/internals.md``.
"""
import json
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Tuple

import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import OptMultiConfig
from mmengine.structures import InstanceData
from torch import Tensor

from ..geometry import shape2
from ..utils import Vocabulary
from .base_proposer import BaseProposer, MaskProposals

FORMAT_NAME = 'mmmaskclip-proposals'
FORMAT_VERSION = 1
META_FILE = 'meta.json'
KEYS = ('stem', 'img_id')
LEVELS = 256
#: suffix of the temporary files that writes go through (``x.npz.tmp<pid>``).
TMP_MARK = '.tmp'
DUMP_COMMAND = 'python tools/misc/dump_proposals.py CONFIG --out-dir {dir} [--split train]'


# ---------------------------------------------------------------- quantiser
def quantise_logits(logits: Tensor, logit_range: float) -> Tensor:
    """Float logits ``(...)`` -> uint8 codes ``(...)`` (mid-rise, ``±L``)."""
    step = 2 * logit_range / LEVELS
    codes = torch.floor((logits.float().clamp(-logit_range, logit_range) + logit_range) / step)
    return codes.clamp(0, LEVELS - 1).to(torch.uint8)


def dequantise_logits(codes: Tensor, logit_range: float) -> Tensor:
    """uint8 codes ``(...)`` -> float32 logits ``(...)`` at the bin centres."""
    step = 2 * logit_range / LEVELS
    return (codes.float() + 0.5) * step - logit_range


# ---------------------------------------------------------------- keys
def proposal_key(metainfo: dict, key: str = 'stem') -> str:
    """The file stem of an image's proposals (see the module docstring).

    Args:
        metainfo (dict): a data sample's metainfo or a dataset's data info.
        key (str): ``'stem'`` (basename of ``img_path`` without extension)
            or ``'img_id'``.
    """
    if key not in KEYS:
        raise ValueError(f'key must be one of {KEYS}, got {key!r}.')
    field = 'img_path' if key == 'stem' else 'img_id'
    if metainfo.get(field) is None:
        raise KeyError(f"Precomputed proposals are keyed by '{field}', which the sample does "
                       f"not carry: add '{field}' to PackDetInputs' meta_keys.")
    if key == 'img_id':
        return str(metainfo['img_id'])
    return osp.splitext(osp.basename(str(metainfo['img_path'])))[0]


def proposal_file(proposal_dir: str, metainfo: dict, key: str = 'stem') -> str:
    """Path of the ``.npz`` of one image."""
    return osp.join(proposal_dir, proposal_key(metainfo, key) + '.npz')


def read_meta(proposal_dir: str) -> Optional[dict]:
    """``meta.json`` of a proposal directory, or None if there is none."""
    path = osp.join(proposal_dir, META_FILE)
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


# ---------------------------------------------------------------- writing
def to_plain(obj):
    """Config objects -> JSON-friendly builtins (for ``meta.json``)."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


def proposal_settings(key: str, scale: float, logit_range: float, max_proposals: Optional[int],
                      proposer) -> dict:
    """What ``meta.json`` records about how a directory was written (a resumed
    dump must match it)."""
    if not 0 < scale <= 1:
        raise ValueError(f'scale must be in (0, 1], got {scale}.')
    if logit_range <= 0:
        raise ValueError(f'logit_range must be positive, got {logit_range}.')
    return dict(
        format=FORMAT_NAME,
        version=FORMAT_VERSION,
        key=key,
        scale=scale,
        quantisation=dict(
            dtype='uint8',
            levels=LEVELS,
            logit_range=logit_range,
            step=2 * logit_range / LEVELS,
            dequantise='logit = -L + (q + 0.5) * step'),
        max_proposals=max_proposals,
        proposer=to_plain(proposer))


def check_resume(proposal_dir: str, settings: dict) -> None:
    """Refuse to resume a directory written with other settings."""
    old = read_meta(proposal_dir)
    if old is None:
        return
    differ = [k for k, v in settings.items() if to_plain(old.get(k)) != to_plain(v)]
    if differ:
        raise ValueError(f'{proposal_dir} holds proposals written with other settings '
                         f'({", ".join(differ)}): use another directory or do not resume.')


def _replace_atomically(path: str, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to
    disk, then rename it to ``path``: readers see the old file or the whole
    new one, never a part."""
    tmp = f'{path}{TMP_MARK}{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def remove_partial_files(proposal_dir: str) -> int:
    """Delete temporary files left by an interrupted dump; return how many."""
    partial = re.compile(re.escape(TMP_MARK) + r'\d+$')
    names = [n for n in os.listdir(proposal_dir) if partial.search(n)]
    for name in names:
        os.remove(osp.join(proposal_dir, name))
    return len(names)


def write_meta(proposal_dir: str, settings: dict, **extra) -> None:
    """Write ``meta.json`` (atomically)."""
    text = json.dumps(dict(settings, **extra), indent=2).encode('utf-8')
    _replace_atomically(osp.join(proposal_dir, META_FILE), lambda f: f.write(text))


def write_proposals(path: str,
                    logits: Tensor,
                    ori_shape: Tuple[int, int],
                    logit_range: float,
                    objectness: Optional[Tensor] = None) -> None:
    """Write one image's ``.npz`` (see the module docstring), atomically: an
    interrupted run never leaves a truncated file that a resume would take
    as done.

    Args:
        path (str): the ``.npz`` file.
        logits (Tensor): ``(M, h, w)`` logits at the stored resolution.
        ori_shape (tuple[int, int]): the original image size.
        logit_range (float): the quantiser's clamp.
        objectness (Tensor, optional): ``(M,)``.
    """
    arrays = dict(
        masks=quantise_logits(logits, logit_range).cpu().numpy(),
        ori_shape=list(ori_shape),
        logit_range=float(logit_range))
    if objectness is not None:
        arrays['objectness'] = objectness.float().cpu().numpy()
    _replace_atomically(path, lambda f: np.savez_compressed(f, **arrays))


def read_proposals(path: str) -> dict:
    """All arrays of one image's ``.npz``, read in full.

    Raises:
        ValueError: if the file is truncated or otherwise not a complete
            proposal file (e.g. copied half-way), naming the file.
    """
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise ValueError(f'Proposal file {path} is truncated or corrupt ({err}): delete it and '
                         'rerun tools/misc/dump_proposals.py with --resume.') from err
    missing = [k for k in ('masks', 'ori_shape', 'logit_range') if k not in arrays]
    if missing:
        raise ValueError(f'Proposal file {path} lacks {missing}: delete it and rerun '
                         'tools/misc/dump_proposals.py with --resume.')
    return arrays


def is_complete(path: str) -> bool:
    """Whether ``path`` is a whole, readable proposal file."""
    if not osp.isfile(path):
        return False
    try:
        read_proposals(path)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- proposer
@MODELS.register_module()
class PrecomputedProposer(BaseProposer):
    """Read the proposals of each image from a directory of ``.npz`` files.

    The directory is written by ``tools/misc/dump_proposals.py`` (format in
    the module docstring). Proposals are stored at the original image
    geometry and follow the sample's pipeline: resized to ``img_shape``,
    flipped if the sample was, padded to the batch with
    :data:`PAD_MASK_LOGIT`; the proposal count is padded across the batch
    with ``valid=False``. Pipelines may resize and flip but not crop.

    Args:
        proposal_dir (str): the directory.
        key (str, optional): how images are named (``'stem'`` or
            ``'img_id'``); None reads it from ``meta.json`` (default
            ``'stem'`` without one).
        max_proposals (int, optional): keep at most this many proposals of
            each image: those of highest objectness where it is stored, else
            the first ones (in the stored order either way).
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 proposal_dir: str,
                 key: Optional[str] = None,
                 max_proposals: Optional[int] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.proposal_dir = proposal_dir
        self._key = key
        self.max_proposals = max_proposals
        self._meta: Optional[dict] = None

    @property
    def meta(self) -> dict:
        """``meta.json`` of the directory (checked once; {} without one)."""
        if self._meta is None:
            if not osp.isdir(self.proposal_dir):
                raise FileNotFoundError(
                    f'Precomputed proposal directory {self.proposal_dir} does not exist; '
                    'write it with: ' + DUMP_COMMAND.format(dir=self.proposal_dir))
            meta = read_meta(self.proposal_dir) or {}
            if meta and (meta.get('format') != FORMAT_NAME
                         or meta.get('version', 0) > FORMAT_VERSION):
                raise ValueError(f'{self.proposal_dir}/{META_FILE} is not a version <= '
                                 f'{FORMAT_VERSION} {FORMAT_NAME} directory: {meta}')
            self._meta = meta
        return self._meta

    @property
    def key(self) -> str:
        return self._key or self.meta.get('key', 'stem')

    def load(self, metainfo: dict) -> Tuple[Tensor, Optional[Tensor]]:
        """Dequantised logits ``(M, h, w)`` and objectness ``(M,)`` (or None)
        of one image, at its stored (original-geometry) resolution."""
        path = proposal_file(self.proposal_dir, metainfo, self.key)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f"No precomputed proposals for image {metainfo.get('img_path')} "
                f"(img_id {metainfo.get('img_id')}): {path} does not exist in "
                f'{self.proposal_dir}. Write them for this split with: ' +
                DUMP_COMMAND.format(dir=self.proposal_dir))
        data = read_proposals(path)
        codes = torch.from_numpy(data['masks'])
        stored_ori = tuple(int(s) for s in data['ori_shape'])
        logit_range = float(data['logit_range'])
        objectness = torch.from_numpy(data['objectness']).float() \
            if 'objectness' in data else None
        if stored_ori != shape2(metainfo['ori_shape']):
            raise ValueError(
                f'Proposals {path} are for an image of size {stored_ori}, but '
                f"{metainfo.get('img_path')} has ori_shape {shape2(metainfo['ori_shape'])}: "
                'the directory belongs to another dataset (or its keys collide).')
        if self.max_proposals is not None and len(codes) > self.max_proposals:
            keep = torch.arange(self.max_proposals) if objectness is None else \
                objectness.topk(self.max_proposals).indices.sort().values
            codes = codes[keep]
            objectness = None if objectness is None else objectness[keep]
        return dequantise_logits(codes, logit_range), objectness

    def propose(self,
                images: Tensor,
                batch_data_samples: SampleList,
                vocabulary: Optional[Vocabulary] = None,
                batch_gt_segments: Optional[List[InstanceData]] = None) -> MaskProposals:
        logits, scores = [], []
        for sample in batch_data_samples:
            masks, objectness = self.load(sample.metainfo)
            logits.append(masks.to(images.device))
            scores.append(objectness)
        return MaskProposals.from_original(logits, batch_data_samples, images.shape[-2:], scores)
