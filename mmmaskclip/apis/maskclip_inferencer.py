# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Open-vocabulary universal segmentation of images: mmdet's inferencer with
the vocabulary given per call."""
import copy
import os.path as osp
from typing import Optional, Sequence, Union

import mmcv
import mmengine
import numpy as np
import torch
from mmdet.apis import DetInferencer
from mmdet.structures import DetDataSample
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from ..engine.loops import autocast_dtype, check_autocast, model_device_type
from .export import export_prediction
from .inference_pipeline import inference_pipeline
from .video import is_video, segment_video
from .vocabularies import per_image_vocabularies

#: Task -> the prediction field that holds it.
TASK_FIELDS = dict(panoptic='pred_panoptic_seg', semantic='pred_sem_seg', instance='pred_instances')


class MaskCLIPInferencer(DetInferencer):
    """Segment images for any vocabulary: proposals -> MaskCLIP -> semantic,
    instance and panoptic results, drawn by mmdet's ``DetLocalVisualizer``.

    Example:
        >>> inferencer = MaskCLIPInferencer(
        ...     'configs/maskclip/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py',
        ...     weights='work_dirs/maskclip/iter_10000.pth')
        >>> inferencer('demo/scene.png', texts=['house', 'tree'],
        ...            stuff_texts=['sky', 'grass'], out_dir='outputs')

    Args:
        model (str): a MaskCLIP config file (its test pipeline is used,
            without annotation loading).
        weights (str, optional): a MaskCLIP checkpoint (trainable parts);
            None for a training-free model (MaskCLIP w/o RMA).
        device (str, optional): e.g. ``'cuda:0'``; picks one if None.
        palette (str): visualiser palette. Default ``'random'``.
        show_progress (bool): progress bar over the inputs. Default True.
        dtype (str, optional): ``'float16'`` or ``'bfloat16'`` runs the model
            under ``torch.autocast`` (mixed precision); None (or
            ``'float32'``) runs in float32.
    """

    def __init__(self,
                 model: str,
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 palette: str = 'random',
                 show_progress: bool = True,
                 dtype: Optional[str] = None) -> None:
        import mmmaskclip  # noqa: F401  (registers the modules)
        self.dtype = autocast_dtype(dtype)
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

    def _load_weights_to_model(self, model, checkpoint: Optional[dict], cfg) -> None:
        """Load a MaskCLIP checkpoint (CLIP and the proposer come with the
        model); class names come from each call's vocabulary."""
        if checkpoint is not None:
            _load_checkpoint_to_model(model, checkpoint)
        model.dataset_meta = dict(classes=(), palette_name=self.palette)

    def _init_pipeline(self, cfg):
        """The config's test pipeline without annotation loading, packing the
        vocabulary into each sample (mmdet swaps in its own image loader)."""
        cfg = copy.deepcopy(cfg)
        cfg.test_dataloader.dataset.pipeline = inference_pipeline(cfg, loader=None)
        return super()._init_pipeline(cfg)

    visualize_kwargs = DetInferencer.visualize_kwargs | {'tasks'}

    def visualize(self,
                  inputs,
                  preds,
                  tasks: Optional[Sequence[str]] = None,
                  return_vis: bool = False,
                  no_save_vis: bool = False,
                  img_out_dir: str = '',
                  **kwargs):
        """Draw with mmdet's visualiser.

        Args:
            tasks (Sequence[str], optional): ``'panoptic'``, ``'semantic'``
                and/or ``'instance'``: each drawn on its own copy of the image,
                side by side in this order. None draws what the predictions
                hold, on one image (mmdet's way).
            return_vis, no_save_vis, img_out_dir, **kwargs: as
                ``DetInferencer.visualize`` (``show`` needs ``tasks=None``).

        Returns:
            list[np.ndarray] | None: the RGB drawings when ``return_vis``.
        """
        if not tasks:
            return self._draw(inputs, preds, return_vis, no_save_vis, img_out_dir, **kwargs)
        unknown = set(tasks) - set(TASK_FIELDS)
        if unknown:
            raise ValueError(f'Unknown task(s) {sorted(unknown)}: choose from {list(TASK_FIELDS)}.')
        names = []
        for single in inputs:
            names.append(
                osp.basename(single)
                if isinstance(single, str) else f'{self.num_visualized_imgs + len(names):08d}.jpg')
        views = []
        for task in tasks:
            only = [DetDataSample(metainfo=p.metainfo) for p in preds]
            for view, pred in zip(only, preds):
                if TASK_FIELDS[task] in pred:
                    view.set_field(pred.get(TASK_FIELDS[task]), TASK_FIELDS[task])
            views.append(self._draw(inputs, only, True, True, '', **kwargs))
            self.num_visualized_imgs -= sum(not isinstance(i, str) for i in inputs)
        self.num_visualized_imgs += sum(not isinstance(i, str) for i in inputs)
        drawings = [np.concatenate(parts, axis=1) for parts in zip(*views)]
        if img_out_dir and not no_save_vis:
            for name, drawing in zip(names, drawings):
                mmcv.imwrite(drawing[..., ::-1], osp.join(img_out_dir, 'vis', name))
        return drawings if return_vis else None

    def _draw(self, inputs, preds, return_vis, no_save_vis, img_out_dir, **kwargs):
        """mmdet's drawing; an empty panoptic result (all VOID, which mmdet
        cannot draw) leaves the image bare."""
        void = len(self.visualizer.dataset_meta['classes'])
        hidden = []
        for pred in preds:
            pan = pred.get('pred_panoptic_seg')
            if pan is not None and bool((pan.sem_seg == void).all()):
                hidden.append((pred, pan))
                del pred.pred_panoptic_seg
        try:
            return super().visualize(
                inputs,
                preds,
                return_vis=return_vis,
                no_save_vis=no_save_vis,
                img_out_dir=img_out_dir,
                **kwargs)
        finally:
            for pred, pan in hidden:
                pred.pred_panoptic_seg = pan

    def pred2dict(self, data_sample, pred_out_dir: str = '') -> dict:
        """A prediction as a json-serialisable dict named by the vocabulary
        (see :func:`mmmaskclip.apis.export_prediction`); with
        ``pred_out_dir``, also ``preds/{stem}.json``, ``{stem}_panoptic.png``
        and ``{stem}_semantic.png`` there (``stem``: the image's file name, or
        the running index of array inputs)."""
        if 'img_path' in data_sample:
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
        """
        if is_video(inputs):
            return segment_video(
                self, inputs, texts=texts, stuff_texts=stuff_texts, vocab=vocab, **kwargs)
        num = len(self._inputs_to_list(inputs))
        vocabularies = per_image_vocabularies(num, vocab, texts, stuff_texts)
        self.visualizer.dataset_meta = self.model.dataset_meta  # named by the model
        return super().__call__(
            inputs,
            texts=[list(v.things) for v in vocabularies],
            stuff_texts=[list(v.stuff) for v in vocabularies],
            **kwargs)
