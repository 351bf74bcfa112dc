# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Time the text encoder on a large vocabulary: full context vs trimmed
padding vs length-sorted batches (cold), and loading from the disk cache.

CLIP's text transformer is causal and pools at the end of text, so running a
batch only up to its longest tokenised name gives the same embeddings as the
full context (77 tokens). Variants, all in one process on the same weights
(random: no download), interleaved over ``--repeats`` rounds:

- ``full``: every batch runs the whole context (open_clip's ``encode_text``);
- ``trimmed``: batches cut in name order, each trimmed to its longest name;
- ``sorted``: prompts sorted by tokenised length, then batched and trimmed:
  the encoder's default, timed cold (an empty disk cache, written on the way);
- ``cached``: the same vocabulary again with a fresh in-memory cache: the
  cache key (text-tower fingerprint) plus loading the file.

The table gives wall seconds and the CPU seconds of the process: on an
otherwise idle machine CPU ~ threads x wall; much less means other jobs
shared the cores.

Examples::

    # the goal of issue 12: 2,000 names with ViT-L/14's text tower
    python tools/analysis_tools/benchmark_text_encoder.py --model ViT-L-14-336 \\
        --vocab lvis --num-names 2000 --variants sorted cached --repeats 2
    # trimmed vs full context (slow: the full context runs 77 tokens a name)
    python tools/analysis_tools/benchmark_text_encoder.py --model ViT-B-16 \\
        --num-names 300 --variants full trimmed sorted cached --out text.json
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.realpath(__file__)))
from benchmark_utils import cpu_model  # noqa: E402

VARIANTS = ('full', 'trimmed', 'sorted', 'cached')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--model', default='ViT-L-14-336', help='open_clip model name')
    parser.add_argument('--vocab', default='lvis', help='preset whose names are encoded')
    parser.add_argument(
        '--num-names',
        type=int,
        default=2000,
        help='names: the preset, repeated with a number appended')
    parser.add_argument('--templates', default=None, help="e.g. 'vild' (default: the raw names)")
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument(
        '--variants',
        nargs='+',
        choices=VARIANTS,
        default=list(VARIANTS),
        help='what to time (default: all)')
    parser.add_argument('--repeats', type=int, default=2, help='interleaved rounds')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument(
        '--cache-dir',
        default=None,
        help='where the temporary cache folders of the sorted/cached variants go (default: '
        'the system temporary folder); removed at the end')
    parser.add_argument('--out', default=None, help='write the numbers as JSON here')
    args = parser.parse_args(argv)
    if args.num_names < 1 or args.repeats < 1 or args.batch_size < 1:
        parser.error('--num-names, --repeats and --batch-size must be >= 1.')
    return args


def make_names(base, num: int) -> list:
    """``num`` distinct names: ``base``, then ``base`` again with ``' 1'``,
    ``' 2'``... appended."""
    return [
        base[i % len(base)] + (f' {i // len(base)}' if i >= len(base) else '') for i in range(num)
    ]


def positions_run(encoder, prompts, variant: str) -> int:
    """Token positions the text tower runs over for ``prompts`` (batch size x
    sequence length, summed over batches): the work each variant does."""
    from mmmaskclip.models.text.embedding_cache import prompt_batches, token_lengths
    tokens = encoder.tokenizer(prompts)
    if variant == 'full':
        return tokens.numel()
    lengths = token_lengths(tokens)
    batches = prompt_batches(lengths, encoder.batch_size, sort=variant != 'trimmed')
    return sum(len(b) * int(lengths[b].max()) for b in batches)


def run_variant(encoder, names, variant: str, folder=None):
    """Embed ``names`` as ``variant`` does, with the disk cache in ``folder``
    (None: no disk cache); return (wall seconds, CPU seconds of the
    process, embeddings)."""
    from mmmaskclip.models.text import TextEmbeddingCache
    encoder.trim_padding = variant != 'full'
    encoder.sort_by_length = variant != 'trimmed'
    encoder.disk_cache = TextEmbeddingCache(folder) if folder else None
    start, cpu = time.perf_counter(), time.process_time()
    embeds = encoder(names)
    return time.perf_counter() - start, time.process_time() - cpu, embeds


