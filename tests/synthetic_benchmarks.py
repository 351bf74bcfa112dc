# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Tiny synthetic copies of every benchmark, in the real on-disk formats.

Not a test module: ``tests/test_shipped_configs.py`` runs every shipped
config on these. Each benchmark writer (:data:`WRITERS`) writes two images
(48 x 64 and 64 x 48 pixels, a few segments each; 64 x 64 for COCO
panoptic) under ``root`` at exactly the paths that the shipped dataset
configs use relative to their ``data_root``, with the **full** category list
that the dataset's metainfo expects (150, 100, 847, 59, 459, 1203, 80 or
133 names), and returns the overrides that point a config at it::

    dict(data_root=root,               # of every dataloader's dataset
         evaluator_paths=(...))        # absolute ann_file / seg_prefix paths

Formats (the converters that write the real ones):

- ADE20K-150 (one ``ADEChallengeData2016`` for its three benchmarks):
  panoptic and instance jsons of mmdet's ``ade20k2coco.py`` (``--task
  panoptic`` / ``--task instance``), boxes as left by
  ``tools/dataset_converters/ade20k_coco_fix.py``; the standard uint8
  semantic maps, 0 = other;
- ADE20K-847: ``tools/dataset_converters/ade20k_847.py`` (uint16, 65535);
- PASCAL Context 59 / 459: ``tools/dataset_converters/pascal_context.py``
  (uint8 with 0 = background / uint16 with 65535, split files);
- COCO instances (COCO 48/17) with COCO's category ids, LVIS v1 (images
  found through ``coco_url``), COCO panoptic
  (:func:`synthetic_coco.write_coco_panoptic`) and its class-agnostic json
  (``tools/dataset_converters/coco_panoptic2agnostic.py``).
