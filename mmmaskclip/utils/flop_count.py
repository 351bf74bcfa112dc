# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Count the FLOPs of any callable, attention and grid sampling included.

:class:`torch.utils.flop_counter.FlopCounterMode` adds up formulas per aten
op, and ops without a formula count zero. Several ops that do real matrix
work have none (torch 2.14), so the counter silently under-reports:

- ``aten._native_multi_head_attention``: ``nn.MultiheadAttention``'s fast
  path (inference, ``batch_first``), i.e. every open_clip attention layer
  under ``no_grad``: in- and out-projections *and* the attention products;
- ``aten._transformer_encoder_layer_fwd``: ``nn.TransformerEncoderLayer``'s
  fast path (a whole layer in one op);
- ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its backward):
  what ``F.scaled_dot_product_attention`` runs on the CPU, with or without
  ``attn_mask``;
- ``aten.grid_sampler_2d`` / ``grid_sampler_3d``: e.g. mmcv's multi-scale
  deformable attention on the CPU (Mask2Former's pixel decoder);
- matrix-vector products: ``mv``, ``addmv``, ``dot``, ``vdot``, ``addbmm``
  and the fused ``_addmm_activation``.

:func:`flop_counter` is a ``FlopCounterMode`` with formulas for those ops
(:data:`EXTRA_FLOP_FORMULAS`, minus any op torch itself already counts, so
nothing is counted twice: the counter applies one formula per op and never
looks inside an op it has a formula for).

Convention (the counter's): FLOPs = 2 x multiply-accumulates (MACs) of
matrix products, convolutions, attention (dense: every query-key pair of the
logit matrix, masked or not, as the kernels compute them) and interpolating
grid samples (4 MACs per bilinear sample and channel, 16 bicubic, 8
trilinear, 0 nearest). Element-wise ops, normalisations, softmax, pooling
and resizing count zero.

:func:`count_flops_auto` counts on fake tensors (no arithmetic, no memory:
near-instant even for ViT-L), answering boolean value checks with True (and
saying where), and falls back to a real CPU run where the code needs other
tensor values (data-dependent shapes, ``x.item()``).
"""
import contextlib
import math
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

aten = torch.ops.aten

#: MACs per output value and channel of each ``grid_sampler`` interpolation
#: mode (0 bilinear, 1 nearest, 2 bicubic), in 2-D and 3-D.
GRID_SAMPLE_MACS_2D = {0: 4, 1: 0, 2: 16}
GRID_SAMPLE_MACS_3D = {0: 8, 1: 0}


def attention_macs(query_shape: Sequence[int], key_shape: Sequence[int],
                   value_shape: Sequence[int]) -> int:
    """MACs of ``softmax(q k^T) v`` for ``q`` ``(..., Lq, d)``, ``k``
    ``(..., Lk, d)``, ``v`` ``(..., Lk, dv)``: ``Lq Lk d`` for the logits plus
    ``Lq Lk dv`` for the weighted sum, per leading index of ``q`` (batch x
    query heads; grouped key/value heads are broadcast)."""
    *lead, q_len, head_dim = query_shape
    k_len, value_dim = key_shape[-2], value_shape[-1]
    return math.prod(lead) * q_len * k_len * (head_dim + value_dim)


def sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of a fused scaled-dot-product attention forward (any mask)."""
    return 2 * attention_macs(query_shape, key_shape, value_shape)


def sdpa_backward_flops(grad_out_shape,
                        query_shape,
                        key_shape,
                        value_shape,
                        *args,
                        out_shape=None,
                        **kwargs) -> int:
    """FLOPs of a fused attention backward, torch's rule for the CUDA kernels:
    logits recomputed (``Lq Lk d``), ``dP`` and ``dV`` (``2 Lq Lk dv``), ``dQ`` and
    ``dK`` (``2 Lq Lk d``)."""
    *lead, q_len, head_dim = query_shape
    k_len, value_dim = key_shape[-2], value_shape[-1]
    return 2 * math.prod(lead) * q_len * k_len * (3 * head_dim + 2 * value_dim)


def _batch_and_length(shape: Sequence[int]) -> Tuple[int, int]:
    """``(B, L, E)`` or unbatched ``(L, E)`` -> ``(B, L)``."""
    if len(shape) == 2:
        return 1, shape[0]
    if len(shape) != 3:
        raise ValueError(f'expected a (B, L, E) or (L, E) input, got shape {tuple(shape)}.')
    return shape[0], shape[1]


def native_mha_flops(query_shape,
                     key_shape,
                     value_shape,
                     embed_dim,
                     num_heads,
                     *args,
                     out_shape=None,
                     **kwargs) -> int:
    """FLOPs of ``aten._native_multi_head_attention``: in-projections of query,
    key and value (``E^2`` MACs per token each), attention over all heads
    (``2 Lq Lk E``) and the out-projection (``Lq E^2``)."""
    batch, q_len = _batch_and_length(query_shape)
    k_len = _batch_and_length(key_shape)[1]
    v_len = _batch_and_length(value_shape)[1]
    proj = embed_dim * embed_dim * (q_len + k_len + v_len + q_len)
    return 2 * batch * (proj + 2 * q_len * k_len * embed_dim)


def transformer_layer_flops(src_shape,
                            embed_dim,
                            num_heads,
                            *args,
                            out_shape=None,
                            **kwargs) -> int:
    """FLOPs of ``aten._transformer_encoder_layer_fwd``: self-attention as
    :func:`native_mha_flops` plus the two FFN matrices (``2 L E F`` MACs)."""
    ffn_weight_1 = args[11] if len(args) > 11 else kwargs['ffn_weight_1']
    batch, length = _batch_and_length(src_shape)
    ffn = 2 * 2 * batch * length * embed_dim * ffn_weight_1[0]
    return native_mha_flops(src_shape, src_shape, src_shape, embed_dim, num_heads) + ffn


def grid_sampler_flops(input_shape,
                       grid_shape,
                       interpolation_mode,
                       *args,
                       out_shape=None,
                       **kwargs) -> int:
    """FLOPs of ``grid_sampler_2d/3d``: interpolation weights times the
    neighbours read, per output value and channel (see
    :data:`GRID_SAMPLE_MACS_2D`)."""
    table = GRID_SAMPLE_MACS_2D if len(input_shape) == 4 else GRID_SAMPLE_MACS_3D
    if interpolation_mode not in table:
        raise ValueError(f'unknown grid_sampler interpolation mode {interpolation_mode} for a '
                         f'{len(input_shape) - 2}-D input.')
    samples = input_shape[0] * input_shape[1] * math.prod(grid_shape[1:-1])
    return 2 * table[interpolation_mode] * samples


def mv_flops(mat_shape, vec_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of a matrix-vector product ``(n, m) @ (m,)``."""
    return 2 * mat_shape[0] * mat_shape[1]


def addmv_flops(self_shape, mat_shape, vec_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``addmv``: the product of :func:`mv_flops`."""
    return mv_flops(mat_shape, vec_shape)


def dot_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of a dot product of two ``(n,)`` vectors."""
    return 2 * a_shape[0]


def addbmm_flops(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``addbmm``: ``b`` products ``(n, m) @ (m, p)`` summed."""
    return 2 * a_shape[0] * a_shape[1] * a_shape[2] * b_shape[2]


def addmm_activation_flops(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``_addmm_activation``: its ``(n, m) @ (m, p)`` product."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


#: Formulas for the aten ops that FlopCounterMode counts as zero.
EXTRA_FLOP_FORMULAS: Dict[Any, Callable[..., int]] = {
    aten._native_multi_head_attention: native_mha_flops,
    aten._transformer_encoder_layer_fwd: transformer_layer_flops,
    aten._scaled_dot_product_flash_attention_for_cpu: sdpa_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: sdpa_backward_flops,
    aten._scaled_dot_product_fused_attention_overrideable: sdpa_flops,
    aten.grid_sampler_2d: grid_sampler_flops,
    aten.grid_sampler_3d: grid_sampler_flops,
    aten.mv: mv_flops,
    aten.addmv: addmv_flops,
    aten.dot: dot_flops,
    aten.vdot: dot_flops,
    aten.addbmm: addbmm_flops,
    aten._addmm_activation: addmm_activation_flops,
}


def extra_flop_formulas() -> Dict[Any, Callable[..., int]]:
    """:data:`EXTRA_FLOP_FORMULAS` without the ops torch already counts (a
    newer torch may add some): each op keeps exactly one formula."""
    return {op: f for op, f in EXTRA_FLOP_FORMULAS.items() if op not in flop_registry}


def flop_counter(display: bool = False) -> FlopCounterMode:
    """A ``FlopCounterMode`` that also counts the ops of
    :data:`EXTRA_FLOP_FORMULAS`."""
    return FlopCounterMode(display=display, custom_mapping=extra_flop_formulas())


@dataclass
class FlopCount:
    """FLOPs of one call.

    Attributes:
        flops (int): total FLOPs (2 x MACs).
        by_op (dict[str, int]): FLOPs per aten op.
        mode (str): ``'fake'`` (counted on fake tensors) or ``'real'``.
        note (str): why a fake count fell back to a real run, or which
            boolean value checks a fake count answered true.
    """
    flops: int
    by_op: Dict[str, int] = field(default_factory=dict)
    mode: str = 'real'
    note: str = ''

    @property
    def macs(self) -> int:
        """Multiply-accumulates: half the FLOPs."""
        return self.flops // 2

    def __mul__(self, times: int) -> 'FlopCount':
        return FlopCount(self.flops * times, {
            k: v * times
            for k, v in self.by_op.items()
        }, self.mode, self.note)

    def __add__(self, other: 'FlopCount') -> 'FlopCount':
        by_op = dict(self.by_op)
        for key, value in other.by_op.items():
            by_op[key] = by_op.get(key, 0) + value
        modes = {self.mode, other.mode}
        notes = '; '.join(n for n in (self.note, other.note) if n)
        return FlopCount(self.flops + other.flops, by_op, 'fake' if modes == {'fake'} else 'real',
                         notes)


def count_flops(fn: Callable[..., Any], *args, **kwargs) -> FlopCount:
    """FLOPs of ``fn(*args, **kwargs)``, attention included (see
    :func:`flop_counter`). Runs ``fn`` once, in the current grad mode."""
    with flop_counter() as counter:
        fn(*args, **kwargs)
    by_op = {str(op): n for op, n in counter.get_flop_counts().get('Global', {}).items()}
    return FlopCount(counter.get_total_flops(), by_op)


class _AssumeChecksPass(TorchDispatchMode):
    """Answers True where code reads a boolean out of a fake tensor (value
    checks such as ``if not torch.isfinite(x).all(): raise``), and records
    where (``file:line`` of the first caller outside torch)."""

    def __init__(self) -> None:
        super().__init__()
        self.where: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is aten._local_scalar_dense.default and args[0].dtype == torch.bool:
            frames = [
                f for f in traceback.extract_stack()
                if f'{os.sep}torch{os.sep}' not in f.filename and f.filename != __file__
            ]
            caller = frames[-1] if frames else None
            if caller is not None:
                path = os.sep.join(caller.filename.split(os.sep)[-2:])
                self.where.append(f'{path}:{caller.lineno}')
            return True
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def fake_tensor_mode(assume_checks_pass: bool = False):
    """A ``FakeTensorMode`` in which real tensors may enter (they become fake).

    Inside it, ``Module.to`` calls that change nothing (the CPU, no dtype:
    e.g. open_clip's factory moving a new model to ``'cpu'``) return the
    module as is: ``Module._apply`` swaps fake parameters for their copies,
    which fails while the mode's tensor converter holds weak references to
    them.

    Args:
        assume_checks_pass (bool): answer True where code reads a boolean
            out of a tensor (fake tensors have no values; such reads raise
            otherwise). Default False.

    Yields:
        list[str]: ``file:line`` of every boolean read answered True.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    move = nn.Module.to

    def to(module, *args, **kwargs):
        device, dtype = torch._C._nn._parse_to(*args, **kwargs)[:2]
        if dtype is None and (device is None or device.type == 'cpu'):
            return module
        return move(module, *args, **kwargs)

    nn.Module.to = to
    checks = _AssumeChecksPass()
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            if not assume_checks_pass:
                yield checks.where
            else:
                with checks:
                    yield checks.where
    finally:
        nn.Module.to = move


def count_params(module: nn.Module) -> Tuple[int, int]:
    """``(total, trainable)`` parameter counts (shared tensors once)."""
    params = {id(p): p for p in module.parameters()}.values()
    return (sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))


def count_flops_auto(build: Callable[[], Any],
                     run: Callable[[Any, Any], Any],
                     inputs: Sequence[Any] = (None, ),
                     use_fake: bool = True,
                     assume_checks_pass: bool = True) -> Tuple[List[FlopCount], Any]:
    """Build something once and count the FLOPs of runs of it, on fake
    tensors if possible.

    ``build()`` creates the model; ``run(obj, x)`` makes the inputs of one
    run for ``x`` and calls the model. With ``use_fake``, both run inside a
    ``FakeTensorMode``: parameters and activations have shapes but no
    storage, so nothing is computed. With ``assume_checks_pass``, boolean
    reads of tensors (``if not x.isfinite().all(): raise``) are answered
    True, and each count's ``note`` lists where. Other code that needs
    tensor values (``nonzero``, ``x.item()``, ``int(x.sum())``) raises there;
    then everything runs again for real, on the CPU, and each count's
    ``note`` says why.

    Args:
        build (Callable[[], Any]): builds the object to run.
        run (Callable[[Any, Any], Any]): one run, given the object and an
            element of ``inputs``.
        inputs (Sequence): one run per element. Default: one run, ``None``.
        use_fake (bool): try fake tensors first. Default True.
        assume_checks_pass (bool): see above. Default True.

    Returns:
        tuple[list[FlopCount], Any]: a count per element of ``inputs`` and
        the built object (shapes only after a fake count).
    """
    note = ''
    if use_fake:
        try:
            with fake_tensor_mode(assume_checks_pass) as assumed:
                obj = build()
                counts = [count_flops(run, obj, x) for x in inputs]
            for count in counts:
                count.mode = 'fake'
                if assumed:
                    count.note = 'assumed true: ' + ', '.join(sorted(set(assumed)))
            return counts, obj
        except Exception as err:  # data-dependent code: count a real run instead
            note = f'fake tensors failed ({type(err).__name__})'
    obj = build()
    counts = [count_flops(run, obj, x) for x in inputs]
    for count in counts:
        count.note = note
    return counts, obj


def vit_image_macs(image_size: Tuple[int, int],
                   patch_size: int,
                   width: int,
                   layers: int,
                   embed_dim: Optional[int] = None,
                   mlp_ratio: float = 4.0,
                   num_masks: int = 0) -> int:
    """Analytic MACs of a plain CLIP ViT image forward (the reference).

    Patch embedding ``N 3 p^2 W``, per block ``(4 + 2 r) L W^2 + 2 L^2 W``
    (``L = N + 1`` tokens; ``12 L W^2`` at MLP ratio ``r = 4``) and the
    projection ``W E``. With ``num_masks`` M, MaskCLIP's mask class tokens
    add per block ``(2 + 2 r) M W^2 + 2 M L W`` (their query and
    out-projections and MLP, their attention over the ``L`` CLIP tokens) and
    ``M W E`` for their projection.

    Args:
        image_size (tuple[int, int]): input ``(H, W)``, multiples of ``p``.
        patch_size (int): ``p``.
        width (int): ``W``.
        layers (int): number of blocks.
        embed_dim (int, optional): ``E``; None: no projection.
        mlp_ratio (float): hidden width of the MLP over ``W``. Default 4.
        num_masks (int): mask class tokens ``M``. Default 0.

    Returns:
        int: MACs (FLOPs are twice that).
    """
    tokens = (image_size[0] // patch_size) * (image_size[1] // patch_size)
    length = tokens + 1
    hidden = int(mlp_ratio * width)
    block = 4 * length * width**2 + 2 * length * width * hidden + 2 * length**2 * width
    masks = num_masks * (2 * width**2 + 2 * width * hidden + 2 * length * width)
    proj = (1 + num_masks) * width * (embed_dim or 0)
    return tokens * 3 * patch_size**2 * width + layers * (block + masks) + proj
