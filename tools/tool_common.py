# Copyright (c) mmmaskclip contributors. All rights reserved.
"""What tools/train.py and tools/test.py share: common options, config
loading, one-line errors and building the runner.

Only light imports at module level: ``--help`` must stay fast (mim runs
``train.py -h`` before every training).
"""
import argparse
import os
import os.path as osp
import sys
from typing import Callable, Iterable, Tuple, Union

from mmengine.config import Config, DictAction


class ToolError(Exception):
    """A problem with the command line, reported as one line, no traceback."""


def add_common_args(parser: argparse.ArgumentParser, cfg_options_example: str) -> None:
    """``--cfg-options``, ``--launcher`` and the launcher's ``--local-rank``."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=f'override config entries with key=value pairs, e.g. {cfg_options_example}; '
        'lists as key="[a,b]" or key=a,b, nested as key="[(a,b),(c,d)]" (quotes '
        'needed, no spaces)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='distributed job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank (older); torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        '--random-weights',
        action='store_true',
        help='offline try-out: CLIP and the proposer keep random weights (model.clip.pretrained '
        'and model.proposer.checkpoint set to None); runs without downloads, the numbers are '
        'meaningless')
    parser.add_argument(
        '--seed',
        type=int,
        default=None,
        help='random seed (randomness.seed): the same seed gives the same random weights, '
        'data order and augmentation')


def use_random_weights(cfg: Config) -> None:
    """Drop the pretrained weights of a MaskCLIP config, in place: CLIP's
    ``model.clip.pretrained`` and the proposer's ``model.proposer.checkpoint``
    become None (random initialisation, no download), as the demos'
    ``--random-weights`` does.

    Raises:
        ToolError: if the config's model has no CLIP (not a MaskCLIP config).
    """
    model = cfg.get('model', None) or {}
    if not isinstance(model.get('clip', None), dict):
        raise ToolError('--random-weights replaces the CLIP and proposer weights of a MaskCLIP '
                        'config, but this config has no model.clip')
    model.clip.pretrained = None
    proposer = model.get('proposer', None)
    if isinstance(proposer, dict) and 'checkpoint' in proposer:
        proposer.checkpoint = None


def merge_common_args(cfg: Config, args: argparse.Namespace) -> None:
    """Launcher, ``--cfg-options``, ``--random-weights`` (after the options:
    they may swap the CLIP), ``--seed`` and the work directory (command line,
    then the config, then ``./work_dirs/<config name>``), in place."""
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if getattr(args, 'random_weights', False):
        use_random_weights(cfg)
    if getattr(args, 'seed', None) is not None:
        cfg.randomness = dict(cfg.get('randomness', None) or {}, seed=args.seed)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        stem = osp.splitext(osp.basename(args.config))[0]
        cfg.work_dir = osp.join('./work_dirs', stem)


#: mmengine's loops -> mmmaskclip's loops that run the model under autocast
#: (``mmmaskclip.engine.loops``).
AUTOCAST_LOOPS = {'TestLoop': 'AutocastTestLoop', 'ValLoop': 'AutocastValLoop'}


def use_autocast_loop(cfg: Config, key: str, dtype: str) -> None:
    """Make the loop ``cfg[key]`` (``'test_cfg'`` or ``'val_cfg'``) run the
    model under ``torch.autocast`` to ``dtype``, in place.

    mmengine's ``TestLoop``/``ValLoop`` (the default when ``cfg[key]`` has no
    ``type``) become mmmaskclip's ``AutocastTestLoop``/``AutocastValLoop``,
    their other options kept (``fp16`` dropped); an autocast loop gets the
    new ``dtype``.

    Args:
        cfg (Config): the config.
        key (str): ``'test_cfg'`` or ``'val_cfg'``.
        dtype (str): ``'bfloat16'`` or ``'float16'``.

    Raises:
        ToolError: if ``cfg[key]`` is another kind of loop.
    """
    default = 'TestLoop' if key == 'test_cfg' else 'ValLoop'
    loop = cfg.get(key, None) or {}
    kind = loop.get('type', default)
    name = kind.split('.')[-1] if isinstance(kind, str) else getattr(kind, '__name__', kind)
    if name in AUTOCAST_LOOPS:
        name = AUTOCAST_LOOPS[name]
    elif name not in AUTOCAST_LOOPS.values():
        raise ToolError(f'--amp runs {default} under autocast, but {key} is a {name}; '
                        f'use {default} or {AUTOCAST_LOOPS[default]}')
    cfg[key] = dict({k: v for k, v in loop.items() if k != 'fp16'}, type=name, dtype=dtype)


def load_cfg(args: argparse.Namespace, merge_args: Callable[[Config, argparse.Namespace],
                                                            Config]) -> Config:
    """Load ``args.config`` and apply the command line with ``merge_args``.

    Raises:
        ToolError: If the config file does not exist or an option cannot
            apply to it.
    """
    if not osp.isfile(args.config):
        raise ToolError(f'config file not found: {args.config}')
    return merge_args(Config.fromfile(args.config), args)


def import_mmmaskclip(tool_file: str) -> None:
    """Import mmmaskclip, from the checkout holding ``tool_file`` if it is
    not installed. The import registers mmmaskclip's modules and the
    ``weights_only`` allow-list that loading Runner checkpoints needs."""
    try:
        import mmmaskclip  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name != 'mmmaskclip':
            raise
        # realpath: under mim, the tool is reached through .mim/tools; the
        # checkout is the closest folder above it that holds mmmaskclip/
        folder = osp.dirname(osp.realpath(tool_file))
        while not osp.isfile(osp.join(folder, 'mmmaskclip', '__init__.py')):
            if osp.dirname(folder) == folder:
                raise
            folder = osp.dirname(folder)
        sys.path.insert(0, folder)
        import mmmaskclip  # noqa: F401,F811


def prepare(args: argparse.Namespace, tool_file: str, files: Iterable[Tuple[str, str]],
            merge_args: Callable[[Config, argparse.Namespace], Config]) -> Union[Config, int]:
    """Check the input files, import mmmaskclip and build the config.

    Args:
        args (argparse.Namespace): the parsed command line.
        tool_file (str): ``__file__`` of the calling tool.
        files (Iterable[tuple[str, str]]): ``(what, path)`` that must exist
            (URLs are not checked).
        merge_args (Callable): the tool's own option merging.

    Returns:
        Config | int: the config, or the exit status (2) after printing one
        line to stderr.
    """
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    prog = osp.basename(tool_file)
    for what, path in files:
        if '://' not in path and not osp.isfile(path):
            print(f'{prog}: error: {what} file not found: {path}', file=sys.stderr)
            return 2
    # Before loading the config: its custom_imports may name mmmaskclip.
    import_mmmaskclip(tool_file)
    try:
        from mmdet.utils import setup_cache_size_limit_of_dynamo
    except ImportError:
        pass
    else:
        setup_cache_size_limit_of_dynamo()
    try:
        cfg = load_cfg(args, merge_args)
    except ToolError as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        return 2
    if getattr(args, 'random_weights', False):
        seed = 'a random seed' if args.seed is None else f'seed {args.seed}'
        print(
            f'{prog}: note: --random-weights: CLIP and the proposer are initialised at random '
            f'({seed}); the predictions and metrics are meaningless.',
            file=sys.stderr)
    return cfg


def build_runner(cfg: Config):
    """The runner of ``cfg`` (``runner_type`` if set, else mmengine's); model
    settings that would fail only at the first image (e.g. an
    ``encoder_input_size`` that is no multiple of CLIP's patch) raise one
    sentence now.

    mmengine's ``Runner`` logs the environment and the whole config (~400
    lines) before it builds the model; here they are logged once the runner
    is built, so that a model that cannot be built (CLIP weights missing
    offline, a bad checkpoint) ends with its one-line error alone.
    """
    from mmengine.registry import RUNNERS, init_default_scope
    from mmengine.runner import Runner

    from mmmaskclip.apis.model_checks import check_model_settings
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if 'runner_type' in cfg:  # e.g. FlexibleRunner: it builds the model later anyway
        runner = RUNNERS.build(cfg)
    else:
        runner = _build_logging_env_last(Runner, cfg)
    check_model_settings(runner.model)
    return runner


def _build_logging_env_last(runner_cls: type, cfg: Config):
    """``runner_cls.from_cfg(cfg)`` with its environment and config log
    (``_log_env``) written after the constructor, not before the model."""
    deferred = []

    class EnvLoggedLast(runner_cls):

        def _log_env(self, *args, **kwargs) -> None:
            deferred.append((args, kwargs))

    runner = EnvLoggedLast.from_cfg(cfg)
    runner.__class__ = runner_cls  # the runner as mmengine builds it
    for args, kwargs in deferred:
        runner._log_env(*args, **kwargs)
    return runner


def run_reported(tool_file: str, work: Callable[[], int], cfg: Config) -> int:
    """Run ``work``; bad input it raises (an unknown registry type in the
    config, an unusable or mismatching checkpoint, a device or setting that
    cannot work, ...) becomes one line ``<tool>: error: <sentence>`` and
    exit status 2 (see ``mmmaskclip.utils.run_cli``)."""
    from mmmaskclip.utils import run_cli
    return run_cli(osp.basename(tool_file), work, cfg)


if __name__ == '__main__':
    sys.exit('tool_common.py is shared code of tools/train.py and tools/test.py, not a tool: '
             'run e.g. `mim train mmmaskclip CONFIG` or `python tools/train.py --help`.')