def measure(encoder, names, variants, repeats: int, cache_dir: str) -> tuple:
    """Interleaved rounds of every variant: wall and CPU times, and the last
    embeddings. The
    sorted (cold) variant gets an empty cache folder each round; the cached
    one a folder filled once beforehand, untimed."""
    warm = osp.join(cache_dir, 'warm')
    if 'cached' in variants:
        run_variant(encoder, names, 'sorted', warm)
    folders = dict(cached=warm)
    times = {v: dict(wall=[], cpu=[]) for v in variants}
    outputs = {}
    for round_idx in range(repeats):
        folders['sorted'] = osp.join(cache_dir, f'cold-{round_idx}')
        for variant in variants:
            wall, cpu, outputs[variant] = run_variant(encoder, names, variant, folders.get(variant))
            times[variant]['wall'].append(wall)
            times[variant]['cpu'].append(cpu)
    return times, outputs


def summarize(args, encoder, names, times, outputs) -> dict:
    """The JSON result: per-variant times, work and agreement."""
    import torch
    prompts = [t.format(n) for n in names for t in encoder.templates]
    variants = {}
    for name, values in times.items():
        variants[name] = dict(
            median_s=statistics.median(values['wall']),
            min_s=min(values['wall']),
            max_s=max(values['wall']),
            cpu_s=statistics.median(values['cpu']),
            positions=positions_run(encoder, prompts, name if name != 'cached' else 'sorted'))
    reference = 'full' if 'full' in outputs else next(iter(outputs))
    diff = {name: float((out - outputs[reference]).abs().max()) for name, out in outputs.items()}
    start = time.perf_counter()
    encoder.cache_key(names)
    result = dict(
        model=args.model,
        names=len(names),
        templates=len(encoder.templates),
        prompts=len(prompts),
        batch_size=args.batch_size,
        threads=torch.get_num_threads(),
        cpu=cpu_model(),
        cpu_cores=os.cpu_count(),
        torch=torch.__version__,
        repeats=args.repeats,
        variants=variants,
        reference=reference,
        max_abs_difference=diff,
        cache_key_s=time.perf_counter() - start)
    for name, stats in variants.items():
        result[f'{name}_s'] = stats['median_s']
    if 'cached' in outputs and 'sorted' in outputs:
        result['cached_bitwise_equal'] = bool(torch.equal(outputs['cached'], outputs['sorted']))
    return result


def table(result: dict) -> str:
    """A markdown table of ``result``."""
    base = result['variants'].get('full', next(iter(result['variants'].values())))
    lines = [
        '| variant | median s | min s | max s | CPU s | positions run | x faster than '
        f"{'full' if 'full' in result['variants'] else 'first'} | max abs diff |",
        '| --- | --- | --- | --- | --- | --- | --- | --- |'
    ]
    for name, stats in result['variants'].items():
        lines.append(f"| {name} | {stats['median_s']:.3f} | {stats['min_s']:.3f} | "
                     f"{stats['max_s']:.3f} | {stats['cpu_s']:.1f} | {stats['positions']} | "
                     f"{base['median_s'] / stats['median_s']:.1f} | "
                     f"{result['max_abs_difference'][name]:.1e} |")
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from mmmaskclip.apis import build_vocabulary
    from mmmaskclip.models.text import MaskCLIPTextEncoder
    if args.threads:
        torch.set_num_threads(args.threads)
    names = make_names(build_vocabulary(args.vocab).names, args.num_names)
    encoder = MaskCLIPTextEncoder(
        clip=dict(name=args.model, pretrained=None),
        templates=args.templates,
        batch_size=args.batch_size,
        cache_size=0,
        cache_dir=False,
        progress=False)
    with tempfile.TemporaryDirectory(prefix='text_embeddings_', dir=args.cache_dir) as tmp:
        times, outputs = measure(encoder, names, args.variants, args.repeats, tmp)
        result = summarize(args, encoder, names, times, outputs)
    print(f"{result['names']} names x {result['templates']} template(s), {args.model}, "
          f"batch size {args.batch_size}, {result['cpu']} ({result['cpu_cores']} cores), "
          f"{result['threads']} threads, "
          f"{args.repeats} round(s); cache key {result['cache_key_s']:.2f} s")
    print(table(result))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
