# Copyright (c) mmmaskclip contributors. All rights reserved.
"""A web page segmenting images for any vocabulary (Gradio): upload an image,
name things and stuff (or pick a preset), see the drawing, a table of the
segments and the predictions as JSON.

Names are separated by newlines or by mmdet's `` . `` (``house . tree``); a
comma inside a name joins synonyms (``sofa, couch``).

Examples::

    # training-free MaskCLIP w/o RMA with OpenAI CLIP + model-zoo Mask2Former
    python tools/demo/web_demo.py            # then open http://127.0.0.1:7860
    # a trained MaskCLIP on a GPU, reachable from the network
    python tools/demo/web_demo.py --config CFG --weights CKPT --device cuda:0 \
        --host 0.0.0.0 --port 8080 --dtype bfloat16
    # offline: random CLIP and proposer weights (the labels are meaningless)
    python tools/demo/web_demo.py --random-weights --device cpu
"""
import argparse
import os.path as osp
import sys
import tempfile

from mmengine.config import DictAction

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(REPO, 'configs', 'maskclip',
                          'maskclip-wo-rma_vit-l-14-336_coco-panoptic-val.py')
EXAMPLE = osp.join(REPO, 'demo', 'scene.png')
TASKS = ('panoptic', 'semantic', 'instance')
HEADERS = ['id', 'name', 'thing/stuff', 'area', 'score']


def parse_names(text) -> list:
    """Class names typed in a text box: one a line and/or separated by `` . ``.

    Args:
        text (str | None): the box's content; blank lines are skipped.

    Returns:
        list[str]: the names, in order.
    """
    from mmmaskclip.models.utils import parse_class_names
    return [
        n for line in (text or '').splitlines() if line.strip() for n in parse_class_names(line)
    ]


def segment_rows(sample, task: str, exported: dict, num_things: int, score_thr: float) -> list:
    """The table of segments drawn for ``task``.

    Args:
        sample (DetDataSample): the prediction.
        task (str): ``'panoptic'``, ``'semantic'`` or ``'instance'``.
        exported (dict): :func:`export_prediction` of ``sample``.
        num_things (int): labels below are things.
        score_thr (float): instances scoring at most this are left out.

    Returns:
        list[list]: ``[id, name, 'thing' | 'stuff', area, score]`` rows (no
        score for panoptic and semantic segments; a score reads ``'74.3%'``,
        as on the drawing).
    """
    from mmmaskclip.apis.drawing import score_text
    classes = exported['classes']
    kind = ('stuff', 'thing')
    if task == 'panoptic':
        return [[s['id'], s['name'], kind[s['isthing']], s['area'], None]
                for s in exported.get('panoptic', {}).get('segments_info', [])]
    if task == 'semantic':
        import torch
        labels, areas = torch.unique(sample.pred_sem_seg.sem_seg, return_counts=True)
        return [[label, classes[label], kind[label < num_things], area, None]
                for label, area in zip(labels.tolist(), areas.tolist())
                if label < len(classes)]  # not the void label
    inst = sample.pred_instances
    instances = zip(inst.labels.tolist(),
                    inst.masks.flatten(1).sum(1).tolist(), inst.scores.tolist())
    return [[i, classes[label], 'thing', area, score_text(score)]
            for i, (label, area, score) in enumerate(instances) if score > score_thr]


def segment(inferencer, image, things, stuff, preset, task, score_thr, mask_thr) -> tuple:
    """Segment one image for a vocabulary: the work of one request.

    Args:
        inferencer (MaskCLIPInferencer): its post-processor makes all three
            outputs (``{task}_on``).
        image (str): the image file.
        things (str): thing names (see :func:`parse_names`).
        stuff (str): stuff names.
        preset (str): a key of ``PRESETS`` added before the names, or
            ``'none'``.
        task (str): what to draw and list: ``'panoptic'``, ``'semantic'`` or
            ``'instance'``.
        score_thr (float): instances scoring at most this are not drawn.
        mask_thr (float): the panoptic ``object_mask_thr``.

    Returns:
        tuple: the RGB drawing ``(H, W, 3)``, the rows of the segment table
        (see :func:`segment_rows`) and the path of the JSON file of
        :func:`export_prediction` (in a new temporary folder).

    Raises:
        gr.Error: no image, an unknown task or preset, or a bad vocabulary.
    """
    import gradio as gr

    from mmmaskclip.apis import PRESETS, build_vocabulary, export_prediction
    if not image:
        raise gr.Error('Upload an image first.')
    if task not in TASKS:
        raise gr.Error(f'Unknown task {task!r}: one of {", ".join(TASKS)}.')
    if preset not in ('none', *PRESETS):
        raise gr.Error(f'Unknown preset {preset!r}: none or one of {", ".join(PRESETS)}.')
    try:
        vocabulary = build_vocabulary(None if preset == 'none' else preset, parse_names(things),
                                      parse_names(stuff))
    except (ValueError, TypeError) as err:
        raise gr.Error(str(err)) from None
    inferencer.model.post_processor.object_mask_thr = float(mask_thr)
    out = inferencer(
        image,
        texts=list(vocabulary.things),
        stuff_texts=list(vocabulary.stuff),
        return_datasamples=True)
    sample = out['predictions'][0]
    drawing = inferencer.visualize([image], [sample],
                                   tasks=[task],
                                   return_vis=True,
                                   pred_score_thr=float(score_thr))[0]
    out_dir = tempfile.mkdtemp(prefix='maskclip_web_demo_')
    stem = osp.splitext(osp.basename(image))[0]
    exported = export_prediction(sample, vocabulary.names, out_dir, stem)
    rows = segment_rows(sample, task, exported, len(vocabulary.things), float(score_thr))
    return drawing, rows, osp.join(out_dir, f'{stem}.json')


