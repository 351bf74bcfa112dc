# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Helpers of ``tools/analysis_tools/benchmark.py``: the peak-memory probe, the
machine it ran on, statistics and ratios of the raw times, the markdown
report and the plot. Shared code of that tool, not a tool itself.
"""
import ctypes
import ctypes.util
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Tuple

#: Table label of each encoder variant, in table order.
LABELS = {
    'plain-clip': 'plain CLIP image forward (open_clip `encode_image`)',
    'clip-baseline': 'CLIP baseline (M masked images through CLIP)',
    'maskclip-wo-rma': 'MaskCLIP w/o RMA',
    'maskclip-rma-official': 'MaskCLIP, RMA official',
    'maskclip-rma-paper': 'MaskCLIP, RMA paper',
}
TIMING_NOTE = ('{warmup} warm-up run(s) per measurement, then {repeats} interleaved round(s) '
               '(every measurement once per round, the order rotated by one each round so '
               'that machine noise hits all alike); seconds per call: median, min, max; '
               'all in one process.')


class BenchmarkInputError(ValueError):
    """A bad command line or config, reported in one line without a traceback."""


CPU_MEMORY_NOTE = (
    'peak rise of the process\' resident memory during the call over the resident memory '
    'before it (Linux: VmHWM, reset by writing 5 to /proc/self/clear_refs, minus VmRSS; freed '
    'heap memory is handed back to the OS first with glibc malloc_trim, so every call starts '
    'from the same state and pays its own page faults); weights and inputs exist before the '
    'call and are not counted.')
CUDA_MEMORY_NOTE = ('peak of torch.cuda.max_memory_allocated during the call (reset before '
                    'it) minus torch.cuda.memory_allocated before it; weights and inputs exist '
                    'before the call and are not counted.')


def _rss_mib(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (Linux)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise OSError(f'{field} not in /proc/self/status')


class MemoryProbe:
    """Times one call and measures its peak memory rise (see the notes above).

    Args:
        device (torch.device): where the calls run.
    """

    def __init__(self, device) -> None:
        self.device = device
        self.cuda = device.type == 'cuda'
        self.libc = None
        self.cpu_peak = False
        if not self.cuda:
            name = ctypes.util.find_library('c')
            libc = ctypes.CDLL(name) if name else None
            self.libc = libc if libc is not None and hasattr(libc, 'malloc_trim') else None
            try:
                self._reset_cpu_peak()
                _rss_mib('VmHWM')
                self.cpu_peak = True
            except OSError:
                pass

    @property
    def note(self) -> str:
        """What the memory column means on this device."""
        if self.cuda:
            return CUDA_MEMORY_NOTE
        if not self.cpu_peak:
            return 'not measured: this system has no /proc/self/clear_refs and VmHWM.'
        return CPU_MEMORY_NOTE

    @staticmethod
    def _reset_cpu_peak() -> None:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')

    def measure(self, fn: Callable[[], object]) -> Tuple[float, Optional[float]]:
        """Run ``fn()`` once (its result is dropped).

        Returns:
            tuple[float, float | None]: seconds and the peak memory rise in MiB
            (None where it cannot be measured).
        """
        import torch
        base = None
        if self.cuda:
            torch.cuda.synchronize(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.cpu_peak:
            if self.libc is not None:
                self.libc.malloc_trim(0)
            base = _rss_mib('VmRSS')
            self._reset_cpu_peak()
        start = time.perf_counter()
        fn()
        if self.cuda:
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        if self.cuda:
            return seconds, (torch.cuda.max_memory_allocated(self.device) - base) / 2**20
        if self.cpu_peak:
            return seconds, _rss_mib('VmHWM') - base
        return seconds, None


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``, else ``platform``)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> Optional[float]:
    """The 1-minute load average (None where the system has none): above the
    thread count, other processes share the CPU with the benchmark."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_info(device) -> dict:
    """Where and with what the benchmark ran.

    Args:
        device (torch.device): the device measured.

    Returns:
        dict: CPU model and cores, torch threads, GPU name (CUDA), library
        versions, the UTC time and the load average at the start.
    """
    import open_clip
    import torch
    info = dict(
        device=str(device),
        cpu=cpu_model(),
        cpu_cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        python=sys.version.split()[0],
        torch=torch.__version__,
        open_clip=open_clip.__version__,
        date=datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        load_average_start=load_average())
    if device.type == 'cuda':
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return info


