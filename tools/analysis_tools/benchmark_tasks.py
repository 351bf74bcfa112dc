# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The measurements of ``tools/analysis_tools/benchmark.py``: the interleaved
timing loop, encoders built from the shipped model configs on one random
CLIP, and full configs end to end. Shared code of that tool, not a tool
itself.
"""
import json
import math
import os.path as osp
import sys
import time
from typing import Callable, List, Optional

from benchmark_utils import BenchmarkInputError, MemoryProbe

REPO = osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__))))
#: Variant -> the shipped model config its encoder settings come from.
SHIPPED = {
    'clip-baseline': 'clip-baseline_vit-l-14-336.py',
    'maskclip-wo-rma': 'maskclip-wo-rma_vit-l-14-336.py',
    'maskclip-rma-official': 'maskclip-official_vit-l-14-336.py',
    'maskclip-rma-paper': 'maskclip_vit-l-14-336.py',
}
VARIANTS = ('plain-clip', ) + tuple(SHIPPED)
DTYPES = ('float32', 'float16', 'bfloat16')


# ---------------------------------------------------------------- timing
def round_order(num_tasks: int, round_index: int) -> List[int]:
    """Task indices of one round: ``0..n-1`` rotated left by the round index."""
    shift = round_index % num_tasks
    return list(range(shift, num_tasks)) + list(range(shift))


def _guarded(task: dict, call: Callable):
    """``call()``; an exception is recorded as the task's ``error`` (the
    measurement is dropped from later rounds) and gives None."""
    try:
        return call()
    except Exception as err:  # a dtype or op this device lacks: report, go on
        message = str(err).strip().splitlines()
        task['error'] = f"{type(err).__name__}: {message[0][:200] if message else ''}"
        print(f"  {task['name']}: failed ({task['error']})", file=sys.stderr)
        return None


def run_interleaved(tasks: List[dict], repeats: int, warmup: int, probe: MemoryProbe) -> None:
    """Warm up every task, then time each once per round, rotating the order.

    Each task is a dict with ``fn`` (the measured call) and optionally
    ``warm_fn`` (its warm-up, ``fn`` by default); ``times`` and ``peaks_mib``
    (one entry per timed run) and ``error`` (None, or why it failed; a
    failed task is skipped from then on) are filled in place.
    """
    for task in tasks:
        task.update(times=[], peaks_mib=[], error=None)
        for _ in range(warmup):
            if task['error'] is None:
                _guarded(task, task.get('warm_fn', task['fn']))
    for index in range(repeats):
        live = [task for task in tasks if task['error'] is None]
        for i in round_order(len(live), index) if live else []:
            measured = _guarded(live[i], lambda: probe.measure(live[i]['fn']))
            if measured is not None:
                live[i]['times'].append(measured[0])
                live[i]['peaks_mib'].append(measured[1])
                print(
                    f"  round {index + 1}/{repeats} {live[i]['name']}: {measured[0]:.3f} s",
                    flush=True)


def autocast(device, dtype: str):
    """``torch.autocast`` to ``dtype``; a no-op context for float32."""
    import torch
    return torch.autocast(device.type, dtype=getattr(torch, dtype), enabled=dtype != 'float32')


# ---------------------------------------------------------------- encoders
def load_json_arg(value: str) -> dict:
    """A JSON object given inline or as a file."""
    if osp.isfile(value):
        with open(value) as f:
            return json.load(f)
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise BenchmarkInputError(f'--clip-cfg is neither a file nor JSON ({err}).') from err


def shipped_model(variant: str):
    """The ``model`` of the shipped config of ``variant``."""
    from mmengine.config import Config
    return Config.fromfile(osp.join(REPO, 'configs', '_base_', 'models', SHIPPED[variant])).model


def build_clip(args, shipped_clip: dict):
    """The open_clip model of ``--clip-cfg`` or ``--model`` at ``--input-size``,
    random weights, with the shipped config's CLIP options (QuickGELU)."""
    import open_clip
    if args.clip_cfg:
        cfg = load_json_arg(args.clip_cfg)
        if args.input_size:
            cfg['vision_cfg'] = dict(cfg['vision_cfg'], image_size=args.input_size)
        return open_clip.CLIP(**cfg).eval()
    if args.model not in open_clip.list_models():
        raise BenchmarkInputError(
            f"unknown open_clip model '{args.model}' (e.g. ViT-B-16, ViT-L-14-336).")
    extra = {k: v for k, v in shipped_clip.items() if k not in ('name', 'pretrained')}
    return open_clip.create_model(
        args.model, pretrained=None, force_image_size=args.input_size, **extra).eval()


