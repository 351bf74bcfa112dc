# Copyright (c) mmmaskclip contributors. All rights reserved.
"""MaskCLIP Visual Encoder (paper §3.2): a frozen CLIP ViT plus mask class
tokens whose attention is restricted by the masks (Eq. 1-2)."""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

from ..clip_loader import ClipConfig, build_clip_model, freeze
from ..layers import MaskTokenBlockInputs, mask_patch_coverage, mask_token_attention_bias
from ..utils import prepare_mask_logits
from .encoder_output import RegionEncoderOutput


def interpolate_pos_embed(pos_embed: Tensor, src_grid: Tuple[int, int],
                          dst_grid: Tuple[int, int]) -> Tensor:
    """Resize a ViT positional embedding ``(1 + gh*gw, W)`` to another grid.

    Bicubic, ``align_corners=False``, anti-aliased when shrinking: the same
    rule as open_clip's ``resize_pos_embed`` so that results match CLIP
    models re-created at another image size.
    """
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:1], pos_embed[1:]
    grid = patch_pos.reshape(1, *src_grid, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=dst_grid, mode='bicubic', antialias=True, align_corners=False)
    patch_pos = grid.permute(0, 2, 3, 1).reshape(-1, pos_embed.shape[-1])
    return torch.cat([cls_pos, patch_pos.to(pos_embed.dtype)], dim=0)


def check_plain_clip_vit(visual: nn.Module) -> None:
    """Raise a clear error for open_clip vision towers we cannot reuse."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
    if not isinstance(visual, VisionTransformer):
        raise TypeError('MaskCLIP needs a ViT CLIP (open_clip VisionTransformer), got '
                        f'{type(visual).__name__}; ResNet and timm towers are not supported.')
    if visual.attn_pool is not None or visual.pool_type != 'tok':
        raise TypeError('MaskCLIP needs class-token pooling (pool_type="tok", no '
                        'attentional pooler); this CLIP pools differently.')
    for blk in visual.transformer.resblocks:
        if not isinstance(blk, ResidualAttentionBlock) or hasattr(blk, 'ln_1_kv') or \
                not blk.attn._qkv_same_embed_dim:
            raise TypeError('MaskCLIP needs plain open_clip ResidualAttentionBlocks with '
                            f'a packed in-projection, got {type(blk).__name__}.')


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """``(B, L, W)`` -> ``(B, heads, L, W / heads)``."""
    b, n, w = x.shape
    return x.view(b, n, heads, w // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """``(B, heads, L, d)`` -> ``(B, L, heads * d)``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