"""
import importlib.util
import json
import os
import os.path as osp
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from conftest import load_script
from pycocotools import mask as mask_utils
from synthetic_coco import _id2rgb, _mask_bbox, write_coco_panoptic

#: ``(height, width)`` of the two images of every benchmark.
SIZES = ((48, 64), (64, 48))
UINT16_IGNORE = 65535

#: What a scene holds: stuff labels (bands, top to bottom; None leaves a
#: band unlabelled) and thing labels (rectangles), in the format's own ids.
Picks = Tuple[Sequence[Optional[int]], Sequence[int]]


@dataclass
class Segment:
    """One region of a synthetic image.

    Attributes:
        label (int, optional): The format's category id / index, None for
            unlabelled pixels.
        isthing (bool): A thing instance (else a stuff region).
        mask (np.ndarray): Boolean ``(H, W)`` mask, never empty.
    """
    label: Optional[int]
    isthing: bool
    mask: np.ndarray


@dataclass
class Scene:
    """An image of the benchmark: its file stem, size and segments."""
    stem: str
    size: Tuple[int, int]
    segments: List[Segment]

    def labelled(self, things: Optional[bool] = None) -> List[Segment]:
        """The labelled segments, optionally only things (True) or stuff."""
        return [
            s for s in self.segments
            if s.label is not None and (things is None or s.isthing == things)
        ]


# ------------------------------------------------------------------ scenes --
def draw_scene(stem: str, size: Tuple[int, int], picks: Picks) -> Scene:
    """Stuff as horizontal bands covering the image, things as separated
    rectangles (a row across the middle) painted over them.

    Args:
        stem (str): File name without extension.
        size (tuple[int, int]): ``(height, width)``.
        picks (Picks): ``(stuff labels, thing labels)``.

    Returns:
        Scene: Every pixel in exactly one segment.
    """
    height, width = size
    stuff, things = picks
    cell = width // max(len(things), 1)
    thing_segments = []
    for k, label in enumerate(things):
        mask = np.zeros(size, bool)
        mask[height // 4:3 * height // 4, k * cell + 2:(k + 1) * cell - 2] = True
        thing_segments.append(Segment(label, True, mask))
    occupied = np.any([s.mask for s in thing_segments], axis=0)
    bounds = np.linspace(0, height, len(stuff) + 1).astype(int)
    stuff_segments = []
    for label, top, bottom in zip(stuff, bounds[:-1], bounds[1:]):
        mask = np.zeros(size, bool)
        mask[top:bottom] = True
        stuff_segments.append(Segment(label, False, mask & ~occupied))
    assert all(s.mask.any() for s in stuff_segments), f'{picks} do not fit {size}'
    return Scene(stem, size, stuff_segments + thing_segments)


def draw_scenes(stems: Sequence[str], picks: Sequence[Picks]) -> List[Scene]:
    """One scene per stem, at the sizes of :data:`SIZES`."""
    return [draw_scene(stem, size, pick) for stem, size, pick in zip(stems, SIZES, picks)]


def jpg_name(scene: Scene) -> str:
    """The image file name of a scene."""
    return scene.stem + '.jpg'


def write_images(img_dir: str, scenes: Sequence[Scene]) -> None:
    """JPEGs of the scenes: one colour per segment plus noise."""
    os.makedirs(img_dir, exist_ok=True)
    for index, scene in enumerate(scenes):
        rng = np.random.default_rng(index)
        image = rng.normal(0, 8, size=(*scene.size, 3))
        for segment in scene.segments:
            image[segment.mask] += rng.integers(30, 226, size=3)
        image = np.clip(image, 0, 255).astype(np.uint8)
        assert cv2.imwrite(osp.join(img_dir, jpg_name(scene)), image)


def label_map(scene: Scene, dtype, ignore: int, offset: int = 0) -> np.ndarray:
    """A semantic map of the scene: ``label + offset``, ``ignore`` elsewhere."""
    out = np.full(scene.size, ignore, dtype)
    for segment in scene.labelled():
        out[segment.mask] = segment.label + offset
    return out


def write_label_maps(seg_dir: str,
                     scenes: Sequence[Scene],
                     dtype,
                     ignore: int,
                     offset: int = 0) -> None:
    """PNG label maps (uint8 or uint16, kept by ``cv2.IMREAD_UNCHANGED``)."""
    os.makedirs(seg_dir, exist_ok=True)
    for scene in scenes:
        path = osp.join(seg_dir, scene.stem + '.png')
        assert cv2.imwrite(path, label_map(scene, dtype, ignore, offset))


def write_json(path: str, data: dict) -> str:
    """Write ``data`` to ``path`` (folders created); returns ``path``."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    return path


def rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of a boolean mask, json-ready."""
    encoded = mask_utils.encode(np.asfortranarray(mask, np.uint8))
    encoded['counts'] = encoded['counts'].decode('ascii')
    return encoded


def polygon(mask: np.ndarray) -> List[List[float]]:
    """COCO polygon of a rectangular mask (pixel corners)."""
    x, y, w, h = _mask_bbox(mask)
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def instance_annotations(scenes: Sequence[Scene],
                         image_ids: Sequence,
                         category_ids: Sequence[int],
                         first_id: int = 1,
                         as_polygon: bool = False,
                         **extra) -> List[dict]:
    """COCO instance annotations of the scenes' things.

    Args:
        scenes (Sequence[Scene]): The images.
        image_ids (Sequence): The json id of each image.
        category_ids (Sequence[int]): Category id of each thing label.
        first_id (int): Id of the first annotation. Defaults to 1.
        as_polygon (bool): Polygons (LVIS style) instead of RLEs.
        **extra: More keys of every annotation (e.g. ``iscrowd=0``).

    Returns:
        list[dict]: The annotations, ids counting up from ``first_id``.
    """
    anns = []
    for scene, image_id in zip(scenes, image_ids):
        for segment in scene.labelled(things=True):
            anns.append(
                dict(
                    id=first_id + len(anns),
                    image_id=image_id,
                    category_id=category_ids[segment.label],
                    segmentation=polygon(segment.mask) if as_polygon else rle(segment.mask),
                    area=int(segment.mask.sum()),
                    bbox=_mask_bbox(segment.mask),
                    **extra))
    return anns


def image_entries(scenes: Sequence[Scene], image_ids: Sequence, **extra) -> List[dict]:
    """COCO ``images`` entries (``id``, ``height``, ``width``); values of
    ``extra`` may be callables of the scene (e.g. ``file_name=jpg_name``)."""
    return [
        dict(
            id=image_id,
            height=scene.size[0],
            width=scene.size[1],
            **{
                k: v(scene) if callable(v) else v
                for k, v in extra.items()
            }) for scene, image_id in zip(scenes, image_ids)
    ]


def overrides(root: str, *evaluator_paths: str) -> dict:
    """What a writer returns: the ``data_root`` of every dataset and the
    absolute paths (given relative to ``root``) that evaluators may read."""
    root = osp.abspath(root)
    return dict(data_root=root, evaluator_paths=tuple(osp.join(root, p) for p in evaluator_paths))


def load_mmdet_tool(relpath: str):
    """Import a script of mmdet's ``.mim/tools`` as a module."""
    import mmdet
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', relpath)
    name = '_mmdet_tool_' + osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_panoptic(root: str, name: str, scenes: Sequence[Scene], image_ids: Sequence,
                   categories: List[dict]) -> None:
    """A COCO-panoptic json ``root/{name}.json`` and its PNGs ``root/{name}/``.

    Segments are listed stuff first, then things, as mmdet's
    ``ade20k2coco.py`` writes them; unlabelled pixels are VOID (id 0).
    """
    png_dir = osp.join(root, name)
    os.makedirs(png_dir, exist_ok=True)
    annotations = []
    for scene, image_id in zip(scenes, image_ids):
        ids, segments_info = np.zeros(scene.size, np.int64), []
        for k, segment in enumerate(scene.labelled()):
            seg_id = (segment.label + 1) * 1000 + k  # unique, non-zero
            ids[segment.mask] = seg_id
            segments_info.append(
                dict(
                    id=seg_id,
                    category_id=segment.label,
                    area=int(segment.mask.sum()),
                    bbox=_mask_bbox(segment.mask),
                    iscrowd=0))
        assert cv2.imwrite(osp.join(png_dir, scene.stem + '.png'), _id2rgb(ids)[..., ::-1])
        annotations.append(
            dict(image_id=image_id, file_name=scene.stem + '.png', segments_info=segments_info))
    write_json(
        osp.join(root, name + '.json'),
        dict(
            images=image_entries(scenes, image_ids, file_name=jpg_name),
            annotations=annotations,
            categories=categories))


# ------------------------------------------------------------ ADE20K-150 --
ADE_STEMS = ('ADE_val_00000001', 'ADE_val_00000002')
ADE_IMAGES = 'images/validation'
#: The scenes in ``ADE20KPanopticDataset`` labels (things 0..99, stuff
#: 100..149): wall, sky, unlabelled | person, car; building, shower (the
#: last stuff) | bed, flag (the last thing).
ADE_PICKS = (((100, 102, None), (3, 8)), ((101, 149), (0, 99)))


@lru_cache(maxsize=None)
def ade20k_semantic_ids() -> Tuple[int, ...]:
    """The standard (``annotations/*.png`` minus one) index of each
    ``ADE20KPanopticDataset`` class, by name, as mmdet's converter maps them."""
    from mmdet.datasets import ADE20KPanopticDataset
    standard = list(load_mmdet_tool('dataset_converters/ade20k2coco.py').ORIGINAL_CATEGORIES)
    return tuple(standard.index(name) for name in ADE20KPanopticDataset.METAINFO['classes'])


