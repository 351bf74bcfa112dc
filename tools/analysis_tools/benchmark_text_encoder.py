# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Time the text encoder on a large vocabulary, padding trimmed vs full length.

CLIP's text transformer is causal and pools at the end of text, so running
only up to the longest tokenised name gives the same embeddings as the full
context (77 tokens) for a fraction of the work. Both variants run in one
process, interleaved, on random weights (no download)::

    python tools/analysis_tools/benchmark_text_encoder.py --model ViT-L-14-336 \
        --vocab lvis --num-names 2000 --repeats 2
"""
import argparse
import json
import statistics
import time


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='ViT-L-14-336', help='open_clip model name')
    parser.add_argument('--vocab', default='lvis', help='preset whose names are encoded')
    parser.add_argument('--num-names', type=int, default=2000, help='names (the preset repeated)')
    parser.add_argument('--templates', default=None, help="e.g. 'vild' (default: the raw names)")
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--out', default=None, help='write the numbers as JSON here')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from mmmaskclip.apis import build_vocabulary
    from mmmaskclip.models.text import MaskCLIPTextEncoder
    if args.threads:
        torch.set_num_threads(args.threads)
    base = build_vocabulary(args.vocab).names
    names = [
        f'{base[i % len(base)]}' + (f' {i // len(base)}' if i >= len(base) else '')
        for i in range(args.num_names)
    ]
    encoder = MaskCLIPTextEncoder(
        clip=dict(name=args.model, pretrained=None),
        templates=args.templates,
        batch_size=args.batch_size,
        cache_size=0)
    times = {True: [], False: []}
    outputs = {}
    for _ in range(args.repeats):
        for trim in (True, False):
            encoder.trim_padding = trim
            start = time.perf_counter()
            outputs[trim] = encoder(names)
            times[trim].append(time.perf_counter() - start)
    diff = float((outputs[True] - outputs[False]).abs().max())
    result = dict(
        model=args.model,
        names=len(names),
        templates=len(encoder.templates),
        threads=torch.get_num_threads(),
        trimmed_s=statistics.median(times[True]),
        full_s=statistics.median(times[False]),
        max_abs_difference=diff)
    result['speedup'] = result['full_s'] / result['trimmed_s']
    print(f"{result['names']} names x {result['templates']} template(s), {args.model}, "
          f"{result['threads']} threads: trimmed {result['trimmed_s']:.1f} s, full "
          f"{result['full_s']:.1f} s ({result['speedup']:.1f}x), max |diff| {diff:.2e}")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