def machine_line(machine: dict) -> str:
    """One markdown line naming the machine."""
    where = f"GPU {machine['gpu']} (CUDA {machine['cuda']}), " if 'gpu' in machine else ''
    load = ''
    if machine.get('load_average_start') is not None:
        load = (f"; 1-minute load average {machine['load_average_start']:.1f} at the start, "
                f"{machine.get('load_average_end', float('nan')):.1f} at the end (a load above "
                'the thread count: other processes shared the CPU)')
    return (f"{where}CPU {machine['cpu']} ({machine['cpu_cores']} cores, "
            f"{machine['torch_threads']} torch threads); torch {machine['torch']}, "
            f"open_clip {machine['open_clip']}, Python {machine['python']}; "
            f"{machine['date']}{load}")


def _stats(values: List[float]) -> dict:
    return dict(median=statistics.median(values), min=min(values), max=max(values))


def _ratio(num: Optional[float], den: Optional[float]) -> Optional[float]:
    return num / den if num is not None and den else None


def summarize_encoders(records: List[dict]) -> None:
    """Add ``median``/``min``/``max`` seconds, ``peak_mib`` (the largest peak
    memory rise of the runs) and the ratios to each record, in place:
    ``x_plain`` = median / median of plain CLIP at the same dtype,
    ``mem_x_plain`` likewise for the peak, ``x_float32`` = median / median of
    the same variant and M in float32 (when that was measured)."""
    for rec in records:
        if rec['times']:
            rec.update(_stats(rec['times']))
            peaks = [p for p in rec['peaks_mib'] if p is not None]
            rec['peak_mib'] = max(peaks) if peaks else None
    done = {(r['variant'], r['dtype'], r['num_masks']): r for r in records if r['times']}
    for rec in done.values():
        plain = done.get(('plain-clip', rec['dtype'], None))
        fp32 = done.get((rec['variant'], 'float32', rec['num_masks']))
        rec['x_plain'] = _ratio(rec['median'], plain and plain['median'])
        rec['mem_x_plain'] = _ratio(rec['peak_mib'], plain and plain['peak_mib'])
        rec['x_float32'] = _ratio(rec['median'], fp32 and fp32['median'])


def summarize_end_to_end(records: List[dict]) -> None:
    """Add statistics, ``fps`` (images / total seconds of the timed runs, as
    Mask2Former reports it) and ``s_per_image`` to each record, in place."""
    for rec in records:
        if rec['times']:
            rec.update(_stats(rec['times']))
            rec['fps'] = rec['images'] * len(rec['times']) / sum(rec['times'])
            rec['s_per_image'] = rec['median'] / rec['images']
            peaks = [p for p in rec['peaks_mib'] if p is not None]
            rec['peak_mib'] = max(peaks) if peaks else None


def _num(value: Optional[float], fmt: str) -> str:
    return '–' if value is None else format(value, fmt)


def _mib(value: Optional[float]) -> str:
    return _num(value, '.0f' if value is not None and abs(value) >= 100 else '.1f')


def encoder_tables(result: dict) -> List[str]:
    """Markdown lines: one table per dtype, a row per variant and M."""
    records = result['encoders']
    dtypes = list(dict.fromkeys(r['dtype'] for r in records))
    with_fp32 = len(dtypes) > 1 and 'float32' in dtypes
    lines = []
    for dtype in dtypes:
        lines += [
            '', f'### {dtype}' + (' (torch.autocast)' if dtype != 'float32' else ''), '',
            '| variant | M | median s | min s | max s | × plain CLIP | peak MiB | '
            '× plain CLIP mem |' + (' × float32 time |' if with_fp32 else ''),
            '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |' +
            (' ---: |' if with_fp32 else '')
        ]
        rows = [r for r in records if r['dtype'] == dtype]
        rows.sort(key=lambda r: (list(LABELS).index(r['variant']), r['num_masks'] or 0))
        for rec in rows:
            m = '–' if rec['num_masks'] is None else str(rec['num_masks'])
            if not rec['times']:
                lines.append(f"| {LABELS[rec['variant']]} | {m} | failed: {rec['error']} |")
                continue
            cells = [
                LABELS[rec['variant']], m,
                _num(rec['median'], '.3f'),
                _num(rec['min'], '.3f'),
                _num(rec['max'], '.3f'),
                _num(rec['x_plain'], '.2f'),
                _mib(rec['peak_mib']),
                _num(rec['mem_x_plain'], '.2f')
            ]
            if with_fp32:
                cells.append(_num(rec['x_float32'], '.2f'))
            lines.append('| ' + ' | '.join(cells) + ' |')
        lines += baseline_lines(rows)
    return lines