def write_ade20k_panoptic(root: str, scenes: Sequence[Scene]) -> None:
    """``ade20k_panoptic_val.json`` + ``ade20k_panoptic_val/`` as mmdet's
    ``ade20k2coco.py --task panoptic`` writes them: category ids 0..149 in
    ``ADE20KPanopticDataset`` order (100 things first), string image ids
    (the file stems), boxes as fixed by ``ade20k_coco_fix.py``."""
    from mmdet.datasets import ADE20KPanopticDataset
    meta = ADE20KPanopticDataset.METAINFO
    num_things = len(meta['thing_classes'])
    categories = [
        dict(id=i, name=name, isthing=int(i < num_things), color=list(meta['palette'][i]))
        for i, name in enumerate(meta['classes'])
    ]
    write_panoptic(root, 'ade20k_panoptic_val', scenes, ADE_STEMS, categories)


def write_ade20k_instance(root: str, scenes: Sequence[Scene]) -> None:
    """``ade20k_instance_val.json`` as mmdet's ``ade20k2coco.py --task
    instance`` writes it: the 100 categories in ``ADE20KInstanceDataset``
    order and names, each with its 0-based standard semantic index as id
    (``categoryMapping.txt``); string image ids; annotation ids from 0, as
    the converter numbers them (COCOeval then scores a detection matched to
    annotation 0 as a false positive)."""
    from mmdet.datasets import ADE20KInstanceDataset
    names = ADE20KInstanceDataset.METAINFO['classes']
    cat_ids = ade20k_semantic_ids()[:len(names)]
    write_json(
        osp.join(root, 'ade20k_instance_val.json'),
        dict(
            images=image_entries(scenes, ADE_STEMS, file_name=jpg_name),
            categories=[dict(id=cat_id, name=name) for cat_id, name in zip(cat_ids, names)],
            annotations=instance_annotations(scenes, ADE_STEMS, cat_ids, first_id=0, iscrowd=0)))


def write_ade20k_semantic(root: str, scenes: Sequence[Scene]) -> None:
    """``annotations/validation/*.png`` of ``ADEChallengeData2016``: uint8,
    0 = other (ignored), 1..150 the standard classes."""
    standard = ade20k_semantic_ids()
    relabelled = [
        Scene(s.stem, s.size, [
            Segment(None if g.label is None else standard[g.label], g.isthing, g.mask)
            for g in s.segments
        ]) for s in scenes
    ]
    write_label_maps(
        osp.join(root, 'annotations', 'validation'), relabelled, np.uint8, ignore=0, offset=1)


def write_ade20k_150(root: str) -> dict:
    """ADE20K-150 (``ADEChallengeData2016``) for all three benchmarks: the
    validation images, the standard semantic maps and the panoptic and
    instance jsons of mmdet's converter, all of the same two scenes."""
    scenes = draw_scenes(ADE_STEMS, ADE_PICKS)
    write_images(osp.join(root, ADE_IMAGES), scenes)
    for write in (write_ade20k_panoptic, write_ade20k_instance, write_ade20k_semantic):
        write(root, scenes)
    return overrides(root, 'ade20k_panoptic_val.json', 'ade20k_panoptic_val/',
                     'ade20k_instance_val.json')


# ------------------------------------------------------------ ADE20K-847 --
def uint16_picks(num_classes: int) -> List[Picks]:
    """Scenes of a uint16 benchmark: an unlabelled band, labels on both sides
    of 255 / 256 and the last two classes."""
    last = num_classes - 1
    return [((None, 0, 300), (last, 256)), ((1, 255), (2, last - 1))]


def write_ade20k_847(root: str) -> dict:
    """ADE20K-847 as ``tools/dataset_converters/ade20k_847.py`` writes it:
    uint16 maps 0..846 in ``annotations/validation``, 65535 = unlabelled."""
    scenes = draw_scenes(ADE_STEMS, uint16_picks(847))
    write_images(osp.join(root, ADE_IMAGES), scenes)
    write_label_maps(
        osp.join(root, 'annotations', 'validation'), scenes, np.uint16, ignore=UINT16_IGNORE)
    return overrides(root)


# -------------------------------------------------------- PASCAL Context --
PASCAL_STEMS = ('2008_000002', '2008_000003')


