# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Open-vocabulary universal segmentation of images: mmdet's inferencer with
the vocabulary given per call."""
import copy
from typing import Optional, Sequence, Union

from mmdet.apis import DetInferencer
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from .inference_pipeline import inference_pipeline
from .vocabularies import per_image_vocabularies


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
        model.dataset_meta = dict(classes=(), palette_name=self.palette)

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

    def __call__(self,
                 inputs,
                 texts: Union[None, str, Sequence] = None,
                 stuff_texts: Union[None, str, Sequence] = None,
                 vocab: Union[None, str, Sequence[str]] = None,
                 **kwargs) -> dict:
        """Segment ``inputs`` (paths, arrays, or a folder) for the vocabulary.

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
            dict: ``predictions`` and ``visualization``, as ``DetInferencer``.
        """
        num = len(self._inputs_to_list(inputs))
        vocabularies = per_image_vocabularies(num, vocab, texts, stuff_texts)
        self.visualizer.dataset_meta = self.model.dataset_meta  # named by the model
        return super().__call__(
            inputs,
            texts=[list(v.things) for v in vocabularies],
            stuff_texts=[list(v.stuff) for v in vocabularies],
            **kwargs)
