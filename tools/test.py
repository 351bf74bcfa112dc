# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Test (and evaluate) a checkpoint with an mmmaskclip (or mmdet) config.

Examples::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
    python tools/test.py CONFIG CHECKPOINT --out results.pkl
    python tools/test.py CONFIG CHECKPOINT --show-dir vis   # draw predictions
    python tools/test.py CONFIG CHECKPOINT --tta  # config's tta_model/pipeline
    python tools/test.py CONFIG CHECKPOINT --amp  # bfloat16 autocast
    python tools/test.py CONFIG CHECKPOINT --amp-dtype float16
    python tools/test.py CONFIG none --random-weights --seed 0  # offline try-out
    mim test mmmaskclip CONFIG --checkpoint CHECKPOINT
    torchrun --nproc_per_node=8 tools/test.py CONFIG CHECKPOINT \
        --launcher pytorch
"""
import argparse
import os
import sys
import warnings
from typing import List, Optional

# setuptools' deprecation notice, printed by mmengine's and mmcv's imports on every run
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

# Only light imports here: ``--help`` and argument errors stay fast. torch,
# mmdet and mmmaskclip are imported by ``main``.
from mmengine.config import Config, ConfigDict

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from tool_common import (ToolError, add_common_args, build_runner, load_cfg, merge_common_args,
                         prepare, run_reported, use_autocast_loop)

#: ``--amp-dtype`` choices, the recommended one first.
AMP_DTYPES = ('bfloat16', 'float16')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv (list[str], optional): Arguments without the program name.
            Defaults to None (``sys.argv[1:]``).

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a checkpoint with an mmmaskclip '
        'config.')
    parser.add_argument('config', help='path of the test config')
    parser.add_argument(
        'checkpoint',
        help="checkpoint file to test, or 'none' for a training-free model "
        '(e.g. MaskCLIP w/o RMA, whose weights all come from CLIP and the proposer)')
    parser.add_argument(
        '--work-dir',
        help='where logs and metrics go (default: the config\'s work_dir, '
        'else ./work_dirs/<config name>)')
    parser.add_argument(
        '--out', help='also dump the predictions to this .pkl file (for offline '
        'evaluation)')
    parser.add_argument(
        '--show', action='store_true', help='display each image with its predictions in a window')
    parser.add_argument(
        '--show-dir',
        help='save images drawn with their predictions in this folder '
        '(under work_dir/<timestamp>/ when relative)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds each image stays on screen with --show')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation with the config\'s tta_model and '
        'tta_pipeline')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed-precision inference: the test loop runs the model under torch.autocast '
        '(bfloat16 unless --amp-dtype says otherwise); weights and metrics stay float32')
    parser.add_argument(
        '--amp-dtype',
        choices=AMP_DTYPES,
        default=None,
        help='the autocast dtype of --amp (implies --amp): bfloat16 (default; GPUs from '
        'Ampere on, and CPUs) or float16 (older GPUs)')
    parser.add_argument(
        '--no-progress',
        action='store_true',
        help='no progress bar over the test images (TestProgressBarHook)')
    add_common_args(parser, 'test_dataloader.batch_size=2')
    return parser.parse_args(argv)


def _innermost_dataset(dataset_cfg: ConfigDict) -> ConfigDict:
    """The dataset inside dataset wrappers (``RepeatDataset`` and alike)."""
    while 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to a loaded config, in place.

    Args:
        cfg (Config): The config loaded from ``args.config``.
        args (argparse.Namespace): The output of :func:`parse_args`.

    Returns:
        Config: ``cfg``, updated.

    Raises:
        ToolError: If an option cannot apply to this config.
    """
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ToolError(f'--out must name a .pkl file, got {args.out}')
    merge_common_args(cfg, args)
    if cfg.launcher != 'none' and cfg.get('model_wrapper_cfg') is None:
        # testing needs no gradient sync, and torch's DDP refuses a model
        # without trainable parameters (MaskCLIP w/o RMA): wrap only the
        # submodules that train, as mmengine's separate wrapper does
        cfg.model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel')

    cfg.load_from = None if args.checkpoint.lower() == 'none' else args.checkpoint
    if not args.no_progress:
        hooks = list(cfg.get('custom_hooks', None) or [])
        if not any(h.get('type') == 'TestProgressBarHook' for h in hooks):
            hooks.append(dict(type='TestProgressBarHook'))
        cfg.custom_hooks = hooks

    if args.show or args.show_dir:
        hook = cfg.get('default_hooks', {}).get('visualization', None)
        if hook is None:
            raise ToolError('--show/--show-dir need a visualization hook: '
                            'default_hooks = dict(visualization=dict('
                            "type='DetVisualizationHook'))")
        hook.draw = True
        if args.show:
            hook.show = True
            hook.wait_time = args.wait_time
        if args.show_dir:
            hook.test_out_dir = args.show_dir

    if args.tta:
        missing = [key for key in ('tta_model', 'tta_pipeline') if key not in cfg]
        if missing:
            raise ToolError(f'--tta needs {" and ".join(missing)} in the '
                            'config')
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        dataset_cfg = _innermost_dataset(cfg.test_dataloader.dataset)
        dataset_cfg.pipeline = cfg.tta_pipeline

    if args.amp or args.amp_dtype:
        use_autocast_loop(cfg, 'test_cfg', args.amp_dtype or AMP_DTYPES[0])
    return cfg


def build_cfg(args: argparse.Namespace) -> Config:
    """Load ``args.config`` and apply the command-line options.

    Args:
        args (argparse.Namespace): The output of :func:`parse_args`.

    Returns:
        Config: The config to build the runner from.

    Raises:
        ToolError: If the config file does not exist or an option cannot
            apply to it.
    """
    return load_cfg(args, merge_args)


def main(argv: Optional[List[str]] = None) -> int:
    """Test from the command line.

    Args:
        argv (list[str], optional): Arguments without the program name.
            Defaults to None (``sys.argv[1:]``).

    Returns:
        int: The exit status.
    """
    args = parse_args(argv)
    files = [('config', args.config)]
    if args.checkpoint.lower() != 'none':
        files.append(('checkpoint', args.checkpoint))
    cfg = prepare(args, __file__, files, merge_args)
    if isinstance(cfg, int):
        return cfg
    return run_reported(__file__, lambda: run_test(cfg, args), cfg)


def run_test(cfg: Config, args: argparse.Namespace) -> int:
    """Build the runner and test; a bad model setting or checkpoint (one of
    another variant: its mismatching keys named) raises one sentence before
    the first image.

    Returns:
        int: The exit status.
    """
    from mmmaskclip.engine import UnsupportedAutocastError
    from mmmaskclip.utils import InvalidInputError, load_checkpoint_file
    runner = build_runner(cfg)
    if cfg.load_from is not None:  # its keys are checked without distributed wrappers only
        load_checkpoint_file(cfg.load_from, runner.model if cfg.launcher == 'none' else None)
    if args.out is not None:
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    try:
        runner.test()
    except UnsupportedAutocastError as err:  # raised before the first batch
        raise InvalidInputError(f'{err} (see --amp-dtype)') from err
    return 0


if __name__ == '__main__':
    sys.exit(main())
