# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Time MaskCLIP's mask class tokens against the CLIP baseline, side by side.

Both encoders get the same CLIP (random weights of the named open_clip
architecture: weights do not change the cost), the same image and the same
``M`` random masks; runs alternate between them so that machine noise hits
both alike. Reports median seconds per image, the ratio, and peak memory
(CUDA) or peak RSS growth (CPU).

Example::

    python tools/analysis_tools/benchmark_region_encoders.py --model ViT-B-16 \
        --input-size 224 --num-masks 100 --repeats 3
"""
import argparse
import statistics
import time

import torch


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='ViT-B-16', help='open_clip model name')
    parser.add_argument(
        '--input-size',
        type=int,
        default=224,
        help='square input size for MaskCLIP (CLIP baseline uses the '
        "CLIP's own size per masked image)")
    parser.add_argument('--num-masks', type=int, default=100)
    parser.add_argument(
        '--chunk-size', type=int, default=16, help='masked images per CLIP forward in the baseline')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', default='float32', choices=['float32', 'float16', 'bfloat16'])
    return parser.parse_args()


def measure(fn, device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == 'cuda' else None
    return seconds, peak


def main():
    args = parse_args()
    import open_clip

    from mmmaskclip.models import CLIPBaselineEncoder, MaskCLIPVisualEncoder
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    clip = open_clip.create_model(args.model, pretrained=None)
    encoders = {
        'maskclip_wo_rma': MaskCLIPVisualEncoder(clip=clip),
        'clip_baseline': CLIPBaselineEncoder(clip=clip, chunk_size=args.chunk_size),
    }
    for enc in encoders.values():
        enc.to(device)
    torch.manual_seed(0)
    size = args.input_size
    images = torch.randn(1, 3, size, size, device=device)
    masks = torch.randn(1, args.num_masks, size // 4, size // 4, device=device)
    times = {name: [] for name in encoders}
    peaks = {}
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    with torch.no_grad(), autocast:
        for name, enc in encoders.items():  # warm-up
            enc(images, masks)
        for _ in range(args.repeats):
            for name, enc in encoders.items():
                seconds, peak = measure(lambda: enc(images, masks), device)
                times[name].append(seconds)
                peaks[name] = peak
    print(f'model={args.model} input={size} masks={args.num_masks} device={device} '
          f'dtype={args.dtype} repeats={args.repeats}')
    med = {name: statistics.median(t) for name, t in times.items()}
    for name in encoders:
        mem = f', peak {peaks[name]:.0f} MiB' if peaks[name] is not None else ''
        print(f'  {name:16s} {med[name]:8.3f} s/image (runs: '
              f"{', '.join(f'{t:.3f}' for t in times[name])}){mem}")
    print(f'  speed-up of mask class tokens over the CLIP baseline: '
          f"{med['clip_baseline'] / med['maskclip_wo_rma']:.1f}x")


if __name__ == '__main__':
    main()
