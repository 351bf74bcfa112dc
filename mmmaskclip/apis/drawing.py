# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Images and predictions made small enough to draw.

mmengine's visualiser renders through matplotlib, which holds about 110
bytes per pixel while it draws (1.3 GB for a 4000x3000 photo, for every
drawn layer); drawings are therefore made at most ``max_side`` pixels on
the long side, from the predictions at the photo's own size (the saved
masks keep that size).

Drawings share one style (:class:`LabelledVisualizer`): scores as percent
with one decimal (:func:`score_text`), a note on a drawing that shows
nothing (:func:`empty_drawing_message`), and a font file for class names
in scripts matplotlib's default font lacks.
"""
import re
import warnings
from typing import Optional, Tuple, Union

import mmcv
import mmengine
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData, PixelData

from ..models.post_processing.universal import INSTANCE_OFFSET
from ..utils import InputWarning, InvalidInputError
from ..utils.input_checks import check_file

#: The long side of drawings by default (pixels).
MAX_DRAWING_SIDE = 2048


def drawing_size(height: int, width: int, max_side: Optional[int]) -> Tuple[int, int]:
    """``(h, w)``: the image scaled to at most ``max_side`` on its long side
    (aspect kept; unchanged when it fits or ``max_side`` is None)."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def drawing_image(single: Union[str, np.ndarray],
                  max_side: Optional[int],
                  channel_order: str = 'rgb') -> np.ndarray:
    """The RGB picture to draw on, area-resampled to :func:`drawing_size`.

    Args:
        single (str | np.ndarray): an image file (read as RGB), or an array
            whose channels are in ``channel_order`` (a BGR array is flipped:
            drawings show true colours).
        max_side (int, optional): see :func:`drawing_size`.
        channel_order (str): of a 3-channel array: ``'rgb'`` or ``'bgr'``.

    Returns:
        np.ndarray: ``single`` itself where it needs no change.
    """
    if isinstance(single, str):
        image = mmcv.imfrombytes(mmengine.fileio.get(single), channel_order='rgb')
    elif channel_order == 'bgr' and single.ndim == 3 and single.shape[-1] == 3:
        image = np.ascontiguousarray(single[..., ::-1])
    else:
        image = single
    height, width = drawing_size(*image.shape[:2], max_side)
    if (height, width) == image.shape[:2]:
        return image
    return mmcv.imresize(image, (width, height), interpolation='area')


def _nearest_index(size: Tuple[int, int], out: Tuple[int, int]) -> torch.Tensor:
    """Flat indices into ``size`` of the nearest pixel of each of ``out``
    (pixel centres, as ``F.interpolate(mode='nearest-exact')``)."""
    (height, width), (out_h, out_w) = size, out
    rows = ((torch.arange(out_h) + 0.5) * (height / out_h)).long().clamp(max=height - 1)
    cols = ((torch.arange(out_w) + 0.5) * (width / out_w)).long().clamp(max=width - 1)
    return (rows[:, None] * width + cols[None]).flatten()


def drawing_prediction(pred: DetDataSample, size: Tuple[int, int],
                       score_thr: float) -> DetDataSample:
    """``pred`` at ``size`` for drawing: label maps and instance masks by
    nearest pixel, boxes scaled, instances scoring ``score_thr`` or less
    dropped first (mmdet's drawing drops them anyway). ``pred`` itself when
    it already has ``size``."""
    fields = [k for k in ('pred_panoptic_seg', 'pred_sem_seg') if k in pred]
    shapes = [tuple(pred.get(k).sem_seg.shape[-2:]) for k in fields]
    if 'pred_instances' in pred:
        shapes.append(tuple(pred.pred_instances.masks.shape[-2:]))
    if not shapes or all(s == tuple(size) for s in shapes):
        return pred
    small = DetDataSample(metainfo=pred.metainfo)
    for key, shape in zip(fields, shapes):
        seg = pred.get(key).sem_seg
        index = _nearest_index(shape, size).to(seg.device)
        small.set_field(PixelData(sem_seg=seg.flatten(1)[:, index].view(1, *size)), key)
    if 'pred_instances' in pred:
        inst = pred.pred_instances
        inst = inst[inst.scores > score_thr]
        shape = tuple(inst.masks.shape[-2:])
        index = _nearest_index(shape, size).to(inst.masks.device)
        scale = inst.bboxes.new_tensor([size[1] / shape[1], size[0] / shape[0]] * 2)
        small.pred_instances = InstanceData(
            masks=inst.masks.flatten(1)[:, index].view(len(inst), *size),
            labels=inst.labels,
            scores=inst.scores,
            bboxes=inst.bboxes * scale)
    return small


# ------------------------------------------------------------ the labels
def score_text(score: float) -> str:
    """A score as drawn and printed everywhere: percent, one decimal
    (``0.743`` -> ``'74.3%'``)."""
    return f'{100 * float(score):.1f}%'


