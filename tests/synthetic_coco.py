# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The tiny synthetic COCO-panoptic dataset of the tests.

Not a test module: the generator lives in
``tools/misc/synthetic_coco_panoptic.py``, where
``tools/misc/make_synthetic_dataset.py`` (the documented offline try-out)
loads it too; this module loads that file and re-exports it, so that tests
keep ``from synthetic_coco import write_coco_panoptic``. The package itself
depends on neither.
"""
import importlib.util
import os.path as osp
import sys

#: The generator's file and the module name it is loaded under (the name the
#: tool imports it by, so one module object serves both).
GENERATOR = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'misc', 'synthetic_coco_panoptic.py')
MODULE = 'synthetic_coco_panoptic'


def _load():
    module = sys.modules.get(MODULE)
    if module is not None and osp.abspath(getattr(module, '__file__', '')) == GENERATOR:
        return module
    spec = importlib.util.spec_from_file_location(MODULE, GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    return module


_generator = _load()
STUFF_ID_START = _generator.STUFF_ID_START
write_coco_panoptic = _generator.write_coco_panoptic
_id2rgb = _generator._id2rgb
_mask_bbox = _generator._mask_bbox

__all__ = ['STUFF_ID_START', 'write_coco_panoptic']
