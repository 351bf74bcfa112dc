# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Open-vocabulary universal segmentation of images: mmdet's inferencer with
the vocabulary given per call."""
import copy
import os.path as osp
import warnings
from typing import Optional, Sequence, Union

import mmcv
import mmengine
import numpy as np
import torch
from mmdet.apis import DetInferencer
from mmdet.apis.det_inferencer import IMG_EXTENSIONS
from mmdet.structures import DetDataSample
from mmengine.config import Config

from ..engine.loops import autocast_dtype, check_autocast, model_device_type
from ..models.post_processing.universal import INSTANCE_OFFSET
from ..utils import InputWarning, InvalidInputError, check_device
from ..utils.config import load_config
from ..utils.input_checks import check_channel_order
from .drawing import (MAX_DRAWING_SIDE, LabelledVisualizer, check_font, drawing_image,
                      drawing_prediction, empty_drawing_message)
from .export import export_prediction
from .image_loader import ImageFileLoader
from .inference_pipeline import inference_pipeline
from .model_checks import build_model, load_weights
from .video import is_video, segment_video
from .vocabularies import per_image_vocabularies

#: Task -> the prediction field that holds it.
TASK_FIELDS = dict(panoptic='pred_panoptic_seg', semantic='pred_sem_seg', instance='pred_instances')


class MaskCLIPInferencer(DetInferencer):
    """Segment images for any vocabulary: proposals -> MaskCLIP -> semantic,
    instance and panoptic results, drawn by mmdet's ``DetLocalVisualizer``
    (in mmmaskclip's style: :class:`~mmmaskclip.apis.drawing.LabelledVisualizer`).

    Example:
        >>> inferencer = MaskCLIPInferencer(
        ...     'configs/maskclip/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py',
        ...     weights='work_dirs/maskclip/iter_10000.pth')
        >>> inferencer('demo/scene.png', texts=['house', 'tree'],
        ...            stuff_texts=['sky', 'grass'], out_dir='outputs')

    Args:
        model (str | Config): a MaskCLIP config (file; ``mmmaskclip::``
            names one of ours); its test pipeline is used, without
            annotation loading.
        weights (str, optional): a MaskCLIP checkpoint (trainable parts);
            None for a training-free model (MaskCLIP w/o RMA).
        device (str, optional): e.g. ``'cuda:0'``; picks one if None.
        palette (str): visualiser palette. Default ``'random'``.
        show_progress (bool): progress bar over the inputs. Default True.
        dtype (str, optional): ``'float16'`` or ``'bfloat16'`` runs the model
            under ``torch.autocast`` (mixed precision); None (or
            ``'float32'``) runs in float32.
        max_drawing_side (int, optional): drawings of larger images are made
            this many pixels on the long side (drawing holds ~110 bytes a
            pixel: 1.3 GB for a 12-megapixel photo); predictions and saved
            masks keep the image's size. None draws at full size. Default
            2048.
        channel_order (str): the channel order of image arrays given to the
            inferencer: ``'bgr'`` (OpenCV's and mmdet's, e.g.
            ``mmcv.imread``) or ``'rgb'`` (PIL's, matplotlib's); files are
            read right either way, and drawings are RGB. Default ``'bgr'``.
        font_path (str, optional): a font file for the drawn names, for
            scripts matplotlib's default font lacks (CJK, Arabic, ...), e.g.
            ``/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc`` after
            ``apt-get install fonts-noto-cjk``. Default None.

    Attributes:
        empty_drawings (list[str]): ``'<image>: <why>'`` for each drawing of
            the last call that showed nothing (also written on the drawing;
            see :func:`~mmmaskclip.apis.drawing.empty_drawing_message`).
    """

    def __init__(self,
                 model: Union[str, Config],
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 palette: str = 'random',
                 show_progress: bool = True,
                 dtype: Optional[str] = None,
                 max_drawing_side: Optional[int] = MAX_DRAWING_SIDE,
                 channel_order: str = 'bgr',
                 font_path: Optional[str] = None) -> None:
        import mmmaskclip  # noqa: F401  (registers the modules)
        self.dtype = autocast_dtype(dtype)
        self.max_drawing_side = max_drawing_side
        self.channel_order = check_channel_order(channel_order)
        self.font_path = check_font(font_path)  # before the model is built
        self.empty_drawings = []
        self._keep_notes = False
        check_device(device)
        if isinstance(model, str):
            model = load_config(model)
        self._skip_bad_images = False
        super().__init__(
            model=model,
            weights=weights,
            device=device,
            scope='mmdet',
            palette=palette,
            show_progress=show_progress)
        if self.dtype is not None:  # refuse before the first image, not silently fp32
            check_autocast(model_device_type(self.model), self.dtype)

    def forward(self, inputs, **kwargs):
        """The model's ``test_step``, under ``torch.autocast`` to ``dtype``
        when one is set (the weights stay float32)."""
        if self.dtype is None:
            return super().forward(inputs, **kwargs)
        with torch.autocast(model_device_type(self.model), dtype=self.dtype):
            return super().forward(inputs, **kwargs)

    def _init_model(self, cfg, weights: Optional[str], device: str = 'cpu'):
        """mmengine's, with bad configs and checkpoints reported in one
        sentence (see :mod:`~mmmaskclip.apis.model_checks`): a checkpoint
        must fit the config exactly (an RMA checkpoint needs its RMA
        config)."""
        model = build_model(cfg)
        model.cfg = cfg
        self._load_weights_to_model(model, load_weights(model, weights), cfg)
        return model.to(device).eval()

    def _load_weights_to_model(self, model, checkpoint: Optional[dict], cfg) -> None:
        """The checkpoint is in already (:meth:`_init_model`; CLIP and the
        proposer come with the model); class names come from each call's
        vocabulary."""
        model.dataset_meta = dict(classes=(), palette_name=self.palette)

    def _init_pipeline(self, cfg):
        """The config's test pipeline without annotation loading, packing the
        vocabulary into each sample; image files are read by
        :func:`~mmmaskclip.utils.read_image` (as mmcv's loader reads them,
        an unreadable file raising one sentence that names it)."""
        cfg = copy.deepcopy(cfg)
        transforms = inference_pipeline(cfg, loader=None)
        cfg.test_dataloader.dataset.pipeline = transforms
        pipeline = super()._init_pipeline(cfg)
        pipeline.transforms[0] = ImageFileLoader(pipeline.transforms[0], transforms, self)
        return pipeline

    def _init_visualizer(self, cfg):
        """The config's ``DetLocalVisualizer`` (the default) as a
        :class:`~mmmaskclip.apis.drawing.LabelledVisualizer` in
        ``font_path``; another visualiser type as mmengine builds it."""
        kwargs = dict(cfg.get('visualizer') or dict(type='DetLocalVisualizer'))
        if str(kwargs.pop('type')).split('.')[-1] != 'DetLocalVisualizer':
            return super()._init_visualizer(copy.deepcopy(cfg))
        kwargs.pop('_scope_', None)  # a registry key, not an argument
        kwargs['name'] = f"{kwargs.get('name', 'visualizer')}-{id(self)}"  # not shared
        return LabelledVisualizer(**kwargs, font_path=self.font_path)

    def _get_chunk_data(self, inputs, chunk_size: int):
        """Batches of ``(input, data)``; among several inputs an unreadable
        image is reported (an ``InputWarning`` naming it) and skipped."""
        chunk = []
        for item in inputs:
            try:
                data = self.pipeline(copy.deepcopy(item) if isinstance(item, dict) else item)
            except InvalidInputError as err:
                if not self._skip_bad_images:
                    raise
                warnings.warn(f'skipped: {err}', InputWarning)
                continue
            original = item.get('img', item.get('img_path')) if isinstance(item, dict) else item
            chunk.append((original, data))
            if len(chunk) == chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    visualize_kwargs = DetInferencer.visualize_kwargs | {'tasks'}

    def visualize(self,
                  inputs,
                  preds,
                  tasks: Optional[Sequence[str]] = None,
                  return_vis: bool = False,
                  no_save_vis: bool = False,
                  img_out_dir: str = '',
                  **kwargs):
        """Draw with mmdet's visualiser, at most ``max_drawing_side`` pixels
        on the long side (see :mod:`~mmmaskclip.apis.drawing`), arrays in
        true colours (read in ``channel_order``); a drawing that shows nothing
        says why in its corner, and in :attr:`empty_drawings`.

        Args:
            tasks (Sequence[str], optional): ``'panoptic'``, ``'semantic'``
                and/or ``'instance'``: each drawn on its own copy of the image,
                side by side in this order. None draws what the predictions
                hold, on one image (mmdet's way).
            return_vis, no_save_vis, img_out_dir, **kwargs: as
                ``DetInferencer.visualize`` (``show``, ``pred_score_thr``, ...).

        Returns:
            list[np.ndarray] | None: the RGB drawings when ``return_vis``.
        """
        unknown = set(tasks or ()) - set(TASK_FIELDS)
        if unknown:
            raise ValueError(f'Unknown task(s) {sorted(unknown)}: choose from {list(TASK_FIELDS)}.')
        img_out_dir = '' if no_save_vis else img_out_dir
        if not (return_vis or img_out_dir or kwargs.get('show')):
            return None
        names = []
        for single in inputs:
            names.append(
                osp.basename(single)
                if isinstance(single, str) else f'{self.num_visualized_imgs + len(names):08d}.jpg')
        self.num_visualized_imgs += sum(not isinstance(i, str) for i in inputs)
        images = [
            drawing_image(single, self.max_drawing_side, self.channel_order) for single in inputs
        ]
        score_thr = kwargs.get('pred_score_thr', 0.3)
        small = [drawing_prediction(p, i.shape[:2], score_thr) for p, i in zip(preds, images)]
        views = []
        for task in tasks or [None]:
            only = small
            if task is not None:
                only = [DetDataSample(metainfo=p.metainfo) for p in small]
                for view, pred in zip(only, small):
                    if TASK_FIELDS[task] in pred:
                        view.set_field(pred.get(TASK_FIELDS[task]), TASK_FIELDS[task])
            where = [f'{name} ({task})' if task else name for name in names]
            views.append(self._draw(images, only, where, **kwargs))
        drawings = [np.concatenate(parts, axis=1) for parts in zip(*views)]
        if img_out_dir:
            for name, drawing in zip(names, drawings):
                mmcv.imwrite(drawing[..., ::-1], osp.join(img_out_dir, 'vis', name))
        return drawings if return_vis else None

    def _draw(self, images, preds, names, **kwargs):
        """mmdet's drawing of RGB ``images``, returned, not saved; a drawing
        that shows nothing (e.g. an empty panoptic result: all VOID, which
        mmdet cannot draw) gets :func:`empty_drawing_message` written on it
        and noted in :attr:`empty_drawings` under its ``names`` entry."""
        void = len(self.visualizer.dataset_meta['classes'])
        mask_thr = getattr(getattr(self.model, 'post_processor', None), 'object_mask_thr', None)
        messages = [
            empty_drawing_message(p, void, kwargs.get('pred_score_thr', 0.3), mask_thr)
            for p in preds
        ]
        hidden = []
        for pred in preds:
            pan = pred.get('pred_panoptic_seg')
            if pan is not None and bool((pan.sem_seg % INSTANCE_OFFSET == void).all()):
                hidden.append((pred, pan))
                del pred.pred_panoptic_seg
        count = self.num_visualized_imgs
        try:
            drawings = super().visualize(
                images, preds, return_vis=True, no_save_vis=True, img_out_dir='', **kwargs)
        finally:
            self.num_visualized_imgs = count
            for pred, pan in hidden:
                pred.pred_panoptic_seg = pan
        for k, (name, message) in enumerate(zip(names, messages)):
            if message is not None:
                self.empty_drawings.append(f'{name}: {message}')
                drawings[k] = self.visualizer.draw_message(drawings[k], message)
        return drawings

    def pred2dict(self, data_sample, pred_out_dir: str = '') -> dict:
        """A prediction as a json-serialisable dict named by the vocabulary
        (see :func:`mmmaskclip.apis.export_prediction`); with
        ``pred_out_dir``, also ``preds/{stem}.json``, ``{stem}_panoptic.png``
        and ``{stem}_semantic.png`` there (``stem``: the image's file name, or
        the running index of array inputs)."""
        if data_sample.get('img_path'):  # None for an array input
            stem = osp.splitext(osp.basename(data_sample.img_path))[0]
        else:
            stem = str(self.num_predicted_imgs)
            self.num_predicted_imgs += 1
        out_dir = osp.join(pred_out_dir, 'preds') if pred_out_dir else None
        if out_dir:
            mmengine.mkdir_or_exist(out_dir)
        return export_prediction(data_sample, self.model.dataset_meta['classes'], out_dir, stem)

    def __call__(self,
                 inputs,
                 texts: Union[None, str, Sequence] = None,
                 stuff_texts: Union[None, str, Sequence] = None,
                 vocab: Union[None, str, Sequence[str]] = None,
                 **kwargs) -> dict:
        """Segment ``inputs`` (paths, arrays, a folder, or a video file) for
        the vocabulary.

        The vocabulary is ``vocab`` (presets such as ``'coco'`` or
        ``'ade20k'``, or files of names; see
        :func:`mmmaskclip.apis.build_vocabulary`), then ``texts`` (things) and
        ``stuff_texts`` (stuff). Names are a list (a comma inside a name joins
        synonyms) or mmdet's ``'person . car'`` string; a list of such lists
        (or strings), one per image, gives each image its own vocabulary
        (with ``batch_size=1``).

        Args:
            inputs: what ``DetInferencer`` takes.
            texts: thing names (instances and panoptic things).
            stuff_texts: stuff names (one panoptic segment per class).
            vocab: presets and/or vocabulary files.
            **kwargs: ``DetInferencer.__call__`` options (``batch_size``,
                ``out_dir``, ``pred_score_thr``, ``return_datasamples``, ...).

        Returns:
            dict: ``predictions`` and ``visualization``, as ``DetInferencer``;
            for a video ``predictions`` (one per frame) and ``video`` (see
            :func:`mmmaskclip.apis.video.segment_video`).

        Raises:
            InvalidInputError: one image that cannot be read (missing,
                empty, not an image, truncated), named; among several inputs
                (a folder, a list) such an image is skipped with an
                ``InputWarning`` naming it and the others are segmented (the
                predictions then hold fewer entries than the inputs).
        """
        if is_video(inputs):  # decoded frames are BGR
            self.empty_drawings, self._keep_notes = [], True
            order, self.channel_order = self.channel_order, 'bgr'
            try:
                return segment_video(
                    self, inputs, texts=texts, stuff_texts=stuff_texts, vocab=vocab, **kwargs)
            finally:
                self.channel_order, self._keep_notes = order, False
        if not self._keep_notes:
            self.empty_drawings = []
        listed = self._inputs_to_list(inputs)
        if isinstance(inputs, str) and not listed and osp.isdir(inputs):
            raise InvalidInputError(f'folder {inputs} holds no image file (mmdet reads '
                                    f'{", ".join(IMG_EXTENSIONS)}): give images or a folder '
                                    'of them.')
        vocabularies = per_image_vocabularies(len(listed), vocab, texts, stuff_texts)
        self.visualizer.dataset_meta = self.model.dataset_meta  # named by the model
        self._skip_bad_images = len(listed) > 1 or (isinstance(inputs, str) and osp.isdir(inputs))
        return super().__call__(
            inputs,
            texts=[list(v.things) for v in vocabularies],
            stuff_texts=[list(v.stuff) for v in vocabularies],
            **kwargs)