def empty_drawing_message(pred: DetDataSample, num_classes: int, score_thr: float,
                          mask_thr: Optional[float]) -> Optional[str]:
    """What to write on the drawing of ``pred`` when it draws nothing, else
    None.

    Nothing is drawn when no instance scores above ``score_thr``, every
    panoptic pixel is VOID (no segment passed the post-processor's
    ``mask_thr``) and no semantic label names a class, for the fields that
    ``pred`` holds (a prediction holding none draws nothing either, but says
    nothing).

    Args:
        pred (DetDataSample): the prediction (or one task's view of it).
        num_classes (int): the vocabulary's size; labels from it on are void.
        score_thr (float): the drawing's instance threshold.
        mask_thr (float, optional): the panoptic ``object_mask_thr``.

    Returns:
        str | None: e.g. ``'nothing above the score threshold 0.3'``.
    """
    thresholds = []
    if 'pred_instances' in pred:
        if bool((pred.pred_instances.scores > score_thr).any()):
            return None
        thresholds.append(score_thr)
    if 'pred_panoptic_seg' in pred:
        if not bool((pred.pred_panoptic_seg.sem_seg % INSTANCE_OFFSET == num_classes).all()):
            return None
        thresholds.append(mask_thr)
    if 'pred_sem_seg' in pred:
        if bool((pred.pred_sem_seg.sem_seg < num_classes).any()):
            return None
        thresholds.append(None)
    if not thresholds:
        return None
    if thresholds[0] is None:
        return 'nothing labelled (every pixel is void)'
    return f'nothing above the score threshold {thresholds[0]:g}'


def check_font(font_path: Optional[str]) -> Optional[str]:
    """``font_path`` if it is None or a font file matplotlib can read.

    Raises:
        InvalidInputError: naming the file (missing, or not a font).
    """
    if font_path is None:
        return None
    from matplotlib import ft2font
    check_file(font_path, 'font')
    try:
        ft2font.FT2Font(font_path)
    except (RuntimeError, OSError) as err:
        raise InvalidInputError(f'font {font_path} is not a font file matplotlib can read '
                                f'({err}): give a .ttf, .otf or .ttc file.') from err
    return font_path


#: matplotlib's warning for a character its font cannot draw.
_MISSING_GLYPH = re.compile(r'Glyph (\d+) .*missing from font\(s\) (.*?)\.?$')


class LabelledVisualizer(DetLocalVisualizer):
    """mmdet's ``DetLocalVisualizer`` with mmmaskclip's drawing conventions:
    instance labels read ``name: 74.3%`` (see :func:`score_text`), texts are
    drawn in ``font_path`` when given (for names in scripts the default font
    lacks: CJK, Arabic, ...), a missing glyph is reported once as an
    ``InputWarning`` naming the remedy, and :meth:`draw_message` writes a
    note on a drawing.

    Args:
        name (str): the instance's name (mmengine's ``ManagerMixin``).
        font_path (str, optional): a ``.ttf``/``.otf``/``.ttc`` file, e.g.
            ``/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc``
            (``apt-get install fonts-noto-cjk``); None: matplotlib's default
            (DejaVu Sans: Latin, Greek, Cyrillic).
        **kwargs: ``DetLocalVisualizer``'s (``alpha``, ``line_width``, ...).
    """

    def __init__(self, name: str = 'visualizer', font_path: Optional[str] = None, **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.font_path = check_font(font_path)
        self._warned_glyphs = set()

    def draw_texts(self, texts, positions, *args, font_properties=None, **kwargs):
        """mmengine's, in ``font_path`` unless ``font_properties`` is given."""
        if font_properties is None and self.font_path is not None:
            from matplotlib.font_manager import FontProperties
            font_properties = FontProperties(fname=self.font_path)
        return super().draw_texts(
            texts, positions, *args, font_properties=font_properties, **kwargs)

    def _draw_instances(self, image, instances, classes, palette):
        """mmdet's, each label ``name: 74.3%``."""
        if 'scores' in instances and len(instances):
            names = instances.label_names if 'label_names' in instances else [
                classes[label] if classes is not None else f'class {label}'
                for label in instances.labels.tolist()
            ]
            fields = {k: v for k, v in instances.items() if k not in ('scores', 'label_names')}
            instances = InstanceData(
                **fields,
                label_names=[
                    f'{name}: {score_text(score)}'
                    for name, score in zip(names, instances.scores.tolist())
                ])
        return super()._draw_instances(image, instances, classes, palette)

    def draw_message(self, image: np.ndarray, message: str) -> np.ndarray:
        """``image`` (RGB) with ``message`` written in its top-left corner,
        white on black, smaller than the default size where the image is too
        narrow for it."""
        self.set_image(image)
        # a character is about 0.6 em wide; points are dpi / 72 pixels
        fits = self.width / (0.6 * len(message) * self.dpi / 72)
        self.draw_texts(
            message,
            np.array([[2.0, 2.0]]),
            font_sizes=max(4, min(self._default_font_size, int(fits))),
            colors='white',
            vertical_alignments='top',
            bboxes=dict(facecolor='black', alpha=0.8, pad=0.7, edgecolor='none'))
        return self.get_image()

    def get_image(self) -> np.ndarray:
        """mmengine's; characters the font lacks (drawn as empty boxes)
        warned about once, naming the remedy."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            image = super().get_image()
        missing, font = [], None
        for warning in caught:
            found = _MISSING_GLYPH.search(str(warning.message))
            if found is None:
                warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                       warning.lineno)
            elif chr(int(found.group(1))) not in self._warned_glyphs:
                missing.append(chr(int(found.group(1))))
                font = found.group(2)
        if missing:
            self._warned_glyphs.update(missing)
            chars = ''.join(dict.fromkeys(missing))
            warnings.warn(
                f'the drawing font ({font}) has no glyph for {chars!r}, drawn as empty boxes: '
                'give a font that has them (font_path=..., --font FILE), e.g. after apt-get '
                'install fonts-noto-cjk the file that fc-list :lang=zh file names.', InputWarning)
        return image
