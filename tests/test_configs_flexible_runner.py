# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The FSDP recipe (``maskclip_vit-l-14-336_8xb1-10k_coco-panoptic-fsdp.py``):
mmengine's ``FlexibleRunner`` with ``FSDPStrategy`` (as
:class:`~mmmaskclip.engine.fsdp.ResumableFSDPStrategy`).

Config level: it is the COCO recipe plus the runner, its types resolve the
way mmengine resolves them, and its wrap policy puts the recipe's model into
the FSDP units the config describes.

Run where it runs: FSDP needs an accelerator, except that torch's FSDP also
runs on the CPU with gloo when ``device_id`` is the CPU (torch 2.x). Two
processes train a tiny MaskCLIP through ``tools/dist_train.sh`` with the
shipped strategy and take exactly the steps of the recipe's Runner in one
process, gradient clipping included (batch 2 = 2 processes x 1, as in
``tests/test_tools/test_distributed.py``, whose comparable config and launch
helpers this reuses). What the CPU run changes, and why:

- ``strategy.model_wrapper.device_id='cpu'``: mmengine passes
  ``device_id=LOCAL_RANK``, a CUDA index, and torch's FSDP then wants an
  accelerator;
- a no-op ``torch.cuda.set_device`` in the workers (mmengine's ``init_dist``
  calls it; ``test_distributed``'s shim);
- ``model.text_encoder.cache_dir=False``: the text-embedding disk cache
  fingerprints the weights through ``tensor.numpy()`` (after ``.cpu()``, a
  copy on GPUs), which on CPU tensors pins the storage of FSDP's gathered
  parameters, which FSDP then cannot free.

Two more such launches resume that training from its 2nd checkpoint
(``--resume``: the uninterrupted weights, bit for bit) and start a new one
from it (``load_from``), which needs MaskCLIP's ``_fill_frozen_state`` load
hook to leave FSDP's sharded frozen weights alone and, on torch >= 2.1, the
config's ``ResumableFSDPStrategy`` (mmengine's ``FSDPStrategy`` passes
``FSDP.optim_state_dict_to_load`` its arguments in torch 2.0's order). Tests
without processes cover :func:`~mmmaskclip.engine.fsdp.clip_grad_norm_globally`
on a stub model.
"""
import copy
import glob
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
from conftest import REPO, load_script
from mmengine.config import Config
from test_shipped_configs import use_tiny_models

RECIPE = osp.join(REPO, 'configs/maskclip/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py')
FSDP_CONFIG = osp.splitext(RECIPE)[0] + '-fsdp.py'
#: What the FSDP config adds to the recipe.
RUNNER_KEYS = {'runner_type', 'strategy'}


def dist_helpers():
    """``tests/test_tools/test_distributed.py`` as a module (its comparable
    training config and launch helpers)."""
    return load_script('tests/test_tools/test_distributed.py')


# ------------------------------------------------------------ the config --
def test_fsdp_config_is_the_recipe_plus_the_runner():
    fsdp, recipe = Config.fromfile(FSDP_CONFIG).to_dict(), Config.fromfile(RECIPE).to_dict()
    assert set(fsdp) - set(recipe) == RUNNER_KEYS
    assert set(recipe) <= set(fsdp)
    for key in set(recipe) - {'model'}:
        assert fsdp[key] == recipe[key], key
    # the model's one change: FSDP refuses 0-dim parameters (CLIP's logit_scale)
    model = copy.deepcopy(recipe['model'])
    model['clip']['nonscalar_logit_scale'] = True
    assert fsdp['model'] == model
    # the recipe's optimizer constructor and checkpoint hooks are kept
    assert fsdp['optim_wrapper']['constructor'] == 'TrainableParamsOptimWrapperConstructor'
    assert fsdp['optim_wrapper']['clip_grad']['max_norm'] == 0.01
    hooks = {h['type'] for h in fsdp['custom_hooks']}
    assert hooks >= {'PlainCheckpointHook', 'RNGStateCheckpointHook'}


def test_fsdp_config_types_resolve_in_mmengine():
    from mmengine._strategy import FSDPStrategy
    from mmengine.registry import FUNCTIONS, MODEL_WRAPPERS, RUNNERS, STRATEGIES
    from mmengine.runner import FlexibleRunner

    from mmmaskclip.engine.fsdp import ResumableFSDPStrategy, wrap_by_class_name
    cfg = Config.fromfile(FSDP_CONFIG)
    assert RUNNERS.get(cfg.runner_type) is FlexibleRunner
    # STRATEGIES falls back to the import path too
    assert STRATEGIES.get(cfg.strategy.type) is ResumableFSDPStrategy
    assert ResumableFSDPStrategy.__bases__ == (FSDPStrategy, )
    wrapper = cfg.strategy.model_wrapper
    # no type: FSDPStrategy's default, mmengine's MMFullyShardedDataParallel
    assert 'type' not in wrapper and MODEL_WRAPPERS.get('MMFullyShardedDataParallel')
    assert wrapper.use_orig_params is True
    # MMFullyShardedDataParallel looks the policy up in FUNCTIONS, which
    # falls back to the import path
    assert FUNCTIONS.get(wrapper.auto_wrap_policy.type) is wrap_by_class_name
    assert cfg.strategy.state_dict_cfg == 'full'


def test_fsdp_units_of_the_recipe_model():
    """The recipe's model (tiny CLIP with ViT-L's 24 blocks, shrunk
    Mask2Former): the wrap policy makes the proposer, the image encoder and
    the text encoder units; nothing inside the image encoder (which uses its
    blocks piecewise); the trainable RMA layers share the image encoder's unit
    with frozen CLIP weights (hence ``use_orig_params=True``); no 0-dim
    parameter is left."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    from mmmaskclip.engine.fsdp import wrap_by_class_name
    cfg = Config.fromfile(FSDP_CONFIG)
    init_default_scope('mmdet')
    nonscalar = cfg.model.clip.nonscalar_logit_scale
    use_tiny_models(cfg.model, None)  # model.clip replaced: open_clip.CLIP kwargs
    cfg.model.clip.model_cfg.nonscalar_logit_scale = nonscalar
    model = MODELS.build(cfg.model)
    policy = cfg.strategy.model_wrapper.auto_wrap_policy
    units = {
        name
        for name, module in model.named_modules() if wrap_by_class_name(
            module, False, sum(p.numel() for p in module.parameters()), classes=policy.classes)
    }
    assert units == {'proposer', 'visual_encoder', 'text_encoder'}
    assert [n for n, p in model.named_parameters() if p.dim() == 0] == []
    encoder = model.visual_encoder
    assert {p.requires_grad for p in encoder.parameters()} == {True, False}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith('visual_encoder.mask_attention.') for n in trainable)
    # FSDP asks with recurse=True first: it must look into every module
    assert all(wrap_by_class_name(m, True, 0, classes=policy.classes) for m in model.modules())


