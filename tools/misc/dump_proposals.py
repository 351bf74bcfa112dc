# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Run a proposer over a dataset split and store its proposals on disk.

The directory it writes is what ``PrecomputedProposer`` reads (format:
``mmmaskclip/models/proposers/precomputed.py``): one ``<image stem>.npz``
per image with uint8-quantised mask logits at ``--scale`` of the original
image size (plus objectness where the proposer has it) and ``meta.json``.

Examples::

    # the model.proposer of a MaskCLIP config over its test split
    python tools/misc/dump_proposals.py CONFIG --out-dir data/proposals/val
    # the training split, through the test pipeline (no random augmentation)
    python tools/misc/dump_proposals.py CONFIG --split train \
        --out-dir data/proposals/train --resume
    # another proposer (a config file with `proposer = dict(...)` or
    # `model = dict(proposer=...)`)
    python tools/misc/dump_proposals.py CONFIG --proposer-config P.py ...

then train/test with a config that replaces the proposer::

    _base_ = ['CONFIG']
    model = dict(proposer=dict(_delete_=True, type='PrecomputedProposer',
                               proposal_dir='data/proposals/val'))

The reading pipeline may resize and flip (the stored proposals follow
``img_shape`` and ``flip``) but not crop.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Union

from mmengine.config import Config, ConfigDict, DictAction

SPLITS = ('test', 'val', 'train')


def _import_mmmaskclip() -> None:
    try:
        import mmmaskclip  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name != 'mmmaskclip':
            raise
        sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__)))))
        import mmmaskclip  # noqa: F401,F811


def _to_plain(obj):
    """Config objects -> JSON-friendly builtins."""
    if isinstance(obj, (ConfigDict, dict)):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


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


def write_npz(path: str, **arrays) -> None:
    """``np.savez_compressed`` made atomic: an interrupted run never leaves a
    truncated file that ``--resume`` would take as done."""
    import numpy as np
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


def _keys_to_dump(dataset, key: str) -> Dict[str, int]:
    """Key -> first dataset index; refuse two images under one key."""
    from mmmaskclip.models.proposers.precomputed import proposal_key
    keys: Dict[str, int] = {}
    paths: Dict[str, str] = {}
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        name = proposal_key(info, key)
        if name in paths and paths[name] != info.get('img_path'):
            raise ValueError(f'Images {paths[name]} and {info.get("img_path")} share the key '
                             f"{name!r}: choose another --key ('stem' or 'img_id').")
        paths.setdefault(name, info.get('img_path'))
        keys.setdefault(name, index)
    return keys


