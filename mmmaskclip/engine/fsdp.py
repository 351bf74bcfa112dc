# Copyright (c) mmmaskclip contributors. All rights reserved.
"""What mmengine's ``FSDPStrategy`` needs to train MaskCLIP correctly.

- :func:`wrap_by_class_name`: an FSDP auto-wrap policy that a text config
  can name (``model_wrapper.auto_wrap_policy``), classes given by name;
- :func:`clip_grad_norm_globally`: gradient clipping by the norm of the whole
  gradient, which mmengine's ``OptimWrapper`` gets wrong under FSDP (it clips
  each process's shard of the gradient by that shard's own norm);
- :class:`ResumableFSDPStrategy`: mmengine's ``FSDPStrategy`` with the
  optimizer state loading that ``--resume`` needs on torch >= 2.1.
"""
from typing import Sequence

import torch.nn as nn

try:
    from mmengine._strategy import FSDPStrategy
except ImportError:  # torch without torch.distributed: no FSDP
    FSDPStrategy = None


def wrap_by_class_name(module: nn.Module,
                       recurse: bool,
                       nonwrapped_numel: int,
                       classes: Sequence[str] = ()) -> bool:
    """FSDP auto-wrap policy: every module with parameters whose class, or a
    base class, has one of the names ``classes`` becomes its own FSDP unit.

    FSDP gathers a unit's parameters only while the unit's ``forward`` runs
    (and again for its backward). A unit must therefore be a module that its
    parent *calls*; a module whose parts are used one by one must not be
    split. ``MaskCLIPVisualEncoder`` is such a module: it runs CLIP's
    ``ResidualAttentionBlock`` s piecewise (``block.ln_1``,
    ``block.attn.in_proj_weight``, ``block.mlp``) and never calls them, so
    the blocks of the image tower can only be sharded as part of the whole
    encoder, never as units of their own.

    A text config names it with its import path and binds ``classes``::

        auto_wrap_policy=dict(
            type='mmmaskclip.engine.fsdp.wrap_by_class_name',
            classes=['MaskCLIPVisualEncoder', 'MaskCLIPTextEncoder', 'BaseProposer'])

    Args:
        module (nn.Module): the module FSDP asks about.
        recurse (bool): True: whether to look into the children (always);
            False: whether to wrap ``module``.
        nonwrapped_numel (int): parameters of ``module`` not in a unit yet.
        classes (Sequence[str]): class names (``__name__``, no module path).

    Returns:
        bool: the answer.
    """
    if recurse:
        return True
    names = {cls.__name__ for cls in type(module).__mro__}
    return nonwrapped_numel > 0 and not names.isdisjoint(classes)


def clip_grad_norm_globally(optim_wrapper, model: nn.Module) -> None:
    """Make ``optim_wrapper`` clip gradients by the norm of the whole
    gradient of the FSDP model ``model``, in place.

    Under FSDP every process holds a shard of each gradient. mmengine's
    ``OptimWrapper`` computes ``clip_grad`` norms with
    ``torch.nn.utils.clip_grad_norm_`` over the gradients it sees, i.e. each
    process clips its own shard by that shard's norm (and a process whose
    shard holds no trainable parameter skips clipping), so training differs
    from DDP whenever clipping acts. FSDP's own ``clip_grad_norm_`` reduces
    the norm over all processes: this replaces the wrapper's clipping by it,
    on every process, with the same ``train/grad_norm`` log. Value clipping
    (``clip_grad=dict(type='value')``) acts element by element and is left
    as it is.

    Args:
        optim_wrapper (OptimWrapper): mmengine's wrapper (or a subclass such
            as ``AmpOptimWrapper``), built for ``model``.
        model (FullyShardedDataParallel): the root FSDP module.

    Raises:
        ValueError: if ``clip_grad`` has options that FSDP's clipping lacks.
    """
    kwargs = dict(getattr(optim_wrapper, 'clip_grad_kwargs', None) or {})
    if not kwargs or getattr(optim_wrapper, 'grad_name', None) != 'grad_norm':
        return
    max_norm = kwargs.pop('max_norm')
    norm_type = kwargs.pop('norm_type', 2.0)
    if kwargs:
        raise ValueError(f'clip_grad options {sorted(kwargs)} are not supported under FSDP '
                         '(FullyShardedDataParallel.clip_grad_norm_ takes max_norm and '
                         'norm_type only).')

    def clip_grad() -> None:
        norm = model.clip_grad_norm_(max_norm, norm_type)
        optim_wrapper.message_hub.update_scalar('train/grad_norm', float(norm))

    # an instance attribute: OptimWrapper.step (and AmpOptimWrapper.step,
    # after unscaling) call self._clip_grad()
    optim_wrapper._clip_grad = clip_grad


def is_fsdp(model: nn.Module) -> bool:
    """Whether ``model`` is a ``FullyShardedDataParallel`` module (False
    where torch has no ``torch.distributed``)."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:
        return False
    return isinstance(model, FullyShardedDataParallel)


if FSDPStrategy is not None:

    class ResumableFSDPStrategy(FSDPStrategy):
        """mmengine's ``FSDPStrategy``, able to resume on torch >= 2.1.

        mmengine (0.10.7) loads the optimizer state of a checkpoint with
        ``FSDP.optim_state_dict_to_load(state_dict, model, optimizer)``, the
        argument order of torch 2.0; torch 2.1 changed it to ``(model, optim,
        optim_state_dict)``, so ``--resume`` fails with ``TypeError:
        unhashable type: 'dict'`` (the state dict taken for the model). This
        passes the arguments by name, which both orders accept. Everything
        else is ``FSDPStrategy``'s; a text config names it with its import
        path::

            strategy = dict(type='mmmaskclip.engine.fsdp.ResumableFSDPStrategy', ...)
        """

        def load_optim_state_dict(self, state_dict: dict) -> None:
            """Load an optimizer state of :meth:`optim_state_dict` (with
            ``state_dict_cfg='full'``: gathered, keyed by parameter name).

            Args:
                state_dict (dict): The optimizer state dict.
            """
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
            optim_state_dict = FSDP.optim_state_dict_to_load(
                model=self.model, optim=self.optim_wrapper.optimizer, optim_state_dict=state_dict)
            self.optim_wrapper.load_state_dict(optim_state_dict)