@MODELS.register_module()
class MaskCLIPVisualEncoder(BaseModule):
    """MaskCLIP Visual Encoder: region embeddings of M masks in one CLIP pass.

    The CLIP class token and patch tokens run exactly as in CLIP (they never
    attend mask tokens). ``M`` mask class tokens start as copies of the class
    token after the positional embedding and ``ln_pre``; in every block, mask
    token ``i`` attends the class token and the patches covered by mask ``i``
    (paper Eq. 1-2), through the block's mask-token attention layer. Mask
    tokens attend no mask token, so each output depends on its own mask only.

    CLIP's weights are reused from open_clip's ``VisionTransformer`` and stay
    frozen; only the mask-token attention layers may own trainable parameters
    (Relative Mask Attention). Since mask tokens never influence the CLIP
    tokens, the CLIP stream runs without autograd.

    Args:
        clip (dict | nn.Module): open_clip model or its config, see
            :func:`~mmmaskclip.models.clip_loader.build_clip_model`.
        mask_attention (dict): config of the mask-token attention layer used
            in every block not listed in ``mask_attention_overrides``.
            Defaults to ``dict(type='MaskTokenAttention')`` (Eq. 1-2).
        mask_attention_overrides (dict[int, dict], optional): 0-based block
            index -> layer config, e.g. Relative Mask Attention layers.
            Every layer is built with the CLIP's ``embed_dims`` (width),
            ``num_heads`` and ``patch_size`` added to its config.
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 clip: ClipConfig,
                 mask_attention: ConfigType = dict(type='MaskTokenAttention'),
                 mask_attention_overrides: Optional[Dict[int, ConfigType]] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        visual = build_clip_model(clip).visual
        check_plain_clip_vit(visual)
        self.clip_visual = freeze(visual)
        self.patch_size = tuple(visual.patch_size)
        self.pretrained_grid = tuple(visual.grid_size)
        self.num_heads = visual.transformer.resblocks[0].attn.num_heads
        num_blocks = len(visual.transformer.resblocks)
        overrides = dict(mask_attention_overrides or {})
        bad = [i for i in overrides if not -num_blocks <= int(i) < num_blocks]
        if bad:
            raise ValueError(f'mask_attention_overrides names blocks {bad}, but this CLIP '
                             f'has blocks 0..{num_blocks - 1}.')
        overrides = {int(i) % num_blocks: cfg for i, cfg in overrides.items()}
        dims = dict(
            embed_dims=visual.transformer.width,
            num_heads=self.num_heads,
            patch_size=self.patch_size)
        self.mask_attention = nn.ModuleList(
            MODELS.build(dict(overrides.get(i, mask_attention), **dims)) for i in range(num_blocks))

    @property
    def embed_dim(self) -> int:
        """Dimension ``E`` of the region embeddings."""
        proj = self.clip_visual.proj
        return proj.shape[1] if proj is not None else self.clip_visual.ln_post.weight.shape[0]

    def train(self, mode: bool = True) -> 'MaskCLIPVisualEncoder':
        """Switch mode; the frozen CLIP tower always stays in eval mode."""
        super().train(mode)
        self.clip_visual.eval()
        return self

    def embed(self, images: Tensor) -> Tensor:
        """Patch embedding, class token, positional embedding and ``ln_pre``.

        Args:
            images (Tensor): ``(B, 3, H, W)`` normalised with CLIP's mean/std.

        Returns:
            Tensor: ``(B, 1 + N, W)`` CLIP tokens.
        """
        visual = self.clip_visual
        x = visual.conv1(images)
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        pos = interpolate_pos_embed(visual.positional_embedding, self.pretrained_grid, grid)
        x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)
        return visual.ln_pre(x)

    def project(self, tokens: Tensor) -> Tensor:
        """``ln_post`` and projection, L2-normalised: ``(..., W) -> (..., E)``."""
        visual = self.clip_visual
        x = visual.ln_post(tokens)
        if visual.proj is not None:
            x = x @ visual.proj
        return F.normalize(x, dim=-1)

    def _mlp_residual(self, block: nn.Module, x: Tensor, attn_out: Tensor) -> Tensor:
        """Out-projection residual, then the MLP residual of an open_clip block."""
        x = x + block.ls_1(block.attn.out_proj(_merge_heads(attn_out)))
        return x + block.ls_2(block.mlp(block.ln_2(x)))

    def forward(self,
                images: Tensor,
                mask_logits: Union[Tensor, List[Tensor]],
                valid: Optional[Tensor] = None) -> RegionEncoderOutput:
        """Encode the regions of ``M`` masks per image.

        Args:
            images (Tensor): ``(B, 3, H, W)`` normalised with CLIP's mean/std;
                ``H`` and ``W`` multiples of the patch size (positional
                embeddings are interpolated to the grid).
            mask_logits (Tensor | list[Tensor]): ``(B, M, h, w)`` logits (or
                boolean masks) at any resolution, resized to ``(H, W)``; or a
                list of ``B`` tensors ``(M_i, h_i, w_i)``.
            valid (Tensor, optional): bool ``(B, M)``, False = padding.

        Returns:
            RegionEncoderOutput: region embeddings ``(B, M, E)`` and more.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'images must be (B, 3, H, W), got {tuple(images.shape)}.')
        height, width = images.shape[-2:]
        ph, pw = self.patch_size
        if height % ph or width % pw:
            raise ValueError(f'Image size {height}x{width} is not a multiple of the patch '
                             f'size {ph}x{pw}; resize or pad the images first.')
        masks, valid = prepare_mask_logits(
            mask_logits, (height, width), valid, batch_size=images.shape[0])
        masks = masks.to(images.dtype)
        grid = (height // ph, width // pw)
        with torch.no_grad():
            x_clip = self.embed(images)
        state = _MaskState(masks, self.patch_size)
        # inference: CLIP and mask tokens share every row-wise op (one larger
        # GEMM each); with autograd the CLIP stream runs without a graph.
        fused = not torch.is_grad_enabled()
        num_clip = x_clip.shape[1]
        x_mask = x_clip[:, :1].expand(-1, masks.shape[1], -1)
        if fused:
            x_clip = torch.cat([x_clip, x_mask], dim=1)
        refined: List[Tensor] = []
        blocks = self.clip_visual.transformer.resblocks
        for index, (block, layer) in enumerate(zip(blocks, self.mask_attention)):
            if fused:
                y = block.ln_1(x_clip)
                clip_out, mask_out = self._attend(block, layer, y[:, :num_clip], y[:, num_clip:],
                                                  state, grid, index)
                x_clip = self._mlp_residual(block, x_clip, torch.cat([clip_out, mask_out], 2))
            else:
                with torch.no_grad():
                    y_clip = block.ln_1(x_clip)
                clip_out, mask_out = self._attend(block, layer, y_clip, block.ln_1(x_mask), state,
                                                  grid, index)
                with torch.no_grad():
                    x_clip = self._mlp_residual(block, x_clip, clip_out)
                x_mask = self._mlp_residual(block, x_mask, mask_out)
            if state.refined:
                refined.append(state.masks)
                state.refined = False
        if fused:
            x_clip, x_mask = x_clip[:, :num_clip], x_clip[:, num_clip:]
        with torch.no_grad():
            image_embeds = self.project(x_clip[:, 0])
        region_embeds = self.project(x_mask) * valid[..., None].to(x_mask.dtype)
        return RegionEncoderOutput(
            region_embeds=region_embeds,
            image_embeds=image_embeds,
            valid=valid,
            clip_tokens=x_clip,
            mask_logits=refined)

    def _attend(self, block: nn.Module, layer: nn.Module, y_clip: Tensor, y_mask: Tensor,
                state: '_MaskState', grid: Tuple[int, int], index: int) -> Tuple[Tensor, Tensor]:
        """Self-attention of the CLIP tokens and mask-token attention of one
        block, from their ``ln_1`` outputs ``(B, L, W)`` and ``(B, M, W)``.

        Returns:
            tuple[Tensor, Tensor]: ``(B, h, L, d)`` and ``(B, h, M, d)``; the
            masks in ``state`` are replaced if the layer refines them.
        """
        in_w, in_b = block.attn.in_proj_weight, block.attn.in_proj_bias
        with torch.no_grad():
            q, k, v = (
                _split_heads(t, self.num_heads)
                for t in F.linear(y_clip, in_w, in_b).chunk(3, dim=-1))
            clip_out = F.scaled_dot_product_attention(q, k, v)
        dim = y_mask.shape[-1]
        q_mask = F.linear(y_mask, in_w[:dim], None if in_b is None else in_b[:dim])
        inputs = MaskTokenBlockInputs(
            q_mask=_split_heads(q_mask, self.num_heads),
            k=k,
            v=v,
            clip_tokens_normed=y_clip,
            mask_logits=state.masks,
            coverage=state.coverage,
            grid_size=grid,
            patch_size=self.patch_size,
            block_index=index,
            attention_bias=state.attention_bias(q_mask.dtype))
        mask_out, new_masks = layer(inputs)
        if new_masks is not None:
            state.update(new_masks)
        return clip_out, mask_out


class _MaskState:
    """The current mask logits of the encoder and what derives from them
    (patch coverage, attention bias), recomputed only when they change."""

    def __init__(self, masks: Tensor, patch_size: Tuple[int, int]) -> None:
        self.patch_size = patch_size
        self.update(masks)
        self.refined = False  # the input masks are not a refinement

    def update(self, masks: Tensor) -> None:
        """New (refined) mask logits ``(B, M, H, W)``."""
        self.masks, self.refined = masks, True
        self.coverage = mask_patch_coverage(masks, self.patch_size)
        self._bias = None

    def attention_bias(self, dtype: torch.dtype) -> Tensor:
        """The additive attention mask of the mask tokens ``(B, 1, M, L)``."""
        if self._bias is None or self._bias.dtype != dtype:
            self._bias = mask_token_attention_bias(self.coverage, dtype)
        return self._bias