def _check_resume_meta(out_dir: str, settings: dict) -> None:
    from mmmaskclip.models.proposers.precomputed import read_meta
    old = read_meta(out_dir)
    if old is None:
        return
    differ = [k for k, v in settings.items() if _to_plain(old.get(k)) != _to_plain(v)]
    if differ:
        raise ValueError(f'{out_dir} holds proposals written with other settings '
                         f'({", ".join(differ)}): use another --out-dir or drop --resume.')


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
            (batching and padding as in training/testing) and, unless
            ``proposer`` is given, ``model.proposer``.
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
        resume (bool): skip images whose file exists.
        device (str): where the proposer runs.
        batch_size (int): images per proposer call.
        num_workers (int): data loading workers.
        progress (bool): show a progress bar.

    Returns:
        dict: ``total`` images, ``written`` and ``skipped`` files.
    """
    import torch
    import torch.nn.functional as F
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from mmengine.structures import InstanceData
    from mmengine.utils import ProgressBar
    from torch.utils.data import DataLoader, Subset

    from mmdet.models.utils import preprocess_panoptic_gt
    from mmdet.registry import DATASETS, MODELS
    from mmmaskclip.models.proposers.gt_proposer import GTMaskProposer
    from mmmaskclip.models.geometry import to_original_geometry
    from mmmaskclip.models.proposers.precomputed import (FORMAT_NAME, FORMAT_VERSION, LEVELS,
                                                         META_FILE, proposal_key,
                                                         quantise_logits)

    if not 0 < scale <= 1:
        raise ValueError(f'scale must be in (0, 1], got {scale}.')
    if logit_range <= 0:
        raise ValueError(f'logit_range must be positive, got {logit_range}.')
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if proposer is None:
        proposer = proposer_cfg_of(cfg)
    proposer_cfg = ({'type': type(proposer).__name__} if isinstance(proposer, torch.nn.Module)
                    else _to_plain(proposer))
    settings = dict(format=FORMAT_NAME, version=FORMAT_VERSION, key=key, scale=scale,
                    quantisation=dict(dtype='uint8', levels=LEVELS, logit_range=logit_range,
                                      step=2 * logit_range / LEVELS,
                                      dequantise='logit = -L + (q + 0.5) * step'),
                    max_proposals=max_proposals, proposer=proposer_cfg)
    os.makedirs(out_dir, exist_ok=True)
    if resume:
        _check_resume_meta(out_dir, settings)

    dataset = DATASETS.build(split_dataset_cfg(cfg, split))
    keys = _keys_to_dump(dataset, key)
    todo = [i for name, i in keys.items()
            if not (resume and osp.isfile(osp.join(out_dir, name + '.npz')))]
    with open(osp.join(out_dir, META_FILE), 'w', encoding='utf-8') as f:
        json.dump(dict(settings, split=split, num_images=len(keys),
                       config=getattr(cfg, 'filename', None)), f, indent=2)

    model_cfg = cfg.get('model', None) or {}
    preprocessor = MODELS.build(model_cfg.get('data_preprocessor', None) or dict(
        type='DetDataPreprocessor', bgr_to_rgb=True, pad_size_divisor=32)).to(device)
    if not isinstance(proposer, torch.nn.Module):
        proposer = MODELS.build(proposer)
    proposer = proposer.to(device).eval()
    num_things = model_cfg.get('num_things_classes', 80)
    num_stuff = model_cfg.get('num_stuff_classes', 53)

    loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=pseudo_collate)
    bar = ProgressBar(len(todo)) if progress and todo else None
    written = 0
    with torch.no_grad():
        for batch in loader:
            data = preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            gt = None
            if isinstance(proposer, GTMaskProposer):
                gt = []
                for s in samples:
                    sem_seg = s.gt_sem_seg.sem_seg if 'gt_sem_seg' in s else None
                    labels, masks = preprocess_panoptic_gt(s.gt_instances.labels,
                                                           s.gt_instances.masks, sem_seg,
                                                           num_things, num_stuff)
                    # at test time the preprocessor leaves masks unpadded
                    pad_h = inputs.shape[-2] - masks.shape[-2]
                    pad_w = inputs.shape[-1] - masks.shape[-1]
                    masks = F.pad(masks.bool(), (0, pad_w, 0, pad_h))
                    gt.append(InstanceData(labels=labels, masks=masks))
            proposals = proposer(inputs, samples, gt)
            for b, sample in enumerate(samples):
                meta = sample.metainfo
                keep = proposals.valid[b].nonzero()[:, 0]
                objectness = None if proposals.objectness is None else \
                    proposals.objectness[b, keep].float()
                if max_proposals is not None and len(keep) > max_proposals:
                    top = (torch.arange(max_proposals, device=keep.device)
                           if objectness is None else
                           objectness.topk(max_proposals).indices.sort().values)
                    keep = keep[top]
                    objectness = None if objectness is None else objectness[top]
                ori_h, ori_w = (int(s) for s in meta['ori_shape'][:2])
                out_size = (max(1, round(ori_h * scale)), max(1, round(ori_w * scale)))
                logits = to_original_geometry(proposals.mask_logits[b, keep], meta,
                                              tuple(inputs.shape[-2:]), out_size)
                arrays = dict(masks=quantise_logits(logits, logit_range).cpu().numpy(),
                              ori_shape=[ori_h, ori_w], logit_range=float(logit_range))
                if objectness is not None:
                    arrays['objectness'] = objectness.cpu().numpy()
                write_npz(osp.join(out_dir, proposal_key(meta, key) + '.npz'), **arrays)
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


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='a MaskCLIP config (datasets, data preprocessor, '
                        'and its model.proposer unless --proposer-config)')
    parser.add_argument('--out-dir', required=True, help='the proposal directory')
    parser.add_argument('--split', choices=SPLITS, default='test',
                        help="the config's <split>_dataloader; 'train' runs the test "
                        'pipeline over the training dataset')
    parser.add_argument('--proposer-config',
                        help='config file with `proposer = dict(...)` (or model.proposer) '
                        "to run instead of CONFIG's")
    parser.add_argument('--scale', type=float, default=0.25,
                        help='stored resolution relative to the original image')
    parser.add_argument('--logit-range', type=float, default=8.0,
                        help='clamp logits to +-this before 8-bit quantisation')
    parser.add_argument('--max-proposals', type=int, help='keep at most this many per image')
    parser.add_argument('--key', choices=('stem', 'img_id'), default='stem',
                        help='file name of an image: its file stem or its img_id')
    parser.add_argument('--resume', action='store_true',
                        help='skip images whose proposal file exists')
    parser.add_argument('--device', default=None, help='default: cuda if available, else cpu')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override entries of CONFIG, e.g. model.proposer.num_proposals=50')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    for path in filter(None, (args.config, args.proposer_config)):
        if not osp.isfile(path):
            print(f'dump_proposals.py: error: config file not found: {path}', file=sys.stderr)
            return 2
    _import_mmmaskclip()
    import torch
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    proposer: Union[None, ConfigDict] = None
    if args.proposer_config:
        proposer = proposer_cfg_of(Config.fromfile(args.proposer_config))
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    summary = dump_proposals(cfg, args.out_dir, split=args.split, proposer=proposer,
                             scale=args.scale, logit_range=args.logit_range,
                             max_proposals=args.max_proposals, key=args.key,
                             resume=args.resume, device=device, batch_size=args.batch_size,
                             num_workers=args.num_workers)
    print(f"{summary['written']} written, {summary['skipped']} already there, "
          f"{summary['total']} images in {args.out_dir}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
