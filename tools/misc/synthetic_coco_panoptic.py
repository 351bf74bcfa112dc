# Copyright (c) mmmaskclip contributors. All rights reserved.
"""A tiny synthetic dataset in the COCO-panoptic on-disk format.

Not a tool: ``tools/misc/make_synthetic_dataset.py`` writes a dataset with
it for trying ``tools/test.py`` / ``tools/train.py`` offline, and the tests
(through ``tests/synthetic_coco.py``) call :func:`write_coco_panoptic` to get
a few-image dataset that mmdet's ``CocoPanopticDataset``,
``CocoPanopticMetric`` and ``CocoMetric`` read exactly like the real COCO
one::

    root/
        train2017/000000000001.jpg ...
        annotations/
            panoptic_train2017.json
            panoptic_train2017/000000000001.png ...
            instances_train2017.json

How mmdet turns category ids into labels: ``CocoDataset.load_data_list``
asks the COCO API for the ids of the categories whose name is in
``metainfo['classes']`` and numbers them in the order of the json's
``categories`` list, **not** in the order of ``metainfo['classes']``
(``cat2label = {cat_id: i for i, cat_id in enumerate(cat_ids)}``). As in the
real COCO-panoptic json, the categories written here list the things first,
then the stuff, by increasing id, so labels are ``0 .. T-1`` for the things
and ``T .. T+S-1`` for the stuff, which is also the order of
``classes = thing_classes + stuff_classes`` that mmdet's panoptic heads and
``CocoPanopticMetric`` expect. Category ids are not contiguous (things get
odd ids 1, 3, 5, ..., stuff ids start at 92 as in COCO), so code that mixes
up category ids and labels fails.
"""
import colorsys
import json
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

# First stuff category id, as in COCO (things use 1-90, stuff 92-200).
STUFF_ID_START = 92