def baseline_lines(rows: List[dict]) -> List[str]:
    """Markdown lines: how many times the time of each MaskCLIP encoder the
    CLIP baseline takes, per M."""
    lines = []
    for base in rows:
        if base['variant'] != 'clip-baseline' or not base['times']:
            continue
        others = [
            f"{base['median'] / r['median']:.1f}× {LABELS[r['variant']]}" for r in rows
            if r['variant'].startswith('maskclip') and r['num_masks'] == base['num_masks']
            and r['times']
        ]
        if others:
            lines += [
                '', f"At M = {base['num_masks']} the CLIP baseline takes the time of " +
                ', '.join(others) + '.'
            ]
    return lines


def end_to_end_table(result: dict) -> List[str]:
    """Markdown lines: a row per config and dtype."""
    lines = [
        '', '| config | dtype | image (H × W) | classes | images timed | images/s (FPS) | '
        'median s/image | peak MiB | text once, s |', '| --- | --- | --- | ---: | ---: | ---: | '
        '---: | ---: | ---: |'
    ]
    for rec in result['end_to_end']:
        size = '{} × {}'.format(*rec['image_size'])
        head = f"| {rec['config']} | {rec['dtype']} | {size} | {rec['num_classes']} |"
        if not rec['times']:
            lines.append(f"{head} failed: {rec['error']} |")
            continue
        lines.append(f"{head} {rec['images'] * len(rec['times'])} | {rec['fps']:.2f} | "
                     f"{rec['s_per_image']:.3f} | {_mib(rec['peak_mib'])} | "
                     f"{rec['text_seconds']:.2f} |")
    return lines


def markdown(result: dict) -> str:
    """The whole report: machine, settings, notes and tables."""
    lines = ['# MaskCLIP speed and memory', '', f"Machine: {machine_line(result['machine'])}."]
    lines += ['', f"Timing: {result['timing_note']}", '', f"Memory: {result['memory_note']}"]
    if result.get('encoders'):
        enc = result['encoder_settings']
        lines += [
            '', f"## Encoders: {enc['clip']} at {enc['input_size']} × {enc['input_size']}, "
            'one image, random weights', '', f"RMA in blocks {enc['rma_blocks']} (1-based; "
            f"the shipped configs: {enc['shipped_rma_blocks']} of {enc['shipped_depth']}). "
            'Encoder settings from ' + ', '.join(f'`{f}`' for f in enc['configs']) + '.'
        ]
        lines += encoder_tables(result)
    if result.get('end_to_end'):
        lines += [
            '', '## End to end (' +
            ('`MaskCLIPInferencer`: + reading, drawing, export' if result['settings'].get(
                'inferencer') else '`test_step`: preprocessing, proposer, encoder, '
             'classification, post-processing') + ')', '', result['end_to_end_note']
        ]
        lines += end_to_end_table(result)
    return '\n'.join(lines) + '\n'


def _series(records: List[dict]) -> Dict[tuple, List[dict]]:
    """``(variant, dtype) -> records`` sorted by M, measured ones only."""
    series: Dict[tuple, List[dict]] = {}
    for rec in records:
        if rec['times']:
            series.setdefault((rec['variant'], rec['dtype']), []).append(rec)
    for recs in series.values():
        recs.sort(key=lambda r: r['num_masks'] or 0)
    return series


def plot(result: dict, path: str) -> None:
    """Time and peak memory against M, a line per variant and dtype (plain
    CLIP, which has no masks, as a level line), saved as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    records = result['encoders']
    dtypes = list(dict.fromkeys(r['dtype'] for r in records))
    styles = ['-', '--', ':', '-.']
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, ylabel in zip(axes, ('median', 'peak_mib'),
                               ('seconds per image (median)', 'peak memory rise (MiB)')):
        values = []
        for (variant, dtype), recs in _series(records).items():
            label = f"{LABELS[variant].split(' (')[0]}, {dtype}"
            style = styles[dtypes.index(dtype) % len(styles)]
            color = f'C{list(LABELS).index(variant)}'  # one colour a variant
            points = [(r['num_masks'], r[key]) for r in recs if r[key] is not None]
            values += [y for _, y in points]
            if variant == 'plain-clip':
                for _, y in points:
                    ax.axhline(y, color=color, linestyle=style, label=label)
            elif points:
                ax.plot(*zip(*points), style, color=color, marker='o', label=label)
        if values and min(values) > 0 and max(values) / min(values) > 30:
            ax.set_yscale('log')
        ax.set_xlabel('masks M')
        ax.set_ylabel(ylabel)
        ax.set_xticks(sorted({r['num_masks'] for r in records if r['num_masks']}))
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    enc = result['encoder_settings']
    fig.suptitle(f"{enc['clip']} at {enc['input_size']} x {enc['input_size']}, "
                 f"{result['machine']['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
