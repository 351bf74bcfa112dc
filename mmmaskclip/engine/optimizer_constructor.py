# Copyright (c) mmmaskclip contributors. All rights reserved.
"""An optimizer constructor that hands the optimizer trainable parameters only."""
import torch.nn as nn
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from .fsdp import clip_grad_norm_globally, is_fsdp


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableParamsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` minus frozen parameters.

    mmengine's default constructor puts every parameter into the optimizer,
    ``requires_grad=False`` ones included. MaskCLIP freezes CLIP and the
    proposer (hundreds of millions of parameters) and trains only the Relative
    Mask Attention layers: this constructor builds the optimizer exactly as
    the default one does (``paramwise_cfg`` included) and then removes every
    frozen parameter, and every group left empty, from it.

    Under FSDP (mmengine's ``FSDPStrategy``: the model is a
    ``FullyShardedDataParallel``), ``clip_grad`` norm clipping uses the norm
    of the whole gradient over all processes, as it does under DDP
    (:func:`~mmmaskclip.engine.fsdp.clip_grad_norm_globally`).

    Raises:
        ValueError: when the model has no trainable parameter at all (a
            training-free variant such as MaskCLIP w/o RMA).
    """

    def add_params(self, params, module: nn.Module, prefix: str = '', **kwargs) -> None:
        """Skip wholly frozen sub-modules (no warning per frozen parameter)."""
        if any(p.requires_grad for p in module.parameters()):
            super().add_params(params, module, prefix=prefix, **kwargs)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        module = model.module if hasattr(model, 'module') else model
        if not any(p.requires_grad for p in module.parameters()):
            raise ValueError(f'{type(module).__name__} has no trainable parameters (e.g. MaskCLIP '
                             'without Relative Mask Attention layers is training-free): there is '
                             'nothing to train; run tools/test.py instead.')
        optim_wrapper = super().__call__(model)
        optimizer = optim_wrapper.optimizer
        groups = []
        for group in optimizer.param_groups:
            group['params'] = [p for p in group['params'] if p.requires_grad]
            if group['params']:
                groups.append(group)
        optimizer.param_groups = groups
        if is_fsdp(model):
            clip_grad_norm_globally(optim_wrapper, model)
        return optim_wrapper
