# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Peak memory and time of one Relative Mask Attention layer vs a plain block.

Each variant runs in a fresh child process on a one-block CLIP of ViT-L/14's
width (1024, 16 heads, patch 14) at a 644-pixel input (46 x 46 patches, the
multiple of 14 nearest the paper's 640) with ``M`` mask tokens, random
weights. Variants:

- ``plain``: the block with plain mask-token attention (Eq. 1-2);
- ``rma-naive``: the block with an RMA layer, reference implementation;
- ``rma-fast``: the block with an RMA layer, folded/chunked implementation.

With ``--mode loss`` it measures the training loss instead (``MaskCLIPHead``
on the masks of four RMA layers at the encoder's 336 x 336 for a 1024 x 1024
padded batch, ``M`` proposals, 30 ground-truth segments, backward included):

- ``loss-upsampled``: every layer's masks upsampled to the padded batch
  before point sampling (what MaskCLIP did before);
- ``loss-lazy``: point-sampled at the encoder resolution as if upsampled
  (``mask_size``; the same losses to float error).

Peak memory is the rise of the process' peak RSS (Linux ``VmHWM``, reset
just before the measured call) over the RSS before it, on the CPU; with
``--device cuda``, ``torch.cuda.max_memory_allocated`` over the allocation
before. Inputs (image, mask logits) exist before the measurement and are
not counted; the RMA layer's refined masks (an output as large as the
input masks) are.

Example::

    python tools/analysis_tools/benchmark_rma_memory.py --num-masks 100 --size 644
    python tools/analysis_tools/benchmark_rma_memory.py --mode loss
"""
import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = ('plain', 'rma-naive', 'rma-fast')
LOSS_VARIANTS = ('loss-upsampled', 'loss-lazy')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--num-masks', type=int, default=100)
    parser.add_argument('--size', type=int, default=644, help='input size (multiple of 14)')
    parser.add_argument('--width', type=int, default=1024)
    parser.add_argument('--heads', type=int, default=16)
    parser.add_argument('--style', default='official', choices=['paper', 'official'])
    parser.add_argument(
        '--chunk-size',
        type=lambda text: None if text in ('None', 'auto') else int(text),
        default=None,
        help='mask tokens per chunk (default: auto, from --chunk-memory)')
    parser.add_argument(
        '--chunk-memory', type=float, default=16.0, help='MiB per chunk when --chunk-size is auto')
    parser.add_argument(
        '--mode',
        default='inference',
        choices=['inference', 'training', 'loss'],
        help='training: forward + backward (fast path with with_cp); loss: '
        'the training loss on 336-pixel masks of a 1024-pixel batch')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--variants',
        nargs='+',
        default=None,
        choices=VARIANTS + LOSS_VARIANTS,
        help='default: all of the mode')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _rss_mib(field: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def measure(step, device) -> tuple:
    """Run ``step()``; its result and the peak memory rise (MiB) and seconds."""
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _rss_mib('VmRSS')
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak RSS (VmHWM)
    start = time.perf_counter()
    out = step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = _rss_mib('VmHWM') - base
    return out, peak, time.perf_counter() - start


def run_loss_child(args) -> dict:
    """The head's loss on four layers of encoder-resolution masks."""
    import torch
    import torch.nn.functional as F
    from mmengine.structures import InstanceData

    from mmmaskclip.models.heads import MaskCLIPHead
    torch.manual_seed(0)
    device = torch.device(args.device)
    batch, enc, num_gt = (1024, 1024), (336, 336), 30
    layers = [
        torch.randn(1, args.num_masks, *enc, device=device, requires_grad=True) for _ in range(4)
    ]
    seg = torch.randint(0, num_gt, (1, 1, 32, 32), device=device).float()
    seg = F.interpolate(seg, size=batch, mode='nearest')[0, 0].long()
    gt = InstanceData(
        labels=torch.arange(num_gt, device=device) % 10,
        masks=seg[None] == torch.arange(num_gt, device=device)[:, None, None])
    cls = torch.randn(1, args.num_masks, 11, device=device, requires_grad=True)
    valid = torch.ones(1, args.num_masks, dtype=torch.bool, device=device)
    head = MaskCLIPHead()

    def step():
        if args.child == 'loss-upsampled':
            masks = [
                F.interpolate(m, size=batch, mode='bilinear', align_corners=False) for m in layers
            ]
            losses = head.loss(cls, masks, valid, [gt], has_void=True)
        else:
            losses = head.loss(cls, layers, valid, [gt], has_void=True, mask_size=batch)
        total = sum(losses.values())
        total.backward()
        return float(total)

    total, peak, seconds = measure(step, device)
    return dict(variant=args.child, peak_mib=peak, seconds=seconds, masks_out_mib=0.0, loss=total)