def _palette(num: int) -> List[Tuple[int, int, int]]:
    """``num`` well separated RGB colours (evenly spaced hues)."""
    colours = []
    for i in range(num):
        hue = i / max(num, 1)
        value = 0.9 if i % 2 == 0 else 0.6
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def _id2rgb(seg_ids: np.ndarray) -> np.ndarray:
    """COCO-panoptic encoding: ``id = R + 256 * G + 256 ** 2 * B``."""
    seg_ids = seg_ids.astype(np.uint32)
    return np.stack([seg_ids % 256, seg_ids // 256 % 256, seg_ids // 256**2 % 256],
                    axis=-1).astype(np.uint8)


def _mask_bbox(mask: np.ndarray) -> List[int]:
    """COCO ``[x, y, w, h]`` box of a non-empty binary mask (whole pixels)."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def _stuff_layout(rng: np.random.Generator, height: int, width: int, num_stuff: int) -> np.ndarray:
    """Index map ``(H, W)`` splitting the image into ``num_stuff`` bands.

    Bands are horizontal or vertical, in a random order of the stuff
    classes, each at least half of an even share of the image.
    """
    vertical = bool(rng.integers(2))
    length = width if vertical else height
    min_band = max(1, length // (2 * num_stuff))
    spare = length - min_band * num_stuff
    cuts = np.sort(rng.integers(0, spare + 1, size=num_stuff - 1))
    sizes = np.diff(np.concatenate([[0], cuts, [spare]])) + min_band
    band_of = np.repeat(rng.permutation(num_stuff), sizes)
    if vertical:
        return np.broadcast_to(band_of[None, :], (height, width)).copy()
    return np.broadcast_to(band_of[:, None], (height, width)).copy()


def _thing_mask(rng: np.random.Generator, height: int, width: int,
                occupied: np.ndarray) -> Optional[np.ndarray]:
    """A rectangle or ellipse that keeps a 1-pixel gap to ``occupied``."""
    min_side = max(4, min(height, width) // 6)
    max_side = max(min_side + 1, min(height, width) // 3)
    # Occupied pixels grown by one pixel: instances never touch.
    grown = cv2.dilate(occupied.astype(np.uint8), np.ones((3, 3), np.uint8))
    for _ in range(100):
        h, w = rng.integers(min_side, max_side + 1, size=2)
        y0 = int(rng.integers(0, height - h + 1))
        x0 = int(rng.integers(0, width - w + 1))
        mask = np.zeros((height, width), np.uint8)
        if rng.integers(2):
            mask[y0:y0 + h, x0:x0 + w] = 1
        else:
            center = (int(x0 + w // 2), int(y0 + h // 2))
            axes = (max(int(w // 2), 2), max(int(h // 2), 2))
            cv2.ellipse(mask, center, axes, 0, 0, 360, 1, thickness=-1)
        mask = mask.astype(bool)
        if mask.any() and not (mask & grown.astype(bool)).any():
            return mask
    return None


def _draw_image(rng: np.random.Generator, height: int, width: int, thing_labels: Sequence[int],
                num_things: int, num_stuff: int) -> List[Tuple[int, np.ndarray]]:
    """Segments ``[(label, mask), ...]`` of one image, stuff first.

    Every pixel belongs to exactly one segment.
    """
    stuff_map = _stuff_layout(rng, height, width, num_stuff)
    occupied = np.zeros((height, width), bool)
    things = []
    for label in thing_labels:
        mask = _thing_mask(rng, height, width, occupied)
        if mask is None:
            continue
        occupied |= mask
        things.append((label, mask))
    segments = []
    for j in range(num_stuff):
        segments.append((num_things + j, (stuff_map == j) & ~occupied))
    segments.extend(things)
    return segments


def write_coco_panoptic(
    root: str,
    num_images: int = 4,
    image_size: Tuple[int, int] = (64, 64),
    split: str = 'train2017',
    seed: int = 0,
    things: Sequence[str] = ('person', 'car'),
    stuff: Sequence[str] = ('sky', 'grass')
) -> dict:
    """Write a tiny COCO-panoptic dataset (plus instances json) to ``root``.

    Every image holds each stuff class as a large band and one to three
    thing instances (rectangles or ellipses that do not touch each other);
    every pixel is labelled. Image ``i`` always contains thing class
    ``things[i % len(things)]``, so with ``num_images >= len(things)`` every
    thing class appears. In the JPEG each segment is filled with its class
    colour (``metainfo['palette']``), shifted per instance, plus noise.

    Args:
        root (str): Directory to write into (created if needed).
        num_images (int): Number of images. Defaults to 4.
        image_size (tuple[int, int]): ``(height, width)`` of the images.
            Defaults to ``(64, 64)``.
        split (str): Split name, used for the image folder and the
            annotation file names. Defaults to ``'train2017'``.
        seed (int): Seed of the random layout and colours. Defaults to 0.
        things (Sequence[str]): Thing class names. Defaults to
            ``('person', 'car')``.
        stuff (Sequence[str]): Stuff class names. Defaults to
            ``('sky', 'grass')``.

    Returns:
        dict: With keys

        - ``data_root`` (str): ``root``, absolute.
        - ``ann_file`` / ``instances_ann_file`` (str): panoptic and instances
          json paths relative to ``data_root``.
        - ``data_prefix`` (dict): ``img`` and ``seg`` folders relative to
          ``data_root``, for ``CocoPanopticDataset(data_prefix=...)``.
        - ``img_dir``, ``seg_dir``, ``panoptic_json``, ``instances_json``
          (str): the same as absolute paths.
        - ``classes``, ``thing_classes``, ``stuff_classes`` (tuple[str]):
          names in label order (things first, then stuff).
        - ``metainfo`` (dict): ``classes``, ``thing_classes``,
          ``stuff_classes`` and ``palette``, ready for
          ``CocoPanopticDataset(metainfo=...)``.
        - ``cat_ids`` (list[int]): category id of each label;
          ``label2cat`` / ``cat2label`` (dict): both mappings.
        - ``images`` (list[dict]): per image ``img_id``, ``file_name``,
          ``seg_file_name``, ``height``, ``width`` and ``segments``, a list
          of dicts with ``id`` (panoptic segment id), ``category_id``,
          ``label``, ``isthing``, ``bbox`` and ``area``.
    """
    things, stuff = tuple(things), tuple(stuff)
    if not things or not stuff:
        raise ValueError('need at least one thing and one stuff class')
    if len(set(things + stuff)) != len(things) + len(stuff):
        raise ValueError(f'class names must be unique: {things + stuff}')
    height, width = image_size
    if min(height, width) < 16:
        raise ValueError(f'image_size {image_size} is too small (min 16)')
    num_things, num_stuff = len(things), len(stuff)
    classes = things + stuff
    # Odd thing ids (1, 3, 5, ...) and stuff ids from 92, gapped like
    # COCO's: only the first thing has ``category_id == label + 1``.
    thing_ids = [2 * i + 1 for i in range(num_things)]
    stuff_start = max(STUFF_ID_START, thing_ids[-1] + 2)
    cat_ids = thing_ids + [stuff_start + j for j in range(num_stuff)]
    palette = _palette(len(classes))
    rng = np.random.default_rng(seed)

    root = osp.abspath(root)
    img_prefix = f'{split}/'
    seg_prefix = f'annotations/panoptic_{split}/'
    img_dir, seg_dir = osp.join(root, img_prefix), osp.join(root, seg_prefix)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(seg_dir, exist_ok=True)

    images, pan_anns, inst_anns, summaries = [], [], [], []
    for index in range(num_images):
        img_id = index + 1
        file_name = f'{img_id:012d}.jpg'
        seg_file_name = file_name.replace('.jpg', '.png')
        num_inst = int(rng.integers(1, 4))
        thing_labels = [index % num_things
                        ] + [int(rng.integers(num_things)) for _ in range(num_inst - 1)]
        segments = _draw_image(rng, height, width, thing_labels, num_things, num_stuff)
        # Unique non-zero segment ids spread over the three RGB channels,
        # like the (colour-derived) ids of COCO.
        seg_ids = []
        while len(seg_ids) < len(segments):
            seg_id = int(rng.integers(1, 256**3))
            if seg_id not in seg_ids:
                seg_ids.append(seg_id)

        id_map = np.zeros((height, width), np.int64)
        image = np.zeros((height, width, 3), np.float32)
        segments_info, summary = [], []
        for (label, mask), seg_id in zip(segments, seg_ids):
            assert mask.any(), 'a segment was drawn over entirely'
            isthing = int(label < num_things)
            id_map[mask] = seg_id
            colour = np.array(palette[label], np.float32)
            if isthing:
                colour = colour + rng.uniform(-25, 25, size=3)
            image[mask] = colour
            info = dict(
                id=int(seg_id),
                category_id=cat_ids[label],
                iscrowd=0,
                bbox=_mask_bbox(mask),
                area=int(mask.sum()))
            segments_info.append(info)
            summary.append(
                dict(
                    id=info['id'],
                    category_id=info['category_id'],
                    label=label,
                    isthing=isthing,
                    bbox=info['bbox'],
                    area=info['area']))
            if isthing:
                rle = mask_utils.encode(np.asfortranarray(mask, np.uint8))
                rle['counts'] = rle['counts'].decode('ascii')
                inst_anns.append(
                    dict(
                        id=len(inst_anns) + 1,
                        image_id=img_id,
                        category_id=cat_ids[label],
                        segmentation=rle,
                        area=float(mask.sum()),
                        bbox=[float(v) for v in info['bbox']],
                        iscrowd=0))
        assert (id_map > 0).all(), 'unlabelled pixels'
        image += rng.normal(0, 6, size=image.shape)
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
        cv2.imwrite(osp.join(img_dir, file_name), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(osp.join(seg_dir, seg_file_name), _id2rgb(id_map)[..., ::-1])

        images.append(dict(id=img_id, file_name=file_name, height=height, width=width))
        pan_anns.append(dict(image_id=img_id, file_name=seg_file_name, segments_info=segments_info))
        summaries.append(
            dict(
                img_id=img_id,
                file_name=file_name,
                seg_file_name=seg_file_name,
                height=height,
                width=width,
                segments=summary))

    categories = [
        dict(
            id=cat_id,
            name=name,
            isthing=int(label < num_things),
            supercategory='thing' if label < num_things else 'stuff',
            color=list(palette[label]))
        for label, (cat_id, name) in enumerate(zip(cat_ids, classes))
    ]
    info = dict(description=f'mmmaskclip synthetic COCO panoptic ({split})')
    ann_dir = osp.join(root, 'annotations')
    panoptic_json = osp.join(ann_dir, f'panoptic_{split}.json')
    instances_json = osp.join(ann_dir, f'instances_{split}.json')
    with open(panoptic_json, 'w', encoding='utf-8') as f:
        json.dump(
            dict(
                info=info, licenses=[], images=images, annotations=pan_anns, categories=categories),
            f)
    with open(instances_json, 'w', encoding='utf-8') as f:
        thing_cats = [{
            k: cat[k]
            for k in ('id', 'name', 'supercategory')
        } for cat in categories if cat['isthing']]
        json.dump(
            dict(
                info=info, licenses=[], images=images, annotations=inst_anns,
                categories=thing_cats), f)

    metainfo = dict(classes=classes, thing_classes=things, stuff_classes=stuff, palette=palette)
    return dict(
        data_root=root,
        split=split,
        ann_file=f'annotations/panoptic_{split}.json',
        instances_ann_file=f'annotations/instances_{split}.json',
        data_prefix=dict(img=img_prefix, seg=seg_prefix),
        img_dir=img_dir,
        seg_dir=seg_dir,
        panoptic_json=panoptic_json,
        instances_json=instances_json,
        classes=classes,
        thing_classes=things,
        stuff_classes=stuff,
        metainfo=metainfo,
        cat_ids=cat_ids,
        label2cat=dict(enumerate(cat_ids)),
        cat2label={
            cat_id: label
            for label, cat_id in enumerate(cat_ids)
        },
        images=summaries)


if __name__ == '__main__':
    sys.exit('synthetic_coco_panoptic.py is the generator of make_synthetic_dataset.py, not a '
             'tool: run `python tools/misc/make_synthetic_dataset.py OUT_DIR`.')