def _write_pascal_context(root: str, seg_dir: str, picks: Sequence[Picks], dtype, ignore: int,
                          offset: int) -> dict:
    """VOC2010 images, PASCAL Context maps in ``seg_dir`` and the val split
    file ``ImageSets/SegmentationContext/val.txt``."""
    scenes = draw_scenes(PASCAL_STEMS, picks)
    write_images(osp.join(root, 'JPEGImages'), scenes)
    write_label_maps(osp.join(root, seg_dir), scenes, dtype, ignore=ignore, offset=offset)
    split_dir = osp.join(root, 'ImageSets', 'SegmentationContext')
    os.makedirs(split_dir, exist_ok=True)
    with open(osp.join(split_dir, 'val.txt'), 'w') as f:
        f.writelines(f'{stem}\n' for stem in PASCAL_STEMS)
    return overrides(root)


def write_pascal_context_59(root: str) -> dict:
    """PASCAL Context 59 as mmseg's (and our) converter writes it: uint8
    maps in ``SegmentationClassContext``, 0 = background, 1..59."""
    return _write_pascal_context(
        root,
        'SegmentationClassContext', [((None, 0, 46), (14, 58)), ((1, 2), (3, 57))],
        np.uint8,
        ignore=0,
        offset=1)


def write_pascal_context_459(root: str) -> dict:
    """PASCAL Context 459 as ``tools/dataset_converters/pascal_context.py``
    writes it: uint16 maps 0..458 in ``SegmentationClassContext459``,
    65535 = unlabelled."""
    return _write_pascal_context(
        root,
        'SegmentationClassContext459',
        uint16_picks(459),
        np.uint16,
        ignore=UINT16_IGNORE,
        offset=0)


# --------------------------------------------------------- COCO and LVIS --
COCO_STEMS = ('000000000139', '000000000285')
COCO_IMAGE_IDS = (139, 285)
#: COCO's 80 thing category ids (1..90 without the 10 unused ones).
COCO_CATEGORY_IDS = tuple(
    i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))


def _coco_url(scene: Scene) -> str:
    return f'http://images.cocodataset.org/val2017/{scene.stem}.jpg'


def write_coco_instances(root: str) -> dict:
    """COCO ``annotations/instances_val2017.json`` (80 categories with
    COCO's ids, polygon masks) and ``val2017/``: base and novel classes of
    the 48/17 split in each image (person + cat, airplane + bicycle)."""
    from mmdet.datasets import CocoDataset
    names = list(CocoDataset.METAINFO['classes'])
    picks = [((None, None), (names.index('person'), names.index('cat'))),
             ((None, ), (names.index('airplane'), names.index('bicycle')))]
    scenes = draw_scenes(COCO_STEMS, picks)
    write_images(osp.join(root, 'val2017'), scenes)
    ann_file = 'annotations/instances_val2017.json'
    write_json(
        osp.join(root, ann_file),
        dict(
            info=dict(description='mmmaskclip synthetic COCO val2017'),
            licenses=[],
            images=image_entries(scenes, COCO_IMAGE_IDS, file_name=jpg_name, coco_url=_coco_url),
            annotations=instance_annotations(
                scenes, COCO_IMAGE_IDS, COCO_CATEGORY_IDS, as_polygon=True, iscrowd=0),
            categories=[
                dict(supercategory='thing', id=cat_id, name=name)
                for cat_id, name in zip(COCO_CATEGORY_IDS, names)
            ]))
    return overrides(root, ann_file)