def rma_blocks(shipped_overrides: dict, shipped_depth: int, depth: int,
               blocks: Optional[List[int]]) -> List[int]:
    """1-based RMA blocks for a CLIP of ``depth`` blocks: ``blocks`` if given,
    else each shipped block ``b`` (1-based, of ``shipped_depth``) moved to
    ``ceil(b * depth / shipped_depth)``."""
    if blocks is None:
        blocks = [math.ceil((int(i) + 1) * depth / shipped_depth) for i in shipped_overrides]
    bad = [b for b in blocks if not 1 <= b <= depth]
    if bad:
        raise BenchmarkInputError(f'--rma-blocks {bad} outside this CLIP\'s blocks 1..{depth}.')
    return sorted(set(blocks))


def build_encoders(args, device) -> tuple:
    """Plain CLIP and the encoders of ``args.variants`` on one CLIP.

    Returns:
        tuple[dict, dict, int]: name -> callable ``(images, masks)``, the
        settings to report, and the input size.
    """
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    models = {v: shipped_model(v) for v in SHIPPED}
    shipped_clip = dict(models['maskclip-rma-paper'].clip)
    clip = build_clip(args, shipped_clip)
    size = args.input_size or clip.visual.image_size[0]
    depth = len(clip.visual.transformer.resblocks)
    import open_clip
    shipped_depth = open_clip.get_model_config(shipped_clip['name'])['vision_cfg']['layers']
    paper = models['maskclip-rma-paper'].visual_encoder.mask_attention_overrides
    blocks = rma_blocks(paper, shipped_depth, depth, args.rma_blocks)
    runners = {'plain-clip': lambda images, masks: clip.encode_image(images)}
    for variant in args.variants:
        if variant == 'plain-clip':
            continue
        cfg = models[variant].visual_encoder.to_dict()
        overrides = cfg.get('mask_attention_overrides')
        if overrides:  # one layer config in every RMA block
            cfg['mask_attention_overrides'] = {
                b - 1: next(iter(overrides.values()))
                for b in blocks
            }
        encoder = MODELS.build(dict(cfg, clip=clip))
        encoder.init_weights()
        runners[variant] = encoder.to(device).eval()
    clip.to(device)
    settings = dict(
        clip=args.model if not args.clip_cfg else 'CLIP of --clip-cfg',
        input_size=size,
        rma_blocks=blocks,
        shipped_rma_blocks=sorted(int(i) + 1 for i in paper),
        shipped_depth=shipped_depth,
        configs=[f'configs/_base_/models/{SHIPPED[v]}' for v in args.variants if v in SHIPPED])
    return runners, settings, size