def build_demo(inferencer):
    """The page around one inferencer.

    Args:
        inferencer (MaskCLIPInferencer): the model; the panoptic threshold
            slider starts at its ``post_processor.object_mask_thr``.

    Returns:
        gr.Blocks: the page (``.launch()`` it).
    """
    import gradio as gr

    from mmmaskclip.apis import PRESETS
    mask_thr = float(getattr(inferencer.model.post_processor, 'object_mask_thr', 0.5))
    with gr.Blocks(title='MaskCLIP', analytics_enabled=False) as demo:
        gr.Markdown('# MaskCLIP: open-vocabulary universal segmentation\n'
                    'Name the classes one a line or separated by a dot between spaces '
                    '(`house . tree`); a comma inside a name joins synonyms (`sofa, couch`). '
                    'Things get instances, stuff one segment per class.')
        with gr.Row():
            with gr.Column():
                image = gr.Image(type='filepath', label='Image', elem_id='input-image')
                things = gr.Textbox(
                    label='Things', lines=2, placeholder='house . tree . door', elem_id='things')
                stuff = gr.Textbox(
                    label='Stuff', lines=2, placeholder='sky . grass', elem_id='stuff')
                preset = gr.Dropdown(['none', *PRESETS],
                                     value='none',
                                     label='Preset vocabulary (added before the names)',
                                     elem_id='preset')
                task = gr.Radio(list(TASKS), value='panoptic', label='Draw', elem_id='task')
                score_thr = gr.Slider(
                    0,
                    1,
                    value=0.3,
                    step=0.01,
                    label='Instance score threshold',
                    elem_id='score-thr')
                mask_thr = gr.Slider(
                    0,
                    1,
                    value=mask_thr,
                    step=0.01,
                    label='Panoptic object_mask_thr',
                    elem_id='mask-thr')
                submit = gr.Button('Submit', variant='primary', elem_id='submit')
            with gr.Column():
                result = gr.Image(
                    type='numpy', label='Result', interactive=False, elem_id='result-image')
                table = gr.Dataframe(
                    headers=HEADERS, label='Segments', interactive=False, elem_id='segments-table')
                json_file = gr.File(label='Predictions (JSON)', elem_id='json-file')
        if osp.isfile(EXAMPLE):
            gr.Examples([[EXAMPLE, 'house . tree . door', 'sky . grass']], [image, things, stuff])
        inputs = [image, things, stuff, preset, task, score_thr, mask_thr]
        submit.click(lambda *args: segment(inferencer, *args), inputs, [result, table, json_file])
    return demo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='MaskCLIP config')
    parser.add_argument(
        '--weights', default=None, help='MaskCLIP checkpoint (none for training-free configs)')
    parser.add_argument('--device', default=None, help='e.g. cpu or cuda:0 (default: picked)')
    parser.add_argument(
        '--dtype',
        choices=('float32', 'float16', 'bfloat16'),
        default='float32',
        help='mixed precision (torch.autocast) for the model; bfloat16 on recent GPUs and CPUs')
    parser.add_argument(
        '--random-weights',
        action='store_true',
        help='random CLIP and proposer weights: runs offline, predictions are meaningless')
    parser.add_argument(
        '--font', default=None, help='a font file for the drawn names (as demo.py --font)')
    parser.add_argument('--host', default='127.0.0.1', help='0.0.0.0 serves the network')
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Build the inferencer and serve the page until interrupted.

    Returns:
        int: the exit code (2 for missing weights).
    """
    args = parse_args(argv)
    from mmmaskclip.apis import MaskCLIPInferencer, inference_config
    from mmmaskclip.apis.drawing import check_font
    from mmmaskclip.engine import UnsupportedAutocastError, check_autocast, model_device_type
    from mmmaskclip.models import CLIPWeightsNotFoundError
    from mmmaskclip.models.proposers import ProposerWeightsNotFoundError
    from mmmaskclip.utils import InvalidInputError

    # one run with every output on, the chosen one drawn
    cfg = inference_config(args.config, args.cfg_options, args.random_weights, TASKS)
    try:
        check_font(args.font)  # before the model is built
        inferencer = MaskCLIPInferencer(
            cfg,
            weights=args.weights,
            device=args.device,
            show_progress=False,
            dtype=args.dtype,
            font_path=args.font)
        if inferencer.dtype is not None:
            check_autocast(model_device_type(inferencer.model), inferencer.dtype)
    except (CLIPWeightsNotFoundError, ProposerWeightsNotFoundError, UnsupportedAutocastError,
            InvalidInputError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    demo = build_demo(inferencer)
    demo.queue(default_concurrency_limit=1)  # one model, one request at a time
    demo.launch(server_name=args.host, server_port=args.port, share=False, show_error=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
