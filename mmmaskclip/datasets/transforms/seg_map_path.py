# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Point a sample at a semantic map its dataset does not list."""
import os.path as osp

from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class SetSegMapPath(BaseTransform):
    """Set ``seg_map_path`` to ``<seg_dir>/<image stem><seg_map_suffix>``,
    a relative ``seg_dir`` being relative to the image's folder (so a config
    holds no copy of the data root).

    Followed by mmdet's ``LoadAnnotations(with_seg=True, ...)`` (boxes, labels
    and masks off), a panoptic sample gets the standard semantic ground truth
    of the same image, e.g. ADE20K's ``annotations/validation/*.png`` next to
    its panoptic PNGs, so that one test run scores panoptic, instance and
    semantic segmentation on their own benchmarks. Place it after the
    panoptic annotations are loaded (they read ``seg_map_path`` too).

    Required keys: ``img_path``. Modified keys: ``seg_map_path``.

    Args:
        seg_dir (str): folder of the semantic maps, absolute or relative to
            the image's folder (ADE20K: ``'../../annotations/validation'``).
        seg_map_suffix (str): their file suffix. Default ``'.png'``.
    """

    def __init__(self, seg_dir: str, seg_map_suffix: str = '.png') -> None:
        self.seg_dir = seg_dir
        self.seg_map_suffix = seg_map_suffix

    def transform(self, results: dict) -> dict:
        img_dir, name = osp.split(results['img_path'])
        seg_dir = osp.normpath(osp.join(img_dir, self.seg_dir))  # absolute seg_dir wins
        results['seg_map_path'] = osp.join(seg_dir, osp.splitext(name)[0] + self.seg_map_suffix)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(seg_dir={self.seg_dir!r}, '
                f'seg_map_suffix={self.seg_map_suffix!r})')