# -------------------------------------------------- two processes, gloo --
#: The recipe's gradient clipping: acts on every step here.
MAX_NORM = 0.01
#: SGD's momentum: an optimizer state for resuming to restore.
MOMENTUM = 0.9


def initial_weights(model_cfg, path: str) -> None:
    """Save the trainable weights of a freshly built ``model_cfg`` to
    ``path``, as a checkpoint."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    torch.save(dict(state_dict=MODELS.build(model_cfg).state_dict()), path)


def comparable_cfgs(tmp) -> tuple:
    """The same tiny MaskCLIP training (3 iterations), written for the
    recipe's Runner (1 process x batch 2) and for the FSDP config's runner and
    strategy (2 processes x batch 1), as ``(single, fsdp)`` config files."""
    cfg = dist_helpers().comparable_train_cfg(tmp, max_iters=3)
    shipped = Config.fromfile(FSDP_CONFIG)
    cfg.model.clip.model_cfg.nonscalar_logit_scale = shipped.model.clip.nonscalar_logit_scale
    cfg.model.text_encoder.cache_dir = False  # CPU only (module docstring)
    # the same initial RMA weights in both runs: the two runners draw random
    # numbers differently before they build the model
    initial_weights(cfg.model, str(tmp / 'init.pth'))
    cfg.model.init_cfg = dict(type='Pretrained', checkpoint=str(tmp / 'init.pth'))
    cfg.optim_wrapper.clip_grad = dict(max_norm=MAX_NORM, norm_type=2)
    cfg.optim_wrapper.optimizer.momentum = MOMENTUM
    cfg.custom_hooks = shipped.custom_hooks
    cfg.default_hooks.logger.interval = 1
    cfg.pop('model_wrapper_cfg')
    cfg.train_dataloader.batch_size = 2
    cfg.dump(str(tmp / 'single.py'))
    cfg.train_dataloader.batch_size = 1
    cfg.runner_type = shipped.runner_type
    cfg.strategy = shipped.strategy
    cfg.strategy.model_wrapper.device_id = 'cpu'
    cfg.dump(str(tmp / 'fsdp.py'))
    return tmp / 'single.py', tmp / 'fsdp.py'


def checkpoint(work_dir: str, it: int) -> dict:
    """``work_dir/iter_{it}.pth``, loaded with ``weights_only=True``."""
    return torch.load(osp.join(work_dir, f'iter_{it}.pth'), map_location='cpu', weights_only=True)


def train_logs(work_dir: str) -> list:
    """The training iterations' records of mmengine's json log."""
    (log, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(log) as f:
        return [r for r in map(json.loads, f) if 'loss' in r]


def dist_train(tmp, cfg, work_dir: str, *args) -> None:
    """``tools/dist_train.sh cfg 2 --work-dir work_dir *args`` on the CPU."""
    dist = dist_helpers()
    dist.run_script(['tools/dist_train.sh', cfg, 2, '--work-dir', work_dir, *args],
                    tmp,
                    PORT=str(dist.free_port()))


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> dict:
    """The 3 iterations of :func:`comparable_cfgs`, trained by the recipe's
    Runner and by 2 FSDP processes: the work directories (``single``,
    ``fsdp``), the FSDP config (``fsdp_cfg``) and the folder (``tmp``).
    Shared by the slow tests, which run it once."""
    tmp = tmp_path_factory.mktemp('fsdp')
    single_cfg, fsdp_cfg = comparable_cfgs(tmp)
    single, fsdp = str(tmp / 'single'), str(tmp / 'fsdp')
    dist_helpers().run_tool('train', [single_cfg, '--work-dir', single])
    dist_train(tmp, fsdp_cfg, fsdp)
    return dict(tmp=tmp, single=single, fsdp=fsdp, fsdp_cfg=fsdp_cfg)


@pytest.mark.slow
def test_fsdp_two_processes_train_like_the_runner(trained):
    single, fsdp = trained['single'], trained['fsdp']

    # an ordinary checkpoint: plain data, trainable weights only
    want, got = checkpoint(single, 3)['state_dict'], checkpoint(fsdp, 3)['state_dict']
    assert got.keys() == want.keys()
    assert got and all(k.startswith('visual_encoder.mask_attention.') for k in got)
    first = checkpoint(single, 1)['state_dict']
    assert [k for k in want if not torch.equal(want[k], first[k])], 'no weight moved'
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5, msg=key)
    # clipping acted on every step, by the norm of the whole gradient (as DDP
    # clips); clipping each process's shard by its own norm (mmengine's
    # OptimWrapper alone) fails the comparison above
    logs = {name: train_logs(name) for name in (single, fsdp)}
    assert [r['iter'] for r in logs[fsdp]] == [1, 2, 3]
    for one, two in zip(logs[single], logs[fsdp]):
        assert one['grad_norm'] > MAX_NORM
        assert two['grad_norm'] == pytest.approx(one['grad_norm'], rel=1e-4)
        # (rank 0 logs the loss of its own image only)
        assert torch.isfinite(torch.tensor(two['loss']))


@pytest.mark.slow
def test_fsdp_resume_and_load_from(trained):
    """``--resume`` and ``load_from`` under FSDP, on the runs of
    :func:`trained` (2 more launches of 1 iteration each).

    Resumed from ``iter_2.pth``, the 3rd iteration ends with the trainable
    weights of the uninterrupted run, bit for bit: every iteration trains on
    the same 2 images (the whole dataset), the gradient has no randomness
    (class loss only), the learning rate is constant, and SGD's momentum
    buffers come back from the checkpoint's optimizer state (FSDP's, keyed by
    parameter name). The frozen weights are not in the checkpoint: loading
    leaves them as built (``_fill_frozen_state`` does nothing under FSDP,
    whose strategy loads non-strictly); wrong frozen weights would change the
    gradient.

    ``load_from=iter_2.pth`` starts a new run from those weights with a new
    optimizer: its 1st iteration has the gradient of the uninterrupted 3rd
    (same grad norm, same loss), and, without the momentum, ends at
    ``w3 + MOMENTUM (w1 - w2)`` (``wi``: the uninterrupted weights after
    iteration ``i``; the first SGD step of a momentum buffer is the
    gradient), not at ``w3``. This also shows that the resume comparison
    needs the restored optimizer state.
    """
    tmp, fsdp, fsdp_cfg = trained['tmp'], trained['fsdp'], trained['fsdp_cfg']
    resumed, loaded = str(tmp / 'resumed'), str(tmp / 'loaded')
    dist_train(tmp, fsdp_cfg, resumed, '--resume', osp.join(fsdp, 'iter_2.pth'))
    dist_train(tmp, fsdp_cfg, loaded, '--cfg-options', f'load_from={fsdp}/iter_2.pth',
               'train_cfg.max_iters=1')

    w1, w2, w3 = (checkpoint(fsdp, it)['state_dict'] for it in (1, 2, 3))
    got = checkpoint(resumed, 3)
    assert got['meta']['iter'] == 3 and got['state_dict'].keys() == w3.keys()
    for key in w3:
        assert torch.equal(got['state_dict'][key], w3[key]), key
    assert got['optimizer']['state'], 'no momentum: the comparison would not see it'

    new = checkpoint(loaded, 1)['state_dict']
    assert new.keys() == w3.keys()
    assert any(not torch.equal(new[k], w3[k]) for k in w3)
    for key in w3:
        torch.testing.assert_close(new[key], w3[key] + MOMENTUM * (w1[key] - w2[key]), msg=key)

    (third, ) = (r for r in train_logs(fsdp) if r['iter'] == 3)
    for work_dir, it in ((resumed, 3), (loaded, 1)):
        (log, ) = train_logs(work_dir)
        assert log['iter'] == it
        assert log['grad_norm'] == pytest.approx(third['grad_norm'], rel=1e-6)
        assert log['loss'] == pytest.approx(third['loss'], rel=1e-6)


# ------------------------------------- gradient clipping, no processes --
class StubFSDP(nn.Module):
    """Stands for a root ``FullyShardedDataParallel``: records the calls of
    its ``clip_grad_norm_``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 2)
        self.calls = []

    def clip_grad_norm_(self, max_norm, norm_type=2.0):
        self.calls.append((max_norm, norm_type))
        return torch.tensor(3.0)


