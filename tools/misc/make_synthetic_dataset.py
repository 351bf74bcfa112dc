# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Write a tiny synthetic COCO-panoptic dataset and configs that run
``tools/test.py`` and ``tools/train.py`` on it: try the whole pipeline
offline, with no dataset or weights to download.

Examples::

    python tools/misc/make_synthetic_dataset.py data/synthetic_coco --tiny
    python tools/test.py data/synthetic_coco/maskclip-wo-rma_synthetic.py none \\
        --random-weights --seed 0
    python tools/train.py data/synthetic_coco/maskclip_synthetic.py \\
        --random-weights --seed 0 --cfg-options train_cfg.max_iters=4

``OUT_DIR`` receives the dataset in COCO's layout (``train2017/``,
``val2017/``, ``annotations/panoptic_{train,val}2017{.json,/}`` and
``instances_*.json``; each image holds stuff bands and a few thing
instances, every pixel labelled) and two configs that are the shipped ones
(``--test-config``, ``--train-config``) pointed at it: ``data_root``, the
annotation files, the evaluators' files, the class names
(``metainfo``), no dataloader workers, and a log line every iteration.
With ``--tiny`` they also swap in a small model (a 3-block CLIP ViT, a
Mask2Former proposer with a ResNet-18, 128-pixel images), random weights by
construction, so that both commands run in seconds on a CPU; without it the
models are the shipped ones (CLIP ViT-L/14@336px, Mask2Former R-50), which
need their weights or ``--random-weights``.
"""
import argparse
import copy
import os.path as osp
import sys
import warnings
from typing import List, Optional

# setuptools' deprecation notice, printed by mmengine's and mmcv's imports on every run
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

sys.path.insert(0, osp.dirname(osp.realpath(__file__)))
from synthetic_coco_panoptic import write_coco_panoptic

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))
from tool_common import ToolError

#: Shipped configs: ``configs/`` beside ``tools/`` (a checkout, or the
#: ``.mim`` folder of an installed package).
CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__)))), 'configs')
PREFIX = 'mmmaskclip::'

TEST_CONFIG = 'mmmaskclip::maskclip/maskclip-wo-rma_vit-l-14-336_coco-panoptic-val.py'
TRAIN_CONFIG = 'mmmaskclip::maskclip/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py'
#: The written configs: (file name, what it is for).
OUTPUTS = {
    'test': ('maskclip-wo-rma_synthetic.py', 'MaskCLIP w/o RMA, training-free: tools/test.py'),
    'train': ('maskclip_synthetic.py', 'MaskCLIP with RMA, the training recipe: tools/train.py'),
}
SPLITS = {
    'train_dataloader': 'train2017',
    'test_dataloader': 'val2017',
    'val_dataloader': 'val2017'
}

#: ``--tiny``: open_clip.CLIP arguments of a 3-block ViT (random weights).
TINY_CLIP = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=96, layers=3, width=64, patch_size=16, head_width=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=2))
#: ``--tiny``: the side the pipelines resize images to.
TINY_SCALE = (128, 128)
#: ``--tiny``: mmdet's Mask2Former, shrunk (written as ``tiny_mask2former.py``).
TINY_MASK2FORMER = """# mmdet's Mask2Former (R-50, COCO panoptic) shrunk for a CPU try-out:
# ResNet-18, 32 channels, 8 queries, one pixel-decoder layer (random
# weights: no checkpoint fits)
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py']
attn = dict(embed_dims=32, num_heads=4)
ffn = dict(embed_dims=32, feedforward_channels=64)
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    panoptic_head=dict(
        in_channels=[64, 128, 256, 512],
        feat_channels=32,
        out_channels=32,
        num_queries=8,
        pixel_decoder=dict(
            encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
            positional_encoding=dict(num_feats=16)),
        positional_encoding=dict(num_feats=16),
        transformer_decoder=dict(
            num_layers=3,
            layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=attn, ffn_cfg=ffn))),
    test_cfg=dict(max_per_image=8))
