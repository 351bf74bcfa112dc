# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Convert the official ADE20K-full release to A-847 label maps.

Input: the ADE20K 2021 release (``ADE20K_2021_17_01/``) with its
``index_ade20k.pkl`` (lists ``folder`` and ``filename``) and, beside each
``<name>.jpg``, the ``<name>_seg.png`` whose object class is
``R // 10 * 256 + G``. Each class of ``ADE20K_847_CATEGORIES`` becomes its
index 0..846, every other pixel (unlabeled or a class outside the 847)
65535. Images whose short side exceeds ``--max-size`` (512, the usual
preparation; 0 keeps the full size) are resized to that short side,
bilinearly, their labels with nearest neighbour. Output, as
``ADE20K847SegDataset`` expects::

    OUT/images/{training,validation}/ADE_*.jpg
    OUT/annotations/{training,validation}/ADE_*.png   (uint16)
    OUT/classes.json                                  (the 847 names)

Usage::

    python tools/dataset_converters/ade20k_847.py \\
        data/ADE20K_2021_17_01 -o data/ade20k_full --nproc 8
"""
import argparse
import json
import os.path as osp
import pickle
import shutil
import sys
from functools import partial
from typing import List, Optional, Sequence, Tuple

import cv2
import mmengine
import numpy as np

try:
    from mmmaskclip.datasets.semseg_classes import ADE20K_847_CLASSES, ADE20K_847_IDS
except ModuleNotFoundError as err:  # not installed: use this checkout
    if err.name != 'mmmaskclip':
        raise
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__)))))
    from mmmaskclip.datasets.semseg_classes import ADE20K_847_CLASSES, ADE20K_847_IDS
from mmmaskclip.utils import InvalidInputError, check_file, read_image, run_cli  # noqa: E402

IGNORE_INDEX = 65535
SPLITS = ('training', 'validation')


def build_lut(ade_ids: Sequence[int] = ADE20K_847_IDS) -> np.ndarray:
    """Lookup table from ADE object index to A-847 label (65535 elsewhere).

    Args:
        ade_ids (Sequence[int]): ADE object index of each label.

    Returns:
        np.ndarray: uint16 table over all values ``R // 10 * 256 + G`` can
        take (``26 * 256``).
    """
    lut = np.full(26 * 256, IGNORE_INDEX, dtype=np.uint16)
    lut[np.asarray(ade_ids, dtype=np.int64)] = np.arange(len(ade_ids), dtype=np.uint16)
    return lut


LUT = build_lut()


def decode_class_mask(seg_rgb: np.ndarray) -> np.ndarray:
    """ADE object class of each pixel of an RGB ``*_seg.png``.

    Args:
        seg_rgb (np.ndarray): H x W x 3 uint8, RGB order.

    Returns:
        np.ndarray: H x W int64, ``R // 10 * 256 + G`` (0 = unlabeled).
    """
    r = seg_rgb[..., 0].astype(np.int64)
    g = seg_rgb[..., 1].astype(np.int64)
    return r // 10 * 256 + g


def class_mask_to_847(class_mask: np.ndarray) -> np.ndarray:
    """Map ADE object classes to A-847 labels (uint16, 65535 = ignore)."""
    return LUT[class_mask]


def target_size(h: int, w: int, max_size: int) -> Optional[Tuple[int, int]]:
    """(h, w) with the short side ``max_size``, or None to keep the size.

    Only images whose short side exceeds ``max_size`` shrink;
    ``max_size <= 0`` never resizes.
    """
    if max_size <= 0 or min(h, w) <= max_size:
        return None
    if h <= w:
        return max_size, int(round(w / h * max_size))
    return int(round(h / w * max_size)), max_size


def split_of(filename: str) -> str:
    """``'validation'`` for ``ADE_val_*`` files, ``'training'`` otherwise."""
    parts = osp.basename(filename).split('_')
    return 'validation' if len(parts) > 1 and parts[1] == 'val' else 'training'


def resolve_image(ade_root: str, folder: str, filename: str) -> str:
    """Path of an image listed in ``index_ade20k.pkl``.

    The index's folders start with the release folder name
    (``ADE20K_2021_17_01/images/ADE/...``); they are tried relative to the
    parent of ``ade_root`` and to ``ade_root`` itself.
    """
    root = osp.abspath(ade_root)
    parts = folder.replace('\\', '/').split('/')
    candidates = [osp.join(osp.dirname(root), folder), osp.join(root, folder)]
    if parts and parts[0] == osp.basename(root):
        candidates.append(osp.join(root, *parts[1:]))
    for path in candidates:
        path = osp.join(path, filename)
        if osp.isfile(path):
            return path
    raise FileNotFoundError(f'{filename} not found under {folder} (tried {candidates})')


def convert_image(item: Tuple[str, str],
                  ade_root: str,
                  out_dir: str,
                  max_size: int = 512) -> Tuple[str, int]:
    """Convert one image and its ``_seg.png``.

    Args:
        item (tuple[str, str]): ``(folder, filename)`` from the index.
        ade_root (str): The ``ADE20K_2021_17_01`` folder.
        out_dir (str): Output root.
        max_size (int): Short-side limit, 0 for none. Defaults to 512.

    Returns:
        tuple[str, int]: The split and the number of labelled pixels.
    """
    folder, filename = item
    img_path = resolve_image(ade_root, folder, filename)
    stem = osp.splitext(filename)[0]
    seg_path = osp.join(osp.dirname(img_path), f'{stem}_seg.png')
    seg_rgb = read_image(seg_path, what='ADE20K segmentation PNG')
    label = class_mask_to_847(decode_class_mask(seg_rgb))

    split = split_of(filename)
    out_img = osp.join(out_dir, 'images', split, f'{stem}.jpg')
    out_ann = osp.join(out_dir, 'annotations', split, f'{stem}.png')
    size = target_size(*label.shape, max_size)
    if size is None and img_path.lower().endswith(('.jpg', '.jpeg')):
        shutil.copyfile(img_path, out_img)
    else:
        img = read_image(img_path, channel_order='bgr')
        if size is not None:
            img = cv2.resize(img, size[::-1], interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(out_img, img)
    if size is not None:
        label = cv2.resize(label, size[::-1], interpolation=cv2.INTER_NEAREST)
    assert label.dtype == np.uint16
    if not cv2.imwrite(out_ann, label):
        raise IOError(f'could not write {out_ann}')
    return split, int((label != IGNORE_INDEX).sum())


def convert(ade_root: str,
            out_dir: str,
            max_size: int = 512,
            splits: Sequence[str] = SPLITS,
            nproc: int = 1) -> dict:
    """Convert the images of ``splits`` listed in ``index_ade20k.pkl``.

    Args:
        ade_root (str): The ``ADE20K_2021_17_01`` folder.
        out_dir (str): Output root.
        max_size (int): Short-side limit, 0 for none. Defaults to 512.
        splits (Sequence[str]): Subset of ``('training', 'validation')``.
        nproc (int): Worker processes. Defaults to 1.

    Returns:
        dict: Number of images per split.
    """
    index_file = check_file(osp.join(ade_root, 'index_ade20k.pkl'), 'ADE20K index')
    try:
        with open(index_file, 'rb') as f:
            index = pickle.load(f)
        listed = list(zip(index['folder'], index['filename']))
    except Exception as err:  # noqa: B902  (truncated or another file)
        raise InvalidInputError(f'ADE20K index {index_file} is unreadable ({type(err).__name__}): '
                                'extract it again from the ADE20K 2021 release.') from err
    items = [(folder, name) for folder, name in listed if split_of(name) in splits]
    for split in splits:
        mmengine.mkdir_or_exist(osp.join(out_dir, 'images', split))
        mmengine.mkdir_or_exist(osp.join(out_dir, 'annotations', split))
    with open(osp.join(out_dir, 'classes.json'), 'w', encoding='utf-8') as f:
        json.dump(list(ADE20K_847_CLASSES), f, indent=0)

    worker = partial(convert_image, ade_root=ade_root, out_dir=out_dir, max_size=max_size)
    if nproc > 1:
        results = mmengine.track_parallel_progress(worker, items, nproc)
    else:
        results = mmengine.track_progress(worker, items)
    counts = {split: 0 for split in splits}
    for split, _ in results:
        counts[split] += 1
    print(f'ADE20K-847: {counts} images -> {out_dir}')
    return counts


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='ADE20K-full (2021 release) -> A-847 uint16 label maps')
    parser.add_argument('ade_root', help='the ADE20K_2021_17_01 folder')
    parser.add_argument(
        '-o',
        '--out-dir',
        default='data/ade20k_full',
        help='output root (default: data/ade20k_full)')
    parser.add_argument(
        '--max-size',
        type=int,
        default=512,
        help='resize images whose short side exceeds it '
        '(0: keep the full size)')
    parser.add_argument(
        '--splits', nargs='+', default=list(SPLITS), choices=SPLITS, help='splits to convert')
    parser.add_argument('--nproc', type=int, default=1, help='worker processes')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Convert; an unusable input is one line ``prog: error: ...``, exit 2."""
    args = parse_args(argv)

    def run() -> int:
        convert(
            args.ade_root,
            args.out_dir,
            max_size=args.max_size,
            splits=args.splits,
            nproc=args.nproc)
        return 0

    return run_cli(osp.basename(__file__), run)


if __name__ == '__main__':
    sys.exit(main())
