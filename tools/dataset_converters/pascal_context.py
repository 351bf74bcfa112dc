# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Convert the official PASCAL Context annotations to PC-59 / PC-459 maps.

Two sources:

* ``--mat-dir``: the ``trainval/`` folder of ``trainval.tar.gz`` (one
  ``<image id>.mat`` per image whose ``LabelMap`` holds the 1-based line of
  ``labels.txt``, 0 = unlabeled). Writes both

  - PC-59: uint8 PNGs, 1..59 the classes of ``PASCAL_CONTEXT_59_CLASSES``
    (mmseg's mapping), 0 every other pixel (background, ignored through
    ``reduce_zero_label=True``);
  - PC-459: uint16 PNGs, ``LabelMap - 1`` (0..458) and 65535 for unlabeled.

  The split files come from VOC2010's ``ImageSets/Main/{train,val}.txt``
  (PASCAL Context uses VOC2010's train / val split). A ``labels.txt`` beside
  the ``.mat`` folder is checked against the 459 names.
* ``--json``: ``trainval_merged.json`` through the Detail API (the ``detail``
  package that mmseg's converter uses; see mmseg's ``dataset_prepare.md``).
  It holds the 59 classes only: writes PC-59 maps.

Output, as ``PascalContext59SegDataset`` / ``PascalContext459SegDataset``
expect::

    VOCdevkit/VOC2010/SegmentationClassContext/*.png      (uint8, 0..59)
    VOCdevkit/VOC2010/SegmentationClassContext459/*.png   (uint16)
    VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt

Usage::

    python tools/dataset_converters/pascal_context.py data/VOCdevkit \\
        --mat-dir data/trainval --nproc 8
"""
import argparse
import os.path as osp
import sys
from functools import partial
from typing import Dict, List, Optional, Sequence

import cv2
import mmengine
import numpy as np

try:
    from mmmaskclip.datasets.semseg_classes import PASCAL_CONTEXT_59_IDS, PASCAL_CONTEXT_459_CLASSES
except ModuleNotFoundError as err:  # not installed: use this checkout
    if err.name != 'mmmaskclip':
        raise
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__)))))
    from mmmaskclip.datasets.semseg_classes import PASCAL_CONTEXT_59_IDS, PASCAL_CONTEXT_459_CLASSES
from mmmaskclip.utils import InvalidInputError, check_file, run_cli  # noqa: E402

IGNORE_INDEX_459 = 65535
NUM_CLASSES = len(PASCAL_CONTEXT_459_CLASSES)
DIR_59 = 'SegmentationClassContext'
DIR_459 = 'SegmentationClassContext459'
SPLIT_DIR = osp.join('ImageSets', 'SegmentationContext')

LUT_59 = np.zeros(NUM_CLASSES + 1, dtype=np.uint8)
LUT_59[np.asarray(PASCAL_CONTEXT_59_IDS)] = np.arange(
    1, len(PASCAL_CONTEXT_59_IDS) + 1, dtype=np.uint8)


def _check_range(label_map: np.ndarray) -> np.ndarray:
    label_map = np.asarray(label_map)
    if label_map.size and (label_map.min() < 0 or label_map.max() > NUM_CLASSES):
        raise ValueError(f'LabelMap values must lie in [0, {NUM_CLASSES}], '
                         f'got [{label_map.min()}, {label_map.max()}]')
    return label_map.astype(np.int64)


def to_context59(label_map: np.ndarray) -> np.ndarray:
    """PC-59 label map (uint8: 0 background, 1..59) of a 459-class one.

    Args:
        label_map (np.ndarray): Values 0 (unlabeled) or 1..459.

    Returns:
        np.ndarray: uint8, the 59 classes as 1..59, all else 0.
    """
    return LUT_59[_check_range(label_map)]


def to_context459(label_map: np.ndarray) -> np.ndarray:
    """PC-459 label map (uint16: 0..458, 65535 unlabeled).

    Args:
        label_map (np.ndarray): Values 0 (unlabeled) or 1..459.

    Returns:
        np.ndarray: uint16 ``label_map - 1``, unlabeled 65535.
    """
    label_map = _check_range(label_map)
    out = label_map - 1
    out[label_map == 0] = IGNORE_INDEX_459
    return out.astype(np.uint16)


def load_label_map(mat_file: str) -> np.ndarray:
    """``LabelMap`` of one official PASCAL Context ``.mat`` file (one
    sentence naming it if it is unreadable)."""
    from scipy.io import loadmat
    check_file(mat_file, 'PASCAL Context .mat file')
    try:
        label_map = loadmat(mat_file)['LabelMap']
    except Exception as err:  # noqa: B902  (truncated, not a .mat, no LabelMap)
        raise InvalidInputError(f'PASCAL Context .mat file {mat_file} is unreadable '
                                f'({type(err).__name__}: {str(err)[:60]}): extract it again '
                                'from trainval.tar.gz.') from err
    return np.asarray(label_map).squeeze()


def read_labels_txt(path: str) -> List[str]:
    """Names of ``labels.txt`` (lines ``'<id>: <name>'``), ordered by id."""
    entries = {}
    for line in mmengine.list_from_file(path):
        if not line.strip():
            continue
        idx, name = line.split(':', 1)
        entries[int(idx)] = name.strip()
    return [entries[i] for i in sorted(entries)]


def check_labels_txt(path: str) -> None:
    """Raise if ``labels.txt`` differs from ``PASCAL_CONTEXT_459_CLASSES``."""
    names = read_labels_txt(path)
    if names != list(PASCAL_CONTEXT_459_CLASSES):
        diff = [(i + 1, a, b) for i, (a, b) in enumerate(zip(names, PASCAL_CONTEXT_459_CLASSES))
                if a != b]
        raise ValueError(f'{path}: {len(names)} names, differing from the '
                         f'459 classes at {diff[:5]}')


def convert_mat(stem: str, mat_dir: str, voc_root: str,
                which: Sequence[str] = ('59', '459')) -> str:
    """Write the PC-59 and/or PC-459 map of ``<mat_dir>/<stem>.mat``.

    Returns:
        str: ``stem``.
    """
    label_map = load_label_map(osp.join(mat_dir, f'{stem}.mat'))
    outputs = dict()
    if '59' in which:
        outputs[DIR_59] = to_context59(label_map)
    if '459' in which:
        outputs[DIR_459] = to_context459(label_map)
    for folder, label in outputs.items():
        out_file = osp.join(voc_root, folder, f'{stem}.png')
        if not cv2.imwrite(out_file, label):
            raise IOError(f'could not write {out_file}')
    return stem


def write_splits(voc_root: str, splits: Dict[str, List[str]]) -> None:
    """Write ``ImageSets/SegmentationContext/<split>.txt``."""
    mmengine.mkdir_or_exist(osp.join(voc_root, SPLIT_DIR))
    for split, stems in splits.items():
        with open(osp.join(voc_root, SPLIT_DIR, f'{split}.txt'), 'w') as f:
            f.writelines(f'{stem}\n' for stem in sorted(stems))


def convert_from_mats(devkit_path: str,
                      mat_dir: str,
                      which: Sequence[str] = ('59', '459'),
                      nproc: int = 1) -> Dict[str, List[str]]:
    """Convert the ``.mat`` files of ``mat_dir``.

    Args:
        devkit_path (str): ``VOCdevkit`` (holding ``VOC2010``).
        mat_dir (str): The ``trainval`` folder of ``trainval.tar.gz``.
        which (Sequence[str]): Maps to write, among ``'59'``, ``'459'``.
        nproc (int): Worker processes. Defaults to 1.

    Returns:
        dict[str, list[str]]: Image ids of ``train`` and ``val``.
    """
    voc_root = osp.join(devkit_path, 'VOC2010')
    labels_txt = osp.join(osp.dirname(osp.abspath(mat_dir)), 'labels.txt')
    if osp.isfile(labels_txt):
        check_labels_txt(labels_txt)
    stems = sorted(osp.splitext(name)[0] for name in mmengine.scandir(mat_dir, suffix='.mat'))
    if not stems:
        raise InvalidInputError(f'no .mat file in {mat_dir}: give the trainval/ folder of '
                                'trainval.tar.gz.')
    available = set(stems)
    splits = dict()
    for split in ('train', 'val'):
        main_list = osp.join(voc_root, 'ImageSets', 'Main', f'{split}.txt')
        ids = [line.strip() for line in mmengine.list_from_file(main_list)]
        splits[split] = [i for i in ids if i in available]
    for folder in [DIR_59 if w == '59' else DIR_459 for w in which]:
        mmengine.mkdir_or_exist(osp.join(voc_root, folder))

    worker = partial(convert_mat, mat_dir=mat_dir, voc_root=voc_root, which=tuple(which))
    if nproc > 1:
        mmengine.track_parallel_progress(worker, stems, nproc)
    else:
        mmengine.track_progress(worker, stems)
    write_splits(voc_root, splits)
    print(f'PASCAL Context: {len(stems)} maps ({"/".join(which)}), '
          f'train {len(splits["train"])}, val {len(splits["val"])} '
          f'-> {voc_root}')
    return splits


def convert_from_json(devkit_path: str, json_path: str) -> Dict[str, List[str]]:
    """Write the PC-59 maps from ``trainval_merged.json`` (Detail API).

    The json's category ids are the 1-based ``labels.txt`` lines of the 59
    classes (0 = background); they map as ``to_context59``.

    Returns:
        dict[str, list[str]]: Image ids of ``train`` and ``val``.
    """
    try:
        from detail import Detail
    except ImportError as err:
        raise ImportError('--json needs the Detail API (package `detail`, installed as '
                          "for mmseg's pascal_context converter); or convert from the "
                          '.mat files of trainval.tar.gz (--mat-dir)') from err
    voc_root = osp.join(devkit_path, 'VOC2010')
    img_dir = osp.join(voc_root, 'JPEGImages')
    mmengine.mkdir_or_exist(osp.join(voc_root, DIR_59))

    def write(img: dict, detail) -> str:
        stem = osp.splitext(osp.basename(img['file_name']))[0]
        out_file = osp.join(voc_root, DIR_59, f'{stem}.png')
        if not cv2.imwrite(out_file, to_context59(detail.getMask(img))):
            raise IOError(f'could not write {out_file}')
        return stem

    splits = dict()
    for split in ('train', 'val'):
        detail = Detail(json_path, img_dir, split)
        splits[split] = mmengine.track_progress(partial(write, detail=detail), detail.getImgs())
    write_splits(voc_root, splits)
    return splits


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='PASCAL Context -> PC-59 (uint8) / PC-459 (uint16) maps')
    parser.add_argument('devkit_path', help='VOCdevkit (holding VOC2010)')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--mat-dir', help='trainval/ folder of trainval.tar.gz (.mat)')
    source.add_argument('--json', help='trainval_merged.json (59 only)')
    parser.add_argument(
        '--which',
        nargs='+',
        default=['59', '459'],
        choices=['59', '459'],
        help='maps to write from the .mat files')
    parser.add_argument('--nproc', type=int, default=1, help='worker processes (.mat source)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Convert; an unusable input is one line ``prog: error: ...``, exit 2."""
    args = parse_args(argv)

    def run() -> int:
        if args.mat_dir:
            convert_from_mats(args.devkit_path, args.mat_dir, which=args.which, nproc=args.nproc)
        else:
            convert_from_json(args.devkit_path, args.json)
        return 0

    return run_cli(osp.basename(__file__), run)


if __name__ == '__main__':
    sys.exit(main())
