# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Relative mask logits ``A'`` (paper Eq. 3) folded through f2 and phi_Qm.

With ``x`` the ``P = ph*pw`` mask pixels of a patch, f2 is ``W2 x + b2``.

Paper style (phi_Qm linear): ``phi_Qm(W2 x + b2) = A x + a``, so per head
``A'_h = x . u_h + o_h`` with ``u_h = A_h^T K_h`` and ``o_h = a_h . K_h``.

Official style (phi_Qm a LayerNorm): the mean and variance over channels of
``W2 x + b2`` are a linear and a quadratic form of ``x``, so
``A'_h = (x . u_h + o_h) / s + t_h`` with ``u_h = Wc_h^T (gamma K)_h``,
``o_h = bc_h . (gamma K)_h``, ``t_h = beta_h . K_h`` (``Wc, bc``: f2 centred
over channels) and ``s = sqrt(x^T G x + 2 x . l + c + eps)`` the LayerNorm
std of the (mask, patch) token, ``G = Wc^T Wc / W``, ``l = Wc^T bc / W``,
``c = bc . bc / W``.

Everything that does not depend on the masks is computed once per layer
(:func:`fold_patch_terms`); per mask it costs one small batched GEMM over
``[x, 1]`` (the offsets and the variance's linear part ride along as extra
rows and columns) and, in the official style, the quadratic form: ``O(m H W)``
memory, no ``(m, N, W)`` tensor.
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor


def mask_patches(values: Tensor, patch_size: Tuple[int, int]) -> Tensor:
    """``(B, M, H, W)`` -> ``(B, M, N, ph * pw)``: the pixels of each patch, in
    the row-major order of a ``(ph, pw)`` convolution kernel."""
    b, m, h, w = values.shape
    ph, pw = patch_size
    x = values.view(b, m, h // ph, ph, w // pw, pw).permute(0, 1, 2, 4, 3, 5)
    return x.reshape(b, m, (h // ph) * (w // pw), ph * pw)


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(..., W) -> (..., h, W / h)``."""
    return x.view(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


class FoldedTerms(NamedTuple):
    """The mask-independent factors of the folded ``A'`` of one layer.

    Attributes:
        u (Tensor): ``(B, N, P + 1, k)``: per patch, the map from ``[x, 1]``
            to ``k`` outputs: ``h`` heads (``x . u_h + o_h``) and, in the
            official style, one more column ``2 x . l + c``.
        shift (Tensor | None): ``(B, N, h)`` official ``t_h``; None (paper).
        gram (Tensor | None): ``(P, P)`` official ``G``; None (paper).
        eps (float): LayerNorm epsilon (official).
    """
    u: Tensor
    shift: Optional[Tensor]
    gram: Optional[Tensor]
    eps: float


def fold_patch_terms(mask_patch_embed: nn.Conv2d, query_proj_m: nn.Module, key_proj_m: nn.Linear,
                     patch_tokens: Tensor, num_heads: int) -> FoldedTerms:
    """Per-layer factors of the folded ``A'`` (see the module docstring).

    Args:
        mask_patch_embed (nn.Conv2d): f2, ``1 -> W`` channels, kernel = stride
            = patch size.
        query_proj_m (nn.Module): phi_Qm: ``nn.Linear`` (paper) or
            ``nn.LayerNorm`` (official).
        key_proj_m (nn.Linear): phi_Km.
        patch_tokens (Tensor): ``ln_1``-normalised patches ``(B, N, W)``.
        num_heads (int): attention heads ``h``.

    Returns:
        FoldedTerms: the factors, in ``patch_tokens``' dtype.
    """
    w2 = mask_patch_embed.weight.flatten(1)  # W x P
    b2 = mask_patch_embed.bias
    k_m = split_heads(key_proj_m(patch_tokens), num_heads)  # B N h d
    if isinstance(query_proj_m, nn.Linear):
        lin = query_proj_m
        u = torch.einsum('phd,bnhd->bnph', split_heads((lin.weight @ w2).t(), num_heads), k_m)
        offset = torch.einsum('hd,bnhd->bnh', split_heads(lin.weight @ b2 + lin.bias, num_heads),
                              k_m)
        return FoldedTerms(torch.cat([u, offset[:, :, None]], dim=2), None, None, 0.0)
    norm = query_proj_m
    dims = float(w2.shape[0])
    wc = w2 - w2.mean(0, keepdim=True)
    bc = b2 - b2.mean()
    gk = k_m * split_heads(norm.weight, num_heads)  # gamma * K: B N h d
    u = torch.einsum('phd,bnhd->bnph', split_heads(wc.t(), num_heads), gk)
    offset = torch.einsum('hd,bnhd->bnh', split_heads(bc, num_heads), gk)
    shift = torch.einsum('hd,bnhd->bnh', split_heads(norm.bias, num_heads), k_m)
    b, n = u.shape[:2]
    # the variance's linear part 2 x . l + c: one more output column
    var_col = torch.cat([2 * (wc.t() @ bc) / dims, (bc @ bc / dims)[None]]).to(u.dtype)
    u = torch.cat([torch.cat([u, offset[:, :, None]], dim=2),
                   var_col.expand(b, n, -1)[..., None]],
                  dim=3)
    return FoldedTerms(u, shift, (wc.t() @ wc / dims).to(u.dtype), norm.eps)


def folded_relative_logits(mask_logits: Tensor, terms: FoldedTerms, patch_size: Tuple[int, int],
                           activation: str) -> Tensor:
    """``A'`` of some masks from :func:`fold_patch_terms`: ``O(m H W)`` memory.

    Args:
        mask_logits (Tensor): ``(B, m, H, W)``.
        terms (FoldedTerms): from :func:`fold_patch_terms`.
        patch_size (tuple[int, int]): ``(ph, pw)``.
        activation (str): what f2 reads of the logits: ``'tanh'``
            (official) or ``'sigmoid'`` (paper, probabilities).

    Returns:
        Tensor: ``(B, h, m, N)`` (a permuted view).
    """
    b, m, height, width = mask_logits.shape
    (ph, pw), pixels = patch_size, patch_size[0] * patch_size[1]
    gh, gw = height // ph, width // pw
    # [x, 1] per patch; x written once, straight from the logits
    x = mask_logits.new_empty(b, m, gh * gw, pixels + 1)
    x[..., -1] = 1
    dst = x[..., :-1].view(b, m, gh, gw, ph, pw)
    src = mask_logits.view(b, m, gh, ph, gw, pw).permute(0, 1, 2, 4, 3, 5)
    if torch.is_grad_enabled() and mask_logits.requires_grad:
        dst.copy_(getattr(torch, activation)(src))
    else:  # in place on the patch-major copy (rows of P contiguous pixels)
        dst.copy_(src)
        getattr(x[..., :-1], activation + '_')()
    # per patch: (m, P + 1) @ (P + 1, k)
    out = torch.matmul(x.transpose(1, 2), terms.u).transpose(1, 2)  # B m N k
    if terms.gram is None:
        return out.permute(0, 3, 1, 2)
    pix = x[..., :-1]
    var = ((pix @ terms.gram) * pix).sum(-1) + out[..., -1]
    inv_std = torch.rsqrt(var + terms.eps)  # B m N
    rel = out[..., :-1] * inv_std[..., None] + terms.shift[:, None]
    return rel.permute(0, 3, 1, 2)