"""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write a tiny synthetic COCO-panoptic dataset and configs for trying '
        'tools/test.py and tools/train.py offline.')
    parser.add_argument('out_dir', metavar='OUT_DIR', help='folder to write (created if needed)')
    parser.add_argument(
        '--tiny',
        action='store_true',
        help='configs with a small model (3-block CLIP ViT, Mask2Former R-18, 128-pixel '
        'images): test and train run in seconds on a CPU')
    parser.add_argument('--num-train', type=int, default=4, help='training images (default 4)')
    parser.add_argument('--num-val', type=int, default=2, help='validation images (default 2)')
    parser.add_argument(
        '--image-size',
        type=int,
        nargs=2,
        default=(96, 128),
        metavar=('HEIGHT', 'WIDTH'),
        help='image size (default 96 128)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the drawings (default 0)')
    parser.add_argument(
        '--test-config',
        default=TEST_CONFIG,
        help='the COCO-panoptic config to test with (default: MaskCLIP w/o RMA, '
        f'{TEST_CONFIG})')
    parser.add_argument(
        '--train-config',
        default=TRAIN_CONFIG,
        help=f'the COCO-panoptic config to train with (default: the recipe, {TRAIN_CONFIG})')
    return parser.parse_args(argv)


def _innermost_dataset(dataloader: dict) -> dict:
    dataset = dataloader['dataset']
    while 'dataset' in dataset:  # dataset wrappers
        dataset = dataset['dataset']
    return dataset


def _nest(dataloader: dict, dataset: dict) -> dict:
    """``dataset`` at the depth of the dataloader's innermost dataset."""
    inner, wrapped = dataloader['dataset'], dataset
    depth = 0
    while 'dataset' in inner:
        inner, depth = inner['dataset'], depth + 1
    for _ in range(depth):
        wrapped = dict(dataset=wrapped)
    return wrapped


def _moved(value, old_root: str, new_root: str):
    """``value`` with every string that starts with ``old_root`` moved to
    ``new_root`` (the evaluators' annotation files)."""
    if isinstance(value, str) and old_root and value.startswith(old_root):
        return new_root + value[len(old_root):]
    if isinstance(value, dict):
        return {k: _moved(v, old_root, new_root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_moved(v, old_root, new_root) for v in value)
    return value


def _resized(pipeline: list, scale: tuple) -> list:
    """``pipeline`` with every ``Resize`` to ``scale``."""
    pipeline = copy.deepcopy(pipeline)
    for step in pipeline:
        if step.get('type') in ('Resize', 'mmdet.Resize'):
            step['scale'] = scale
    return pipeline


class Name(str):
    """A name defined earlier in the written config: ``repr`` is the name."""

    def __repr__(self) -> str:
        return str(self)


def override(base, data: dict, tiny: bool, detector: str) -> dict:
    """The entries that point the loaded config ``base`` at ``data`` (the
    output of ``write_coco_panoptic`` for the val split) and, with ``tiny``,
    swap in the small model.

    Raises:
        ValueError: ``base`` has no dataloader with a dataset, or (``tiny``)
            no MaskCLIP model.
    """
    root = data['data_root'].rstrip('/') + '/'
    metainfo = dict(data['metainfo'], palette=[tuple(c) for c in data['metainfo']['palette']])
    entries = dict(data_root=root, metainfo=metainfo)
    for key, split in SPLITS.items():
        loader = base.get(key, None)
        if not loader or 'dataset' not in loader:
            continue
        dataset = dict(
            data_root=Name('data_root'),
            ann_file=f'annotations/panoptic_{split}.json',
            data_prefix=dict(img=f'{split}/', seg=f'annotations/panoptic_{split}/'),
            metainfo=Name('metainfo'))
        if tiny:
            dataset['pipeline'] = _resized(_innermost_dataset(loader)['pipeline'], TINY_SCALE)
        entries[key] = dict(num_workers=0, persistent_workers=False, dataset=_nest(loader, dataset))
    if len(entries) == 2:
        raise ValueError('the config has no dataloader with a dataset to point at the data')
    old_root = base.get('data_root', None)
    for key in ('test_evaluator', 'val_evaluator'):
        if base.get(key, None):
            evaluator = base[key].to_dict() if hasattr(base[key], 'to_dict') else base[key]
            entries[key] = _moved(evaluator, old_root, root)
    for kind in ('dataloader', 'evaluator'):  # val = test: written once
        if entries.get(f'val_{kind}', 0) == entries.get(f'test_{kind}', 1):
            entries[f'val_{kind}'] = Name(f'test_{kind}')
    if 'train_dataloader' in entries:
        entries['default_hooks'] = dict(logger=dict(interval=1))
        entries['log_processor'] = dict(window_size=1)
    if tiny:
        entries['model'] = tiny_model(base, detector)
    return entries


def tiny_model(base, detector: str) -> dict:
    """The ``model`` entries of ``--tiny``: a 3-block CLIP, the shrunk
    Mask2Former ``detector`` file, RMA (if any) in the last two blocks."""
    model = base.get('model', None) or {}
    if 'clip' not in model or 'proposer' not in model:
        raise ValueError('--tiny swaps the CLIP and the proposer of a MaskCLIP config, but this '
                         'config has no model.clip or model.proposer')
    side = TINY_CLIP['vision_cfg']['image_size']
    entries = dict(
        clip=dict(_delete_=True, model_cfg=copy.deepcopy(TINY_CLIP), pretrained=None),
        encoder_input_size=(side, side),
        proposer=dict(_delete_=True, type='DetectorProposer', detector=detector, checkpoint=None))
    overrides = (model.get('visual_encoder', None) or {}).get('mask_attention_overrides', None)
    if overrides:
        layers = TINY_CLIP['vision_cfg']['layers']
        rma = next(iter(overrides.values()))
        rma = rma.to_dict() if hasattr(rma, 'to_dict') else dict(rma)
        entries['visual_encoder'] = dict(mask_attention_overrides={
            '_delete_': True,
            **{
                block: rma
                for block in range(1, layers)
            }
        })
    if model.get('head', None):
        entries['head'] = dict(train_cfg=dict(num_points=512))
    return entries


def write_config(path: str, base_path: str, entries: dict, what: str) -> None:
    """A config file: ``_base_`` = the shipped config, then ``entries`` (in
    their order: later ones may use earlier ones' :class:`Name`)."""
    from yapf.yapflib.yapf_api import FormatCode
    lines = [
        f'# {what}', '# on the synthetic dataset of tools/misc/make_synthetic_dataset.py',
        f'_base_ = [{base_path!r}]'
    ]
    lines += [f'{key} = {value!r}' for key, value in entries.items()]
    style = '{based_on_style: pep8, column_limit: 100}'
    text, _ = FormatCode('\n'.join(lines) + '\n', style_config=style)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)