def write_lvis_v1(root: str) -> dict:
    """LVIS v1 ``annotations/lvis_v1_val.json`` (the 1203 categories, ids
    1..1203, frequencies f/c/r in turn) with images found through their
    ``coco_url`` (``val2017/``), polygon masks, no ``iscrowd``."""
    from mmdet.datasets import LVISV1Dataset
    names = LVISV1Dataset.METAINFO['classes']
    cat_ids = list(range(1, len(names) + 1))
    scenes = draw_scenes(COCO_STEMS, [((None, None), (0, 1)), ((None, ), (2, len(names) - 1))])
    write_images(osp.join(root, 'val2017'), scenes)
    categories = [{
        'id': cat_id,
        'name': name,
        'synset': f'{name}.n.01',
        'synonyms': [name],
        'def': name,
        'frequency': 'fcr'[index % 3],
        'image_count': 1,
        'instance_count': 1
    } for index, (cat_id, name) in enumerate(zip(cat_ids, names))]
    ann_file = 'annotations/lvis_v1_val.json'
    write_json(
        osp.join(root, ann_file),
        dict(
            info=dict(description='mmmaskclip synthetic LVIS v1 val'),
            licenses=[],
            images=image_entries(
                scenes,
                COCO_IMAGE_IDS,
                coco_url=_coco_url,
                license=1,
                neg_category_ids=[5],
                not_exhaustive_category_ids=[]),
            annotations=instance_annotations(scenes, COCO_IMAGE_IDS, cat_ids, as_polygon=True),
            categories=categories))
    return overrides(root, ann_file)


def write_coco_panoptic_benchmark(root: str) -> dict:
    """COCO panoptic train2017 and val2017 with the 133 categories (80
    things, 53 stuff) of ``CocoPanopticDataset``, by
    :func:`synthetic_coco.write_coco_panoptic` (every stuff class is a band
    of every image, hence 64 x 64 images)."""
    from mmdet.datasets import CocoPanopticDataset
    meta = CocoPanopticDataset.METAINFO
    for seed, split in enumerate(('val2017', 'train2017')):
        write_coco_panoptic(
            root,
            num_images=2,
            image_size=(64, 64),
            split=split,
            seed=seed,
            things=meta['thing_classes'],
            stuff=meta['stuff_classes'])
    return overrides(root, 'annotations/panoptic_val2017.json', 'annotations/panoptic_val2017/')


def write_coco_class_agnostic(root: str) -> dict:
    """COCO panoptic (:func:`write_coco_panoptic_benchmark`) plus the
    class-agnostic val json of ``coco_panoptic2agnostic.py``
    (``annotations/panoptic_val2017_class-agnostic.json``)."""
    data = write_coco_panoptic_benchmark(root)
    converter = load_script('tools/dataset_converters/coco_panoptic2agnostic.py')
    out = converter.convert(osp.join(data['data_root'], 'annotations', 'panoptic_val2017.json'))
    return overrides(root, osp.relpath(out, data['data_root']))


#: The writer of each dataset type (``type:ann_file name`` where one type
#: has several formats).
WRITERS: Dict[str, Callable[[str], dict]] = {
    'ADE20KPanopticDataset': write_ade20k_150,
    'ADE20KPanopticVocabDataset': write_ade20k_150,
    'ADE20KInstanceDataset': write_ade20k_150,
    'ADE20KInstanceVocabDataset': write_ade20k_150,
    'ADE20KSegDataset': write_ade20k_150,
    'ADE20K847SegDataset': write_ade20k_847,
    'PascalContext59SegDataset': write_pascal_context_59,
    'PascalContext459SegDataset': write_pascal_context_459,
    'CocoOVDDataset': write_coco_instances,
    'LVISV1OVDataset': write_lvis_v1,
    'LVISV1Dataset': write_lvis_v1,
    'CocoPanopticDataset': write_coco_panoptic_benchmark,
    'CocoPanopticVocabDataset': write_coco_panoptic_benchmark,
    'CocoDataset:panoptic_val2017_class-agnostic.json': write_coco_class_agnostic,
}


def writer_for(dataset: dict) -> Optional[Callable[[str], dict]]:
    """The writer of a dataset config (by ``type``, or ``type:ann_file``
    name), None when no synthetic format is known."""
    name = f"{dataset.get('type')}:{osp.basename(dataset.get('ann_file') or '')}"
    return WRITERS.get(name) or WRITERS.get(dataset.get('type'))
