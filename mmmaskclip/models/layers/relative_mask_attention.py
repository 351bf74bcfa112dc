# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Relative Mask Attention and mask refinement (paper Eq. 3-5).

In an RMA layer only the logits of the mask-token -> patch block change::

    T_MP     = f2(mask)                                     mask patch tokens
    A'[i,j]  = sum_{c in head} phi_Qm(T_MP[i,j])_c * phi_Km(T_IM[j])_c   (Eq. 3)
    A[i,j]   = (q_i . k_j + A'[i,j]) / (2 sqrt(d))                       (Eq. 4)
    M_r      = sigmoid(logit(M_c) + f_r(q_i * k_j))                      (Eq. 5)

kept in logit space (``logit(sigmoid(x)) = x``): refined logits are the
coarse logits plus a full-resolution residual. The mask -> class-token logit
keeps CLIP's ``q . k / sqrt(d)``.

Two implementations share the parameters: ``'naive'`` materialises the
``(B, M, N, W)`` tensors as the equations read (the reference), ``'fast'``
folds every linear map so that ``A'`` costs ``O(M H W)`` memory, even through
the official LayerNorm (its statistics are a quadratic form of the mask
pixels), and runs ``f_r``'s non-linearity over chunks of mask tokens.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig
from mmengine.model import constant_init
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .attention_mask import mask_token_attention_mask
from .folded_relative_logits import (FoldedTerms, fold_patch_terms, folded_relative_logits,
                                     split_heads)
from .mask_token_attention import MaskTokenAttention, MaskTokenBlockInputs


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the activation of OpenAI's CLIP."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return x * torch.sigmoid(1.702 * x)
        # inference: one temporary instead of two
        return x.mul_(x.mul(1.702).sigmoid_())


@MODELS.register_module()
class RelativeMaskAttention(MaskTokenAttention):
    """Relative Mask Attention with mask refinement (paper Eq. 3-5).

    Args:
        embed_dims (int): CLIP width ``W`` (filled in by the encoder).
        num_heads (int): heads ``h`` (filled in by the encoder).
        patch_size (tuple[int, int]): ViT patch size (filled in likewise).
        style (str): ``'paper'``: Eq. 3-5 read literally: f2 a patch
            embedding of the mask probabilities, linear ``phi_Qm`` and
            ``phi_Km``, f_r two 1x1 convolutions (GELU between) to a
            ``ph*pw``-pixel residual per patch, its last layer zero-initialised
            so refinement starts as the identity. ``'official'``: the authors'
            structure: f2 reads ``tanh(logits)``, ``phi_Qm`` is a LayerNorm,
            f_r is QuickGELU + one 1x1 convolution, their initialisation.
            Default ``'paper'``.
        impl (str): ``'fast'`` (folded, chunked) or ``'naive'`` (reference).
            Default ``'fast'``.
        chunk_size (int, optional): mask tokens per chunk in the fast path
            (bounds its peak memory); None picks it from ``chunk_memory``.
            Default None.
        chunk_memory (float): MiB the temporaries of one chunk's refinement
            may take when ``chunk_size`` is None (at least one mask per
            chunk). Small enough to stay in the CPU's last-level cache, large
            enough for efficient GEMMs. Default 16.
        with_cp (bool): in training, recompute each chunk in the backward
            pass instead of storing its activations (bounds training memory
            too, at the cost of a second forward). Default False.
        refine_channels (int): hidden channels of f_r in the paper style.
            Default 256.
        refine_masks (bool): False drops the refinement (the paper's
            Table 8 "w/o MR" ablation): masks pass through unchanged.
            Default True.
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 patch_size: Tuple[int, int],
                 style: str = 'paper',
                 impl: str = 'fast',
                 chunk_size: Optional[int] = None,
                 chunk_memory: float = 16.0,
                 with_cp: bool = False,
                 refine_channels: int = 256,
                 refine_masks: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(embed_dims, num_heads, patch_size, init_cfg=init_cfg)
        if style not in ('paper', 'official'):
            raise ValueError(f"style must be 'paper' or 'official', got {style!r}.")
        if impl not in ('fast', 'naive'):
            raise ValueError(f"impl must be 'fast' or 'naive', got {impl!r}.")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f'chunk_size must be >= 1 or None, got {chunk_size}.')
        if chunk_memory <= 0:
            raise ValueError(f'chunk_memory must be > 0 MiB, got {chunk_memory}.')
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by {num_heads} heads.')
        self.style, self.impl, self.chunk_size = style, impl, chunk_size
        self.chunk_memory = chunk_memory
        self.with_cp = with_cp
        ph, pw = self.patch_size
        # f2: mask patch tokens, the architecture of CLIP's patch embedding.
        self.mask_patch_embed = nn.Conv2d(1, embed_dims, self.patch_size, self.patch_size)
        self.query_proj_m = (
            nn.LayerNorm(embed_dims) if style == 'official' else nn.Linear(embed_dims, embed_dims)
        )  # phi_Qm
        self.key_proj_m = nn.Linear(embed_dims, embed_dims)  # phi_Km
        if style == 'official':
            self.refiner = nn.Sequential(QuickGELU(), nn.Conv2d(embed_dims, ph * pw, 1))
        else:
            self.refiner = nn.Sequential(
                nn.Conv2d(embed_dims, refine_channels, 1), nn.GELU(),
                nn.Conv2d(refine_channels, ph * pw, 1))
        if not refine_masks:
            self.refiner = None

    def init_weights(self) -> None:
        """The authors' initialisation: ``nn.init.kaiming_normal_`` with
        torch's defaults (fan_in, gain sqrt(2): std ``sqrt(2 / fan_in)``; not
        mmengine's ``kaiming_init``, whose default is fan_out) for f2, f_r's
        convolutions and the linear maps, U(0, 1) conv biases, zero linear
        biases, default LayerNorm; the paper style zero-inits f_r's output."""
        super().init_weights()
        if self.init_cfg is not None:
            return
        convs = [self.mask_patch_embed
                 ] + [m for m in (self.refiner or []) if isinstance(m, nn.Conv2d)]
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight)
            nn.init.uniform_(conv.bias, 0.0, 1.0)
        linears = [m for m in (self.key_proj_m, self.query_proj_m) if isinstance(m, nn.Linear)]
        for linear in linears:
            nn.init.kaiming_normal_(linear.weight)
            nn.init.zeros_(linear.bias)
        if self.style == 'paper' and self.refiner is not None:
            constant_init(self.refiner[-1], 0.0, bias=0.0)

    def masks_per_chunk(self, num_patches: int, element_size: int) -> int:
        """Mask tokens per chunk of the fast path: ``chunk_size``, else as
        many as fit ``chunk_memory`` with the refinement's temporaries of one
        mask (official: the ``(N, W)`` product and ``(N, ph*pw)`` output;
        paper: the ``(C, W)`` scaled weights, ``(C, N)`` hidden layer twice
        and the output)."""
        if self.chunk_size is not None:
            return self.chunk_size
        pixels = self.patch_size[0] * self.patch_size[1]
        if self.refiner is None:
            per_mask = num_patches * pixels * 2
        elif self.style == 'official':
            per_mask = num_patches * (self.embed_dims + 2 * pixels)
        else:
            hidden = self.refiner[0].out_channels
            per_mask = hidden * self.embed_dims + num_patches * (2 * hidden + 2 * pixels)
        return max(1, int(self.chunk_memory * 2**20) // (per_mask * element_size))

    @property
    def mask_activation(self) -> str:
        """What f2 reads of the logits: ``'tanh'`` (official) or
        ``'sigmoid'`` (paper, probabilities)."""
        return 'tanh' if self.style == 'official' else 'sigmoid'

    def _mask_input(self, mask_logits: Tensor) -> Tensor:
        """What f2 reads: ``tanh(logits)`` (official) or probabilities (paper)."""
        return getattr(torch, self.mask_activation)(mask_logits)

    # ----------------------------------------------------------------- Eq. 3
    def relative_logits_naive(self, mask_logits: Tensor, patch_tokens: Tensor) -> Tensor:
        """``A'`` as Eq. 3 reads, materialising ``(B, M, N, W)``.

        Args:
            mask_logits (Tensor): ``(B, M, H, W)``.
            patch_tokens (Tensor): ``ln_1``-normalised patches ``(B, N, W)``.

        Returns:
            Tensor: ``(B, h, M, N)``.
        """
        b, m, height, width = mask_logits.shape
        x = self._mask_input(mask_logits).reshape(b * m, 1, height, width)
        t_mp = self.mask_patch_embed(x).flatten(2).transpose(1,
                                                             2).reshape(b, m, -1, self.embed_dims)
        q_m = split_heads(self.query_proj_m(t_mp), self.num_heads)  # B M N h d
        k_m = split_heads(self.key_proj_m(patch_tokens), self.num_heads)  # B N h d
        return (q_m * k_m[:, None]).sum(-1).permute(0, 3, 1, 2)

    def patch_terms(self, patch_tokens: Tensor) -> FoldedTerms:
        """Per-layer factors of the folded ``A'`` (independent of the masks),
        see :mod:`.folded_relative_logits`.

        Args:
            patch_tokens (Tensor): ``ln_1``-normalised patches ``(B, N, W)``.

        Returns:
            FoldedTerms: the factors.
        """
        return fold_patch_terms(self.mask_patch_embed, self.query_proj_m, self.key_proj_m,
                                patch_tokens, self.num_heads)

    def relative_logits_folded(self, mask_logits: Tensor, terms: FoldedTerms) -> Tensor:
        """``A'`` of some masks from :meth:`patch_terms`: ``O(m H W)`` memory.

        Args:
            mask_logits (Tensor): ``(B, m, H, W)``.
            terms (FoldedTerms): from :meth:`patch_terms`.

        Returns:
            Tensor: ``(B, h, m, N)``.
        """
        return folded_relative_logits(mask_logits, terms, self.patch_size, self.mask_activation)

    def relative_logits_fast(self, mask_logits: Tensor, patch_tokens: Tensor) -> Tensor:
        """``A'`` folded through f2 and phi_Qm (LayerNorm included), see
        :meth:`patch_terms`; same output as :meth:`relative_logits_naive`."""
        return self.relative_logits_folded(mask_logits, self.patch_terms(patch_tokens))

    # ----------------------------------------------------------------- Eq. 5
    def _refine_chunk(self, q: Tensor, k: Tensor) -> Tensor:
        """f_r on ``q_i * k_j`` as Eq. 5 reads (the reference): ``(B, m, W),
        (B, N, W)`` -> per-patch residual ``(B, m, N, ph*pw)``.

        The 1x1 convolutions run as linear maps on the channels-last product
        ``(B, m, N, W)``.
        """
        x = q[:, :, None] * k[:, None]  # B m N W
        for layer in self.refiner:
            if isinstance(layer, nn.Conv2d):
                x = F.linear(x, layer.weight.flatten(1), layer.bias)
            else:
                x = layer(x)
        return x

    def _refine_chunk_folded(self, q: Tensor, k: Tensor) -> Tensor:
        """:meth:`_refine_chunk` with fewer passes over memory; same output.

        Official: ``QuickGELU(x) = silu(1.702 x) / 1.702``, so 1.702 folds
        into the queries and ``1 / 1.702`` into the convolution: one product
        pass, one fused in-place SiLU pass (inference), one GEMM. Paper: the
        first convolution of the product is ``(W_a diag(q_i)) k_j``, so each
        query scales ``W_a``'s columns (``(m, C, W)``, smaller than the
        ``(m, N, W)`` product, which is never formed) and one batched GEMM
        per mask gives the hidden layer.

        Returns:
            Tensor: ``(B, m, N, ph*pw)`` (official) or ``(B, m, ph*pw, N)``
            (paper), see :meth:`_add_residual`.
        """
        if self.style == 'official':
            conv = self.refiner[-1]
            x = (q * 1.702)[:, :, None] * k[:, None]  # B m N W
            x = F.silu(x, inplace=not (torch.is_grad_enabled() and x.requires_grad))
            return F.linear(x, conv.weight.flatten(1) / 1.702, conv.bias)
        conv_a, act, conv_b = self.refiner
        (b, m, width), channels = q.shape, conv_a.out_channels
        scaled = q[:, :, None, :] * conv_a.weight.flatten(1)  # B m C W
        # one GEMM per image for all m masks: (m C, W) @ (W, N)
        hidden = torch.baddbmm(
            conv_a.bias.repeat(m)[None, :, None], scaled.view(b, m * channels, width),
            k.transpose(1, 2))
        hidden = act(hidden.view(b * m, channels, -1))
        out = torch.baddbmm(conv_b.bias[None, :, None],
                            conv_b.weight.flatten(1).expand(b * m, -1, -1), hidden)
        return out.view(b, m, out.shape[1], -1)  # B m P N

    def _add_residual(self,
                      mask_logits: Tensor,
                      residual: Tensor,
                      grid: Tuple[int, int],
                      patch_major: bool,
                      out: Optional[Tensor] = None) -> Tensor:
        """``mask_logits + residual`` with each patch's ``ph*pw`` outputs
        placed on its pixels (pixel shuffle: output ``dy * pw + dx`` of patch
        ``(y, x)`` is pixel ``(y*ph + dy, x*pw + dx)``).

        Args:
            mask_logits (Tensor): ``(B, m, H, W)``.
            residual (Tensor): ``(B, m, N, ph*pw)`` if ``patch_major`` else
                ``(B, m, ph*pw, N)``.
            grid (tuple[int, int]): patch grid ``(gh, gw)``.
            patch_major (bool): the layout of ``residual``.
            out (Tensor, optional): ``(B, m, H, W)`` to write the result into
                (inference: no second copy of the masks).

        Returns:
            Tensor: refined logits ``(B, m, H, W)``.
        """
        b, m, height, width = mask_logits.shape
        (gh, gw), (ph, pw) = grid, self.patch_size
        if patch_major:
            res = residual.view(b, m, gh, gw, ph, pw).permute(0, 1, 2, 4, 3, 5)
        else:
            res = residual.view(b, m, ph, pw, gh, gw).permute(0, 1, 4, 2, 5, 3)
        if out is not None:
            torch.add(mask_logits.view(b, m, gh, ph, gw, pw), res, out=out.view(res.shape))
            return out
        return (mask_logits.view(b, m, gh, ph, gw, pw) + res).view(b, m, height, width)

    def _attend_chunk(self, q: Tensor, k: Tensor, v: Tensor, rel: Tensor,
                      coverage: Tensor) -> Tensor:
        """Eq. 4 for some mask tokens: ``q`` ``(B, h, m, d)``, ``rel`` ``(B, h, m,
        N)``, bool ``coverage`` ``(B, m, N)`` -> ``(B, h, m, d)``."""
        scale = 1.0 / math.sqrt(q.shape[-1])
        logits = (q @ k.transpose(-2, -1)) * scale  # B h m L
        patch_logits = (logits[..., 1:] + rel * scale) / 2
        logits = torch.cat([logits[..., :1], patch_logits], dim=-1)
        logits = logits.masked_fill(~mask_token_attention_mask(coverage), float('-inf'))
        return logits.softmax(dim=-1) @ v

    def _forward_chunk(self,
                       q: Tensor,
                       k: Tensor,
                       v: Tensor,
                       mask_logits: Tensor,
                       coverage: Tensor,
                       patch_tokens: Tensor,
                       shared: Tuple[Optional[FoldedTerms], Tensor],
                       grid: Tuple[int, int],
                       mask_out: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """Attention output and refined masks of ``m`` mask tokens.

        ``shared`` holds what all chunks share, computed once per layer: the
        folded terms of the fast path (:meth:`patch_terms`; None runs the
        naive reference) and the merged patch keys ``(B, N, W)``. ``mask_out``
        ``(B, m, H, W)`` receives the refined masks if given.
        """
        if shared[0] is None:
            rel = self.relative_logits_naive(mask_logits, patch_tokens)
        else:
            rel = self.relative_logits_folded(mask_logits, shared[0])
        out = self._attend_chunk(q, k, v, rel, coverage)
        if self.refiner is None:
            return out, None
        b, h, m, d = q.shape
        q_scaled = (q / math.sqrt(d)).transpose(1, 2).reshape(b, m, h * d)
        terms, k_patch = shared
        if terms is None:
            residual, patch_major = self._refine_chunk(q_scaled, k_patch), True
        else:
            residual = self._refine_chunk_folded(q_scaled, k_patch)
            patch_major = self.style == 'official'
        return out, self._add_residual(mask_logits, residual, grid, patch_major, mask_out)

    def _run_chunk(self, *args) -> Tuple[Tensor, Optional[Tensor]]:
        """:meth:`_forward_chunk`, recomputed in the backward pass instead of
        storing its activations when ``with_cp`` applies (training, grad)."""
        if self.with_cp and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward_chunk, *args, use_reentrant=False)
        return self._forward_chunk(*args)

    def forward(self, inputs: MaskTokenBlockInputs) -> Tuple[Tensor, Optional[Tensor]]:
        """Relative mask attention (Eq. 3-4) and refinement (Eq. 5).

        The fast path runs over chunks of mask tokens (``chunk_size``, or as
        many as fit ``chunk_memory``; with ``with_cp``, each chunk is
        recomputed in the backward pass instead of keeping its activations),
        so its peak memory does not grow with ``M x N x W``; the naive path
        takes all mask tokens at once.

        Returns:
            tuple[Tensor, Tensor | None]: attention output ``(B, h, M, d)`` and
            refined mask logits ``(B, M, H, W)`` (None if ``refine_masks`` is
            False).
        """
        patch_tokens = inputs.clip_tokens_normed[:, 1:]
        num = inputs.q_mask.shape[2]
        if num == 0:  # no mask tokens: empty outputs (reshapes of 0 elements cannot infer -1)
            masks = inputs.mask_logits[:, :0] if self.refiner is not None else None
            return inputs.q_mask.new_empty(inputs.q_mask.shape), masks
        b, h, _, d = inputs.k.shape
        k_patch = inputs.k[:, :, 1:].transpose(1, 2).reshape(b, -1, h * d)  # B N W
        if self.impl == 'naive':
            shared, step = (None, k_patch), max(num, 1)
        else:
            shared = (self.patch_terms(patch_tokens), k_patch)
            step = self.masks_per_chunk(k_patch.shape[1], inputs.k.element_size())
        grad = torch.is_grad_enabled()
        if num <= step:
            return self._run_chunk(inputs.q_mask, inputs.k, inputs.v, inputs.mask_logits,
                                   inputs.coverage, patch_tokens, shared, inputs.grid_size)
        outs, masks = [], []
        if not grad:  # write chunks in place: no second copy of the masks
            outs = inputs.q_mask.new_empty(inputs.q_mask.shape)
            masks = inputs.mask_logits.new_empty(inputs.mask_logits.shape) \
                if self.refiner is not None else None
        for start in range(0, num, step):
            sl = slice(start, start + step)
            args = (inputs.q_mask[:, :, sl], inputs.k, inputs.v, inputs.mask_logits[:, sl],
                    inputs.coverage[:, sl], patch_tokens, shared, inputs.grid_size)
            if grad:
                out, refined = self._run_chunk(*args)
                outs.append(out)
                masks.append(refined)
            else:
                out, _ = self._run_chunk(*args, None if masks is None else masks[:, sl])
                outs[:, :, sl] = out
        if not grad:
            return outs, masks
        out = torch.cat(outs, dim=2)
        return out, (torch.cat(masks, dim=1) if self.refiner is not None else None)