def config_path(path: str) -> str:
    """``path``, or for ``mmmaskclip::X`` the shipped config ``configs/X``
    (of the checkout, or of an installed package's ``.mim``), real path.

    Raises:
        ToolError: the file does not exist.
    """
    if path.startswith(PREFIX):
        path = osp.join(CONFIGS, path[len(PREFIX):])
    if not osp.isfile(path):
        raise ToolError(f'config file not found: {path}')
    if not path.endswith('.py'):
        raise ToolError(f'{path} is not a config file (.py)')
    return osp.realpath(path)


def make(args: argparse.Namespace) -> int:
    """Write the dataset and the configs; print what to run.

    Raises:
        ToolError: a bad option or config, before anything is written.
    """
    from mmengine.config import Config
    if min(args.image_size) < 16 or args.num_train < 1 or args.num_val < 1:
        raise ToolError('--image-size needs sides of 16 pixels or more and --num-train / '
                        '--num-val one image or more')
    bases = {kind: config_path(getattr(args, f'{kind}_config')) for kind in OUTPUTS}
    # mmmaskclip (custom_imports) is not needed to read them: a fast start
    loaded = {k: Config.fromfile(path, import_custom_modules=False) for k, path in bases.items()}
    out_dir = osp.abspath(args.out_dir)
    detector = osp.join(out_dir, 'tiny_mask2former.py')
    probe = dict(data_root=out_dir, metainfo=dict(palette=[]))  # the checks, before writing
    for kind in OUTPUTS:
        try:
            override(loaded[kind], probe, args.tiny, detector)
        except ValueError as err:
            raise ToolError(f'--{kind}-config {bases[kind]}: {err}') from err

    write_coco_panoptic(
        out_dir, args.num_train, tuple(args.image_size), split='train2017', seed=args.seed)
    data = write_coco_panoptic(
        out_dir, args.num_val, tuple(args.image_size), split='val2017', seed=args.seed + 1)
    if args.tiny:
        with open(detector, 'w', encoding='utf-8') as f:
            f.write(TINY_MASK2FORMER)
    written = []
    for kind, (name, what) in OUTPUTS.items():
        path = osp.join(out_dir, name)
        entries = override(loaded[kind], data, args.tiny, detector)
        write_config(path, bases[kind], entries, what + (' (--tiny model)' if args.tiny else ''))
        written.append((path, what))
    things, stuff = data['thing_classes'], data['stuff_classes']
    print(f'wrote {args.num_train} training and {args.num_val} validation images to {out_dir} '
          f'(things: {", ".join(things)}; stuff: {", ".join(stuff)}) and the configs')
    for path, what in written:
        print(f'  {path}  ({what})')
    python = osp.relpath(sys.executable)
    python = sys.executable if python.startswith('..') else python
    test_cfg, train_cfg = (osp.relpath(path) for path, _ in written)
    print('try them offline:\n'
          f'  {python} tools/test.py {test_cfg} none --random-weights --seed 0\n'
          f'  {python} tools/train.py {train_cfg} --random-weights --seed 0 '
          '--cfg-options train_cfg.max_iters=4')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return make(args)
    except ToolError as err:
        print(f'{osp.basename(__file__)}: error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
