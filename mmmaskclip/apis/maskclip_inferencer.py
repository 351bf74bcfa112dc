# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Open-vocabulary universal segmentation of images: mmdet's inferencer with
the vocabulary given per call."""
import copy
from typing import Optional, Sequence

from mmdet.apis import DetInferencer
from mmdet.visualization.palette import get_palette
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from .inference_pipeline import inference_pipeline


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
    """

    def __init__(self,
                 model: str,
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 palette: str = 'random',
                 show_progress: bool = True) -> None:
        import mmmaskclip  # noqa: F401  (registers the modules)
        super().__init__(
            model=model,
            weights=weights,
            device=device,
            scope='mmdet',
            palette=palette,
            show_progress=show_progress)

    def _load_weights_to_model(self, model, checkpoint: Optional[dict], cfg) -> None:
        """Load a MaskCLIP checkpoint (CLIP and the proposer come with the
        model); class names come from each call's vocabulary."""
        if checkpoint is not None:
            _load_checkpoint_to_model(model, checkpoint)
        model.dataset_meta = dict(classes=(), palette=self.palette)

    def _init_pipeline(self, cfg):
        """The config's test pipeline without annotation loading, packing the
        vocabulary into each sample (mmdet swaps in its own image loader)."""
        cfg = copy.deepcopy(cfg)
        cfg.test_dataloader.dataset.pipeline = inference_pipeline(cfg, loader=None)
        return super()._init_pipeline(cfg)

    def visualize(self, inputs, preds, **kwargs):
        """Draw with mmdet's visualiser; an empty panoptic result (all VOID,
        which mmdet cannot draw) leaves the image bare."""
        void = len(self.visualizer.dataset_meta['classes'])
        hidden = []
        for pred in preds:
            pan = pred.get('pred_panoptic_seg')
            if pan is not None and bool((pan.sem_seg == void).all()):
                hidden.append((pred, pan))
                del pred.pred_panoptic_seg
        try:
            return super().visualize(inputs, preds, **kwargs)
        finally:
            for pred, pan in hidden:
                pred.pred_panoptic_seg = pan

    def __call__(self, inputs, texts: Sequence[str], stuff_texts: Sequence[str] = (),
                 **kwargs) -> dict:
        """Segment ``inputs`` (paths, arrays, or a folder) for the vocabulary.

        Args:
            inputs: what ``DetInferencer`` takes.
            texts (Sequence[str]): thing names (instances; commas join
                synonyms).
            stuff_texts (Sequence[str]): stuff names (merged per class in
                the panoptic result). A vocabulary without them is all things.
            **kwargs: ``DetInferencer.__call__`` options (``out_dir``,
                ``pred_score_thr``, ``return_datasamples``, ...).

        Returns:
            dict: ``predictions`` and ``visualization``, as ``DetInferencer``.
        """
        if isinstance(texts, str) or isinstance(stuff_texts, str):
            raise TypeError('texts and stuff_texts are lists of class names, not strings.')
        if not texts and not stuff_texts:
            raise ValueError('Give at least one class name (texts or stuff_texts).')
        names = tuple(texts) + tuple(stuff_texts)
        # explicit colours: mmdet's semantic drawing indexes the palette
        palette = get_palette(self.palette, len(names)) if isinstance(self.palette,
                                                                      str) else self.palette
        self.visualizer.dataset_meta = dict(classes=names, palette=palette)
        num = len(self._inputs_to_list(inputs))
        stuff = [tuple(stuff_texts)] * num
        return super().__call__(inputs, texts=[tuple(texts)] * num, stuff_texts=stuff, **kwargs)
