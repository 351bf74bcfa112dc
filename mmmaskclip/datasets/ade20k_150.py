# Copyright (c) mmmaskclip contributors. All rights reserved.
"""ADE20K-150 (SceneParse150) classes in their standard order, and the label
maps between its three benchmarks (facts of the data and its converters).

* Semantic labels (``annotations/*.png`` minus one; mmdet's
  ``ADE20KSegDataset`` after ``reduce_zero_label``) follow the standard
  order of :data:`ADE20K_150_CATEGORIES`.
* mmdet's ``ade20k2coco.py --task panoptic`` (and Mask2Former's script)
  writes the panoptic json with the same names, the 100 things first then
  the 50 stuff, each group in the standard order: ``ADE20KPanopticDataset``
  labels.
* mmdet's ``ade20k2coco.py --task instance`` (and Mask2Former's) gives each
  instance category the id of its standard (0-based) semantic index, under
  the instance release's own names (30 of them differ, e.g. 'windowpane').

The authors of MaskCLIP spell two names differently in their ADE20K-150
vocabulary (:data:`ADE20K_150_AUTHORS_TEXT`): 'window ' (a trailing space, which
CLIP's tokenizer drops) and 'plane' (mmdet: 'airplane').
"""
from typing import Dict, List, Sequence, Tuple

#: ``(name, is_thing)`` of the 150 classes in the standard (semantic) order,
#: names as the panoptic json spells them.
ADE20K_150_CATEGORIES: Tuple[Tuple[str, bool], ...] = (
    ('wall', False),
    ('building', False),
    ('sky', False),
    ('floor', False),
    ('tree', False),
    ('ceiling', False),
    ('road, route', False),
    ('bed', True),
    ('window', True),
    ('grass', False),
    ('cabinet', True),
    ('sidewalk, pavement', False),
    ('person', True),
    ('earth, ground', False),
    ('door', True),
    ('table', True),
    ('mountain, mount', False),
    ('plant', False),
    ('curtain', True),
    ('chair', True),
    ('car', True),
    ('water', False),
    ('painting, picture', True),
    ('sofa', True),
    ('shelf', True),
    ('house', False),
    ('sea', False),
    ('mirror', True),
    ('rug', False),
    ('field', False),
    ('armchair', True),
    ('seat', True),
    ('fence', True),
    ('desk', True),
    ('rock, stone', False),
    ('wardrobe, closet, press', True),
    ('lamp', True),
    ('tub', True),
    ('rail', True),
    ('cushion', True),
    ('base, pedestal, stand', False),
    ('box', True),
    ('column, pillar', True),
    ('signboard, sign', True),
    ('chest of drawers, chest, bureau, dresser', True),
    ('counter', True),
    ('sand', False),
    ('sink', True),
    ('skyscraper', False),
    ('fireplace', True),
    ('refrigerator, icebox', True),
    ('grandstand, covered stand', False),
    ('path', False),
    ('stairs', True),
    ('runway', False),
    ('case, display case, showcase, vitrine', True),
    ('pool table, billiard table, snooker table', True),
    ('pillow', True),
    ('screen door, screen', True),
    ('stairway, staircase', False),
    ('river', False),
    ('bridge, span', False),
    ('bookcase', True),
    ('blind, screen', False),
    ('coffee table', True),
    ('toilet, can, commode, crapper, pot, potty, stool, throne', True),
    ('flower', True),
    ('book', True),
    ('hill', False),
    ('bench', True),
    ('countertop', True),
    ('stove', True),
    ('palm, palm tree', True),
    ('kitchen island', True),
    ('computer', True),
    ('swivel chair', True),
    ('boat', True),
    ('bar', False),
    ('arcade machine', True),
    ('hovel, hut, hutch, shack, shanty', False),
    ('bus', True),
    ('towel', True),
    ('light', True),
    ('truck', True),
    ('tower', False),
    ('chandelier', True),
    ('awning, sunshade, sunblind', True),
    ('street lamp', True),
    ('booth', True),
    ('tv', True),
    ('airplane', True),
    ('dirt track', False),
    ('clothes', True),
    ('pole', True),
    ('land, ground, soil', False),
    ('bannister, banister, balustrade, balusters, handrail', True),
    ('escalator, moving staircase, moving stairway', False),
    ('ottoman, pouf, pouffe, puff, hassock', True),
    ('bottle', True),
    ('buffet, counter, sideboard', False),
    ('poster, posting, placard, notice, bill, card', False),
    ('stage', False),
    ('van', True),
    ('ship', True),
    ('fountain', True),
    ('conveyer belt, conveyor belt, conveyer, conveyor, transporter', False),
    ('canopy', False),
    ('washer, automatic washer, washing machine', True),
    ('plaything, toy', True),
    ('pool', False),
    ('stool', True),
    ('barrel, cask', True),
    ('basket, handbasket', True),
    ('falls', False),
    ('tent', False),
    ('bag', True),
    ('minibike, motorbike', True),
    ('cradle', False),
    ('oven', True),
    ('ball', True),
    ('food, solid food', True),
    ('step, stair', True),
    ('tank, storage tank', False),
    ('trade name', True),
    ('microwave', True),
    ('pot', True),
    ('animal', True),
    ('bicycle', True),
    ('lake', False),
    ('dishwasher', True),
    ('screen', True),
    ('blanket, cover', False),
    ('sculpture', True),
    ('hood, exhaust hood', True),
    ('sconce', True),
    ('vase', True),
    ('traffic light', True),
    ('tray', True),
    ('trash can', True),
    ('fan', True),
    ('pier', False),
    ('crt screen', False),
    ('plate', True),
    ('monitor', True),
    ('bulletin board', True),
    ('shower', False),
    ('radiator', True),
    ('glass, drinking glass', True),
    ('clock', True),
    ('flag', True),
)
ADE20K_150_CLASSES: Tuple[str, ...] = tuple(name for name, _ in ADE20K_150_CATEGORIES)
#: Panoptic-json name -> the authors' text for it, where they differ.
ADE20K_150_AUTHORS_TEXT: Dict[str, str] = {'window': 'window ', 'airplane': 'plane'}

#: Class orders that label-remapping metrics accept by name.
CLASS_ORDERS: Dict[str, Tuple[str, ...]] = {'ade20k-150': ADE20K_150_CLASSES}


def resolve_class_order(order) -> List[str]:
    """A list of class names, or the name of one of :data:`CLASS_ORDERS`."""
    if isinstance(order, str):
        if order not in CLASS_ORDERS:
            raise KeyError(f'Unknown class order {order!r}; known: {sorted(CLASS_ORDERS)}, '
                           'or give the list of names.')
        return list(CLASS_ORDERS[order])
    return list(order)


def label_map(source: Sequence[str], target: Sequence[str]) -> List[int]:
    """For each class of ``source`` (in label order), its index in ``target``.

    Raises:
        ValueError: naming the source classes that ``target`` lacks.
    """
    index = {name: i for i, name in enumerate(target)}
    missing = [name for name in source if name not in index]
    if missing:
        raise ValueError(f'{len(missing)} classes have no counterpart in the target class '
                         f'order: {missing[:10]}')
    return [index[name] for name in source]