def random_masks(num: int, size: int, device, generator):
    """``(1, num, size, size)`` smooth random mask logits (blobs, not noise)."""
    import torch
    import torch.nn.functional as F
    coarse = torch.randn(1, num, max(size // 16, 2), max(size // 16, 2), generator=generator)
    return F.interpolate(4 * coarse, size=(size, size), mode='bilinear').to(device)


def encoder_tasks(args, device) -> tuple:
    """The encoder measurements: plain CLIP per dtype, every variant per dtype
    and M; the CLIP baseline warms up on one chunk (its chunks are alike)."""
    import torch
    runners, settings, size = build_encoders(args, device)
    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randn(1, 3, size, size, generator=gen).to(device)
    masks = {m: random_masks(m, size, device, gen) for m in args.num_masks}

    def call(name, dtype, num):

        def fn():
            with torch.no_grad(), autocast(device, dtype):
                return runners[name](images, masks[num] if num else None)

        return fn

    tasks = []
    for dtype in args.dtypes:
        tasks.append(
            dict(
                name=f'plain-clip {dtype}',
                variant='plain-clip',
                dtype=dtype,
                num_masks=None,
                fn=call('plain-clip', dtype, None)))
        for num in args.num_masks:
            for variant in (v for v in VARIANTS[1:] if v in runners):
                task = dict(
                    name=f'{variant} {dtype} M={num}',
                    variant=variant,
                    dtype=dtype,
                    num_masks=num,
                    fn=call(variant, dtype, num))
                if variant == 'clip-baseline':
                    chunk = runners[variant].chunk_size
                    masks.setdefault(
                        min(num, chunk), random_masks(min(num, chunk), size, device, gen))
                    task['warm_fn'] = call(variant, dtype, min(num, chunk))
                tasks.append(task)
    return tasks, settings


# ---------------------------------------------------------------- end to end
def e2e_image_size(cfg, image_size: Optional[List[int]]) -> tuple:
    """``(H, W)`` of the end-to-end image: ``--image-size``, or square at the
    short side of the test pipeline's ``Resize`` (its exact size without
    ``keep_ratio``)."""
    if image_size:
        return tuple(image_size) if len(image_size) == 2 else (image_size[0], image_size[0])
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    for step in dataset.get('pipeline', []):
        if step['type'].split('.')[-1] == 'Resize' and 'scale' in step:
            scale = step['scale']
            scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
            if not step.get('keep_ratio', False):
                return scale[1], scale[0]  # mmcv scales are (w, h)
            return min(scale), min(scale)
    raise BenchmarkInputError(
        'the config\'s test pipeline has no Resize with a scale: give --image-size.')


def config_vocabulary(cfg, vocab: Optional[List[str]]) -> tuple:
    """``(things, stuff)``: ``--vocab``, else the test dataset's classes."""
    if vocab:
        from mmmaskclip.apis import build_vocabulary
        try:
            built = build_vocabulary(vocab)
        except (ValueError, TypeError, FileNotFoundError) as err:
            raise BenchmarkInputError(f'--vocab: {err}') from err
        return list(built.things), list(built.stuff)
    from mmdet.registry import DATASETS
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    meta = dict(DATASETS.get(dataset['type']).METAINFO)
    meta.update(dataset.get('metainfo') or {})
    things = meta.get('thing_classes') or meta.get('classes') or ()
    stuff = (meta.get('stuff_classes') or ()) if 'thing_classes' in meta else ()
    if not things and not stuff:
        raise BenchmarkInputError('the config\'s test dataset names no classes: give --vocab.')
    return list(things), list(stuff)


def build_end_to_end(path: str, args, device) -> dict:
    """One config's model (random weights with ``--random-weights``) on a
    random image, its vocabulary embedded once.

    Returns:
        dict: ``fn`` (``--e2e-images`` calls of ``test_step``, or of the
        inferencer with ``--inferencer``), ``config``,
        ``image_size``, ``num_classes`` and ``text_seconds`` (the one-off
        text embedding).
    """
    import torch
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(args.cfg_options)
    if args.random_weights:
        cfg.model.clip.pretrained = None
        if 'checkpoint' in cfg.model.proposer:
            cfg.model.proposer.checkpoint = None
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if args.inferencer:
        from mmmaskclip.apis import MaskCLIPInferencer
        inferencer = MaskCLIPInferencer(cfg, device=str(device), show_progress=False)
        model = inferencer.model
    else:
        model = MODELS.build(cfg.model).to(device).eval()
    height, width = e2e_image_size(cfg, args.image_size)
    things, stuff = config_vocabulary(cfg, args.vocab)
    meta = dict(
        img_id=0,
        img_path='random.jpg',
        ori_shape=(height, width),
        img_shape=(height, width),
        scale_factor=(1.0, 1.0),
        text=things,
        stuff_text=stuff)
    gen = torch.Generator().manual_seed(args.seed)
    image = torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8)
    samples = [DetDataSample(metainfo=meta)]
    start = time.perf_counter()
    model.text_encoder(model.vocabulary(samples).text).sum().item()  # cached: computed once
    text_seconds = time.perf_counter() - start

    def fn():
        for _ in range(args.e2e_images):
            model.test_step(dict(inputs=[image], data_samples=[DetDataSample(metainfo=meta)]))

    return dict(
        fn=inferencer_fn(inferencer, image, things, stuff, args) if args.inferencer else fn,
        config=osp.basename(path),
        image_size=(height, width),
        num_classes=len(things) + len(stuff),
        text_seconds=text_seconds)


def inferencer_fn(inferencer, image, things: List[str], stuff: List[str], args) -> Callable:
    """``--e2e-images`` calls of ``inferencer`` on ``image`` written as a PNG
    photo: decoding, the config's pipeline, the model, post-processing at the
    photo's size, the three drawings side by side and the exported masks
    (the demo's ``--task all --save-masks``)."""
    import mmcv
    folder = osp.join(args.out_dir, 'inferencer')
    photo = osp.join(folder, 'photo.png')
    mmcv.imwrite(image.permute(1, 2, 0).numpy()[..., ::-1], photo)

    def fn():
        for _ in range(args.e2e_images):
            inferencer(
                photo,
                texts=things,
                stuff_texts=stuff,
                tasks=('panoptic', 'semantic', 'instance'),
                out_dir=osp.join(folder, 'out'),
                no_save_pred=False)

    return fn


def end_to_end_tasks(args, device) -> List[dict]:
    """One measurement per config and dtype."""
    import torch
    tasks = []
    for path in args.config:
        built = build_end_to_end(path, args, device)
        for dtype in args.dtypes:

            def fn(run=built['fn'], dtype=dtype):
                with torch.no_grad(), autocast(device, dtype):
                    run()

            tasks.append(
                dict(
                    name=f"{built['config']} {dtype}",
                    fn=fn,
                    dtype=dtype,
                    images=args.e2e_images,
                    **{
                        k: built[k]
                        for k in ('config', 'image_size', 'num_classes', 'text_seconds')
                    }))
    return tasks