def test_clip_grad_norm_globally_clips_through_the_model_on_every_step():
    from mmengine.optim import OptimWrapper

    from mmmaskclip.engine.fsdp import clip_grad_norm_globally
    model = StubFSDP()
    wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1), clip_grad=dict(max_norm=0.01, norm_type=2))
    clip_grad_norm_globally(wrapper, model)
    # also without a gradient here: FSDP's clipping is collective, and a
    # process whose shard holds no trainable parameter must still join it
    wrapper.step()
    model.net.weight.grad = torch.ones(2, 2)
    wrapper.step()
    assert model.calls == [(0.01, 2), (0.01, 2)]
    assert wrapper.message_hub.get_scalar('train/grad_norm').current() == 3.0


def test_clip_grad_norm_globally_leaves_value_clipping_and_refuses_unknown_options():
    from mmengine.optim import OptimWrapper

    from mmmaskclip.engine.fsdp import clip_grad_norm_globally
    model = StubFSDP()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    value = OptimWrapper(sgd, clip_grad=dict(type='value', clip_value=1.0))
    clip_grad_norm_globally(value, model)
    assert '_clip_grad' not in vars(value)
    strict = OptimWrapper(sgd, clip_grad=dict(max_norm=1.0, error_if_nonfinite=True))
    with pytest.raises(ValueError, match='error_if_nonfinite'):
        clip_grad_norm_globally(strict, model)


def test_constructor_changes_nothing_without_fsdp():
    from mmmaskclip.engine import TrainableParamsOptimWrapperConstructor
    from mmmaskclip.engine.fsdp import is_fsdp
    model = nn.Linear(2, 2)
    cfg = dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.1),
        clip_grad=dict(max_norm=0.01, norm_type=2))
    wrapper = TrainableParamsOptimWrapperConstructor(cfg)(model)
    assert not is_fsdp(model) and '_clip_grad' not in vars(wrapper)
