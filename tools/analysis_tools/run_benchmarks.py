# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Run every benchmark of one variant and write the paper's tables.

Each ``{variant}_vit-l-14-336_{benchmark}.py`` config in ``--configs-dir`` is
tested with ``tools/test.py`` (in this process, one after the other), its
metrics are read back from mmengine's log, and a markdown file lays them out
like the paper's Tables 2-5 and 7.

    python tools/analysis_tools/run_benchmarks.py maskclip-wo-rma none --out results.md
    python tools/analysis_tools/run_benchmarks.py maskclip work_dirs/maskclip/iter_10000.pth
    bash: add --only ade20k-150-panoptic ade20k-150-semantic to run a subset
"""
import argparse
import glob
import importlib.util
import json
import os.path as osp
import sys
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: benchmark (config suffix) -> [(paper column, metric key, scale)]; scale
#: turns COCO-style fractions into percentages.
COLUMNS = {
    'ade20k-150-semantic': [('A-150 mIoU', 'mIoU', 1)],
    'ade20k-847-semantic': [('A-847 mIoU', 'mIoU', 1)],
    'pascal-context-459-semantic': [('P-459 mIoU', 'mIoU', 1)],
    'pascal-context-59-semantic': [('P-59 mIoU', 'mIoU', 1)],
    'ade20k-150-panoptic':
    [(c, f'coco_panoptic/{c}', 1)
     for c in ('PQ', 'PQ_th', 'PQ_st', 'SQ', 'SQ_th', 'SQ_st', 'RQ', 'RQ_th', 'RQ_st')],
    'ade20k-150-instance': [('ADE AP', 'coco/segm_mAP', 100), ('ADE AP50', 'coco/segm_mAP_50', 100),
                            ('ADE AP75', 'coco/segm_mAP_75', 100)],
    'lvis-v1-instance': [('LVIS AP', 'lvis/segm_AP', 100), ('LVIS AP50', 'lvis/segm_AP50', 100),
                         ('LVIS AP75', 'lvis/segm_AP75', 100)],
    'coco-48-17-constrained-base-instance': [('constrained base', 'coco/segm_base_ap50', 100)],
    'coco-48-17-constrained-novel-instance': [('constrained target', 'coco/segm_novel_ap50', 100)],
    'coco-48-17-generalized-instance': [('generalized base', 'coco/segm_base_ap50', 100),
                                        ('generalized target', 'coco/segm_novel_ap50', 100),
                                        ('generalized all', 'coco/segm_mAP_50', 100)],
    'gt-masks_ade20k-150-panoptic': [('GT masks PQ', 'coco_panoptic/PQ', 1)],
    'gt-masks_ade20k-150-semantic': [('GT masks mIoU', 'mIoU', 1)],
    'coco-panoptic-val': [('COCO PQ', 'coco_panoptic/PQ', 1)],
}
TABLES = [
    ('Table 2: open-vocabulary semantic segmentation (mIoU)', [
        'ade20k-150-semantic', 'ade20k-847-semantic', 'pascal-context-459-semantic',
        'pascal-context-59-semantic'
    ]),
    ('Table 3: open-vocabulary panoptic segmentation, ADE20K', ['ade20k-150-panoptic']),
    ('Table 4: open-vocabulary instance segmentation, cross-dataset',
     ['ade20k-150-instance', 'lvis-v1-instance']),
    ('Table 5: COCO 48/17 split (AP50)', [
        'coco-48-17-constrained-base-instance', 'coco-48-17-constrained-novel-instance',
        'coco-48-17-generalized-instance'
    ]),
    ('Table 7: ground-truth masks as proposals',
     ['gt-masks_ade20k-150-panoptic', 'gt-masks_ade20k-150-semantic']),
    ('COCO panoptic val', ['coco-panoptic-val']),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('variant', help='clip-baseline, maskclip-wo-rma or maskclip')
    parser.add_argument('checkpoint', help="MaskCLIP checkpoint, or 'none' (training-free)")
    parser.add_argument('--configs-dir', default=osp.join(REPO, 'configs', 'maskclip'))
    parser.add_argument('--work-dir', default='work_dirs/benchmarks')
    parser.add_argument('--only', nargs='+', default=None, help='benchmarks to run')
    parser.add_argument(
        '--out', default=None, help='markdown file (default: WORK_DIR/'
        '<variant>.md)')
    parser.add_argument(
        '--cfg-options', nargs='+', default=[], help='handed to tools/test.py for every benchmark')
    return parser.parse_args(argv)


def find_configs(configs_dir: str, variant: str, only: Optional[List[str]]) -> Dict[str, str]:
    """Benchmark name -> config path, for the benchmarks this variant has."""
    prefix = f'{variant}_vit-l-14-336_'
    found = {}
    for path in sorted(glob.glob(osp.join(configs_dir, prefix + '*.py'))):
        bench = osp.basename(path)[len(prefix):-3]
        if bench in COLUMNS and (only is None or bench in only):
            found[bench] = path
    return found


def last_metrics(work_dir: str) -> dict:
    """The metrics of the newest test run under ``work_dir`` (mmengine json)."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')), key=osp.getmtime)
    if not logs:
        return {}
    with open(logs[-1]) as f:
        lines = [json.loads(line) for line in f.read().strip().splitlines() if line]
    return lines[-1] if lines else {}


def markdown(variant: str, results: Dict[str, dict], commands: Dict[str, str]) -> str:
    """The paper's tables with this variant's row (``-`` where not run)."""
    out = [f'# Benchmarks of `{variant}`', '']
    for title, benches in TABLES:
        columns = [(b, c) for b in benches for c in COLUMNS[b]]
        if not any(b in results for b, _ in columns):
            continue
        out += [
            f'## {title}', '', '| method | ' + ' | '.join(c[0] for _, c in columns) + ' |',
            '| --- ' * (len(columns) + 1) + '|'
        ]
        cells = []
        for bench, (_, key, scale) in columns:
            value = results.get(bench, {}).get(key)
            cells.append('-' if value is None or value < 0 else f'{value * scale:.2f}')
        out += [f'| {variant} | ' + ' | '.join(cells) + ' |', '']
    out += ['## Commands', ''] + [f'- {b}: `{c}`' for b, c in commands.items()] + ['']
    return '\n'.join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    configs = find_configs(args.configs_dir, args.variant, args.only)
    if not configs:
        print(
            f'error: no {args.variant}_vit-l-14-336_<benchmark>.py config in '
            f'{args.configs_dir}',
            file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location('_mmmaskclip_test_tool',
                                                  osp.join(REPO, 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    results, commands = {}, {}
    for bench, path in configs.items():
        work_dir = osp.join(args.work_dir, args.variant, bench)
        argv_test = [path, args.checkpoint, '--work-dir', work_dir]
        if args.cfg_options:
            argv_test += ['--cfg-options'] + args.cfg_options
        commands[bench] = 'python tools/test.py ' + ' '.join(argv_test)
        print(f'[{len(results) + 1}/{len(configs)}] {bench}')
        status = test_tool.main(argv_test)
        results[bench] = last_metrics(work_dir) if status == 0 else {}
    out = args.out or osp.join(args.work_dir, f'{args.variant}.md')
    with open(out, 'w') as f:
        f.write(markdown(args.variant, results, commands))
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