def run_child(args) -> dict:
    if args.mode == 'loss':
        return run_loss_child(args)
    import open_clip
    import torch

    from mmmaskclip.models import MaskCLIPVisualEncoder
    torch.manual_seed(0)
    device = torch.device(args.device)
    clip = open_clip.CLIP(
        embed_dim=768,
        vision_cfg=dict(
            image_size=args.size,
            layers=1,
            width=args.width,
            patch_size=14,
            head_width=args.width // args.heads),
        text_cfg=dict(width=64, heads=1, layers=1))
    overrides = None
    if args.child != 'plain':
        overrides = {
            0:
            dict(
                type='RelativeMaskAttention',
                style=args.style,
                impl=args.child.split('-')[1],
                chunk_size=args.chunk_size,
                chunk_memory=args.chunk_memory,
                with_cp=args.mode == 'training')
        }
    enc = MaskCLIPVisualEncoder(clip=clip, mask_attention_overrides=overrides).to(device)
    enc.init_weights()
    enc.train(args.mode == 'training')
    images = torch.randn(1, 3, args.size, args.size, device=device)
    masks = torch.randn(1, args.num_masks, args.size // 4, args.size // 4, device=device)
    masks = torch.nn.functional.interpolate(masks, size=(args.size, args.size))

    def step():
        with torch.set_grad_enabled(args.mode == 'training'):
            out = enc(images, masks)
            if args.mode == 'training' and args.child != 'plain':
                (out.region_embeds.sum() + out.mask_logits[-1].mean()).backward()
        return out

    out, peak, seconds = measure(step, device)
    masks_out = sum(m.numel() * m.element_size() for m in out.mask_logits) / 2**20
    return dict(variant=args.child, peak_mib=peak, seconds=seconds, masks_out_mib=masks_out)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return
    results = {}
    variants = args.variants or (LOSS_VARIANTS if args.mode == 'loss' else VARIANTS)
    for variant in variants:
        cmd = [sys.executable, os.path.abspath(__file__), '--child', variant]
        for key in ('num_masks', 'size', 'width', 'heads', 'style', 'chunk_size', 'chunk_memory',
                    'mode', 'device'):
            cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    if args.mode == 'loss':
        ref = results.get('loss-upsampled')
        print(f'MaskCLIPHead loss + backward, 4 RMA layers x M={args.num_masks} masks of '
              f'336x336 for a 1024x1024 batch, device={args.device}')
        for variant, res in results.items():
            ratio = f"  {res['peak_mib'] / ref['peak_mib']:.2f}x upsampled" if ref else ''
            print(f"  {variant:15s} peak +{res['peak_mib']:8.1f} MiB  {res['seconds']:6.2f} s"
                  f"  total loss {res['loss']:.6f}{ratio}")
        return
    grid = args.size // 14
    chunk = args.chunk_size or f'auto ({args.chunk_memory:g} MiB)'
    print(f'one block, width {args.width}, {args.heads} heads, {args.size}px '
          f'({grid}x{grid} patches), M={args.num_masks}, style={args.style}, '
          f'chunk={chunk}, mode={args.mode}, device={args.device}')
    print('  (refined masks: the RMA output, as large as the input masks; working = '
          'peak - refined masks)')
    ref = results.get('plain')
    for variant, res in results.items():
        work = res['peak_mib'] - res['masks_out_mib']
        ratio = (f"  {res['peak_mib'] / ref['peak_mib']:.2f}x plain peak, "
                 f"{work / ref['peak_mib']:.2f}x plain working") if ref else ''
        print(f"  {variant:10s} peak +{res['peak_mib']:8.1f} MiB (refined masks "
              f"{res['masks_out_mib']:6.1f}, working {work:8.1f})  {res['seconds']:6.2f} s"
              f'{ratio}')


if __name__ == '__main__':
    main()
