# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Shared fixtures: tiny open_clip models with random weights (no network)."""
import contextlib
import importlib.util
import os.path as osp
import sys

import pytest
import torch

TEXT_CFG = dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=2)


def tiny_clip_cfg(patch_size: int = 16,
                  image_size: int = 64,
                  layers: int = 3,
                  width: int = 64,
                  embed_dim: int = 32) -> dict:
    """``open_clip.CLIP`` kwargs of a tiny ViT CLIP (random weights)."""
    return dict(
        embed_dim=embed_dim,
        vision_cfg=dict(
            image_size=image_size, layers=layers, width=width, patch_size=patch_size,
            head_width=16),
        text_cfg=dict(TEXT_CFG))


def make_tiny_clip(seed: int = 0, **kwargs):
    """A tiny open_clip ``CLIP`` in eval mode, deterministic for ``seed``."""
    import open_clip
    torch.manual_seed(seed)
    model = open_clip.CLIP(**tiny_clip_cfg(**kwargs)).eval()
    # Random init leaves some LayerNorms at identity; perturb every parameter
    # so that tests exercise all weights.
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    return model


@pytest.fixture(scope='session', autouse=True)
def text_embedding_cache_dir(tmp_path_factory):
    """The text encoders' disk cache in a temporary folder for the whole session
    (``$MMMASKCLIP_CACHE_DIR``): the suite never writes to the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp('mmmaskclip_cache')
        patch.setenv('MMMASKCLIP_CACHE_DIR', str(root))
        yield root


@pytest.fixture(scope='session')
def tiny_clip():
    """Patch-16, 64-pixel tiny CLIP shared by the test session (do not mutate)."""
    return make_tiny_clip()


@pytest.fixture(scope='session')
def tiny_clip_p14():
    """Patch-14, 56-pixel tiny CLIP (a ViT-L/14-like patch size)."""
    return make_tiny_clip(seed=1, patch_size=14, image_size=56)


REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_script(relpath: str):
    """Import a script of the repository (``tools/...py``, no package) as a
    module, e.g. to call its ``main(argv)`` in-process."""
    name = '_script_' + relpath.replace('/', '_').replace('.', '_')
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def registered(registry, *classes):
    """Register ``classes`` in ``registry`` for the block only: no test leaves
    state in the global registries."""
    for cls in classes:
        registry.register_module(module=cls)
    try:
        yield
    finally:
        for cls in classes:
            registry._module_dict.pop(cls.__name__, None)


#: Packages whose classes may live in the registries; anything else was
#: registered by a test.
LIBRARIES = ('mmcv', 'mmdet', 'mmengine', 'mmmaskclip', 'mmseg', 'mmpretrain', 'torch')


def registrations_by_tests() -> set:
    """``(registry, name)`` of every registered class that no library defines."""
    from mmengine.registry import Registry
    found = set()
    for module in ('mmengine.registry', 'mmdet.registry', 'mmseg.registry'):
        for attr, registry in vars(sys.modules.get(module, object)).items():
            if not isinstance(registry, Registry):
                continue
            for name, obj in registry.module_dict.items():
                if getattr(obj, '__module__', 'mmengine').split('.')[0] not in LIBRARIES:
                    found.add((f'{module}.{attr}', name))
    return found


@contextlib.contextmanager
def registrations_undone():
    """Undo, on exit, what the block registers (e.g. a config's ``custom_imports``
    of a test module)."""
    before = registrations_by_tests()
    try:
        yield
    finally:
        for registry, name in registrations_by_tests() - before:
            module, _, attr = registry.rpartition('.')
            getattr(sys.modules[module], attr)._module_dict.pop(name, None)


@pytest.fixture(autouse=True)
def no_registrations_left():
    """Every test leaves the global registries as it found them."""
    before = registrations_by_tests()
    yield
    left = registrations_by_tests() - before
    assert not left, f'the test left these registrations behind: {sorted(left)}'


@pytest.fixture(autouse=True)
def log_handlers_on_open_streams():
    """Loggers made during an earlier test (mmengine's Runner makes one, and
    ``print_log(logger='current')`` writes to the latest) may hold that
    test's captured stream, closed since: point such handlers at the current
    ``sys.stdout``, so that a later test sees log lines, not logging's
    'I/O operation on closed file' tracebacks."""
    import logging
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    try:
        from mmengine.logging import MMLogger
        loggers += list(MMLogger._instance_dict.values())
    except ImportError:
        pass
    for logger in loggers:
        for handler in logger.handlers:
            stream = getattr(handler, 'stream', None)
            if type(handler) is logging.StreamHandler and getattr(stream, 'closed', False):
                handler.stream = sys.stdout  # (setStream would flush the closed one)
    yield
