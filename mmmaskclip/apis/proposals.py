# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Run a proposer over a dataset split and store its proposals on disk, in
the format that ``PrecomputedProposer`` reads
(:mod:`mmmaskclip.models.proposers.precomputed`)."""
import copy
import os
import os.path as osp
import sys
from typing import Dict, Optional

import torch
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config, ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader, Subset

from ..models.geometry import to_original_geometry
from ..models.proposers.precomputed import (check_resume, is_complete, proposal_key,
                                            proposal_settings, remove_partial_files, write_meta,
                                            write_proposals)
from ..models.utils import Vocabulary

SPLITS = ('test', 'val', 'train')


def _pipeline_holder(dataset_cfg: ConfigDict) -> Optional[ConfigDict]:
    """The (innermost) dataset config that has a ``pipeline``."""
    while 'pipeline' not in dataset_cfg and 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg if 'pipeline' in dataset_cfg else None


def _set_pipeline(dataset_cfg: ConfigDict, pipeline: list) -> None:
    """Replace the pipeline of every dataset inside wrappers, in place."""
    if 'pipeline' in dataset_cfg:
        dataset_cfg['pipeline'] = copy.deepcopy(pipeline)
    if 'dataset' in dataset_cfg:
        _set_pipeline(dataset_cfg['dataset'], pipeline)
    for sub in dataset_cfg.get('datasets', None) or []:
        _set_pipeline(sub, pipeline)


def split_dataset_cfg(cfg: Config, split: str = 'test') -> ConfigDict:
    """The dataset config to dump: the split's dataset, and for ``'train'``
    the training dataset with the test pipeline (deterministic, no random
    augmentation; ``PrecomputedProposer`` replays the training pipeline's
    resizes and flips on the stored original-geometry proposals).
    """
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
    loader = cfg.get(f'{split}_dataloader', None)
    if not loader or 'dataset' not in loader:
        raise ValueError(f'The config has no {split}_dataloader.dataset.')
    dataset = copy.deepcopy(loader['dataset'])
    if split == 'train':
        holder = None
        for name in ('test_dataloader', 'val_dataloader'):
            if cfg.get(name, None) and 'dataset' in cfg[name]:
                holder = _pipeline_holder(cfg[name]['dataset'])
                if holder is not None:
                    break
        pipeline = holder['pipeline'] if holder is not None else cfg.get('test_pipeline')
        if pipeline is None:
            raise ValueError('--split train needs a test pipeline (test_dataloader, '
                             'val_dataloader or test_pipeline in the config).')
        _set_pipeline(dataset, pipeline)
    return dataset


def proposer_cfg_of(cfg: Config) -> ConfigDict:
    """``proposer`` of a proposer config file, else ``model.proposer``."""
    if cfg.get('proposer', None):
        return cfg.proposer
    if cfg.get('model', None) and cfg.model.get('proposer', None):
        return cfg.model.proposer
    raise ValueError('No proposer in the config (neither `proposer` nor `model.proposer`).')


def _keys_to_dump(dataset, key: str) -> Dict[str, int]:
    """Key -> first dataset index; refuse two images under one key."""
    keys: Dict[str, int] = {}
    paths: Dict[str, str] = {}
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        name = proposal_key(info, key)
        if name in paths and paths[name] != info.get('img_path'):
            raise ValueError(f'Images {paths[name]} and {info.get("img_path")} share the key '
                             f"{name!r}: choose another key ('stem' or 'img_id').")
        paths.setdefault(name, info.get('img_path'))
        keys.setdefault(name, index)
    return keys


def dump_proposals(cfg: Config,
                   out_dir: str,
                   split: str = 'test',
                   proposer=None,
                   scale: float = 0.25,
                   logit_range: float = 8.0,
                   max_proposals: Optional[int] = None,
                   key: str = 'stem',
                   resume: bool = False,
                   device: str = 'cpu',
                   batch_size: int = 1,
                   num_workers: int = 0,
                   progress: bool = True) -> Dict[str, int]:
    """Run a proposer over a split and write one ``.npz`` per image.

    Args:
        cfg (Config): a MaskCLIP config: datasets, ``model.data_preprocessor``
            (batching and padding as in training/testing), the vocabulary
            (``model.class_names`` / ``num_things_classes``, or the samples'
            ``text`` / ``stuff_text``: which labels are things, for ground-truth
            proposals) and, unless ``proposer`` is given, ``model.proposer``.
        out_dir (str): the proposal directory (created).
        split (str): ``'test'``, ``'val'`` or ``'train'`` (with the test
            pipeline, see :func:`split_dataset_cfg`).
        proposer (dict | nn.Module, optional): the proposer (a config or a
            built module); default ``cfg.model.proposer``.
        scale (float): stored resolution / original resolution, in (0, 1].
        logit_range (float): logits are clamped to ``±logit_range`` and
            quantised to 256 levels.
        max_proposals (int, optional): keep at most this many per image
            (highest objectness where there is one, else the first).
        key (str): file naming, ``'stem'`` or ``'img_id'``.
        resume (bool): skip images whose file exists and reads back whole;
            rewrite truncated or corrupt ones, delete leftover temporary
            files. Files are written to a temporary name and renamed, so an
            interrupted dump leaves only whole files under final names.
        device (str): where the proposer runs.
        batch_size (int): images per proposer call.
        num_workers (int): data loading workers.
        progress (bool): show a progress bar.

    Returns:
        dict: ``total`` images, ``written`` and ``skipped`` files.
    """
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    proposer = proposer_cfg_of(cfg) if proposer is None else proposer
    described = ({
        'type': type(proposer).__name__
    } if isinstance(proposer, torch.nn.Module) else proposer)
    settings = proposal_settings(key, scale, logit_range, max_proposals, described)
    os.makedirs(out_dir, exist_ok=True)
    if resume:
        check_resume(out_dir, settings)
        remove_partial_files(out_dir)
    dataset = DATASETS.build(split_dataset_cfg(cfg, split))
    keys = _keys_to_dump(dataset, key)
    todo = [
        i for name, i in keys.items()
        if not (resume and is_complete(osp.join(out_dir, name + '.npz')))
    ]
    write_meta(
        out_dir, settings, split=split, num_images=len(keys), config=getattr(cfg, 'filename', None))

    model_cfg = cfg.get('model', None) or {}
    preprocessor = MODELS.build(
        model_cfg.get('data_preprocessor', None)
        or dict(type='DetDataPreprocessor', bgr_to_rgb=True, pad_size_divisor=32)).to(device)
    if not isinstance(proposer, torch.nn.Module):
        proposer = MODELS.build(proposer)
    proposer = proposer.to(device).eval()
    loader = DataLoader(
        Subset(dataset, todo),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=pseudo_collate)
    bar = ProgressBar(len(todo)) if progress and todo else None
    written = 0
    with torch.no_grad():
        for batch in loader:
            data = preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            proposals = proposer(inputs, samples, _vocabulary(samples, model_cfg))
            for b, sample in enumerate(samples):
                _write_image(out_dir, key, sample.metainfo, proposals, b, tuple(inputs.shape[-2:]),
                             scale, logit_range, max_proposals)
                written += 1
                if bar is not None:
                    bar.update()
    if bar is not None:
        sys.stdout.write('\n')
    missing = [n for n in keys if not osp.isfile(osp.join(out_dir, n + '.npz'))]
    if missing:
        raise RuntimeError(f'{len(missing)} images got no proposals (e.g. {missing[:3]}): '
                           'does the pipeline drop or replace samples?')
    return dict(total=len(keys), written=written, skipped=len(keys) - len(todo))


def _vocabulary(samples, model_cfg) -> Optional[Vocabulary]:
    """The batch's vocabulary as the model would see it (ground-truth
    proposals need it to tell things from stuff), or None where the config
    and samples define none (proposers that read no annotations)."""
    try:
        return Vocabulary.of_batch(samples, model_cfg.get('class_names', None),
                                   model_cfg.get('num_things_classes', None))
    except ValueError:
        return None


def _write_image(out_dir: str, key: str, meta: dict, proposals, b: int, batch_size, scale: float,
                 logit_range: float, max_proposals: Optional[int]) -> None:
    """Image ``b`` of a batch's proposals -> its ``.npz`` at the original
    geometry, ``scale`` times the original size."""
    keep = proposals.valid[b].nonzero()[:, 0]
    objectness = None if proposals.objectness is None else proposals.objectness[b, keep]
    if max_proposals is not None and len(keep) > max_proposals:
        top = (
            torch.arange(max_proposals, device=keep.device)
            if objectness is None else objectness.topk(max_proposals).indices.sort().values)
        keep = keep[top]
        objectness = None if objectness is None else objectness[top]
    ori_h, ori_w = (int(s) for s in meta['ori_shape'][:2])
    out_size = (max(1, round(ori_h * scale)), max(1, round(ori_w * scale)))
    logits = to_original_geometry(proposals.mask_logits[b, keep], meta, batch_size, out_size)
    write_proposals(
        osp.join(out_dir,
                 proposal_key(meta, key) + '.npz'), logits, (ori_h, ori_w), logit_range, objectness)
