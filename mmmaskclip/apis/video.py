# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Videos through an image inferencer: frames in, a drawn video and per-frame
predictions out."""
import os.path as osp
from typing import Any, Dict

import cv2
import mmcv
import mmengine

from .export import export_prediction

VIDEO_SUFFIXES = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')


def is_video(inputs: Any) -> bool:
    """Whether ``inputs`` is the path of a video file."""
    return isinstance(inputs, str) and inputs.lower().endswith(VIDEO_SUFFIXES)


def segment_video(inferencer,
                  path: str,
                  batch_size: int = 1,
                  out_dir: str = '',
                  no_save_vis: bool = False,
                  no_save_pred: bool = True,
                  return_datasamples: bool = False,
                  **kwargs) -> Dict:
    """Segment every frame of a video with ``inferencer``.

    Frames are read with mmcv's ``VideoReader`` and segmented ``batch_size``
    at a time for the one vocabulary of ``kwargs``. With ``out_dir``, the
    drawings make ``{out_dir}/vis/{stem}.mp4`` (same frame rate and size), and
    unless ``no_save_pred``, each frame's predictions go to
    ``{out_dir}/preds/{stem}_{frame:06d}.json`` (+ PNGs, see
    :func:`mmmaskclip.apis.export_prediction`).

    Args:
        inferencer (MaskCLIPInferencer): the image inferencer.
        path (str): the video file.
        batch_size (int): frames per forward pass.
        out_dir (str): output folder; '' writes nothing.
        no_save_vis (bool): do not write the drawn video.
        no_save_pred (bool): do not write per-frame predictions.
        return_datasamples (bool): return ``DetDataSample``s instead of dicts.
        **kwargs: the vocabulary (``texts``, ``stuff_texts``, ``vocab``) and
            drawing options (``pred_score_thr``, ...).

    Returns:
        dict: ``predictions`` (one per frame) and ``video`` (the written
        file, or None).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'Video {path!r} does not exist.')
    reader = mmcv.VideoReader(path)
    stem = osp.splitext(osp.basename(path))[0]
    video_path = osp.join(out_dir, 'vis', f'{stem}.mp4') if out_dir and not no_save_vis else None
    pred_dir = osp.join(out_dir, 'preds') if out_dir and not no_save_pred else None
    for folder in filter(None, (video_path and osp.dirname(video_path), pred_dir)):
        mmengine.mkdir_or_exist(folder)
    writer = None  # opened at the first drawing: side-by-side drawings are wider
    predictions, show_progress = [], inferencer.show_progress
    inferencer.show_progress = False
    progress = mmengine.ProgressBar(len(reader)) if show_progress else None

    def flush(frames: list) -> None:
        nonlocal writer
        out = inferencer(
            frames,
            batch_size=batch_size,
            return_vis=video_path is not None,
            no_save_vis=True,
            return_datasamples=True,
            **kwargs)
        for k, sample in enumerate(out['predictions']):
            if video_path is not None:
                drawing = mmcv.rgb2bgr(out['visualization'][k])
                if writer is None:
                    writer = cv2.VideoWriter(video_path, cv2.VideoWriter_fourcc(*'mp4v'), reader.fps
                                             or 25, drawing.shape[1::-1])
                writer.write(drawing)
            result = sample
            if pred_dir or not return_datasamples:
                result = export_prediction(sample, inferencer.model.dataset_meta['classes'],
                                           pred_dir, f'{stem}_{len(predictions):06d}')
            predictions.append(sample if return_datasamples else result)
            if progress is not None:
                progress.update()

    try:
        frames = []
        for frame in reader:
            frames.append(frame)
            if len(frames) == batch_size:
                flush(frames)
                frames = []
        if frames:
            flush(frames)
    finally:
        inferencer.show_progress = show_progress
        if writer is not None:
            writer.release()
    return dict(predictions=predictions, video=video_path)
