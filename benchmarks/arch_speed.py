"""Size, compute, CPU time and peak memory of the registered architectures; NDRNet against the official forward.

    python benchmarks/arch_speed.py             # 128, 256 and 512 px
    python benchmarks/arch_speed.py --quick     # 128 and 256 px, fewer repeats, no memory children at 512 px
    python benchmarks/arch_speed.py --bf16      # also the opt-in bfloat16 autocast mode and its accuracy

What is measured:

* parameters (unique tensors) and MACs = FLOPs / 2 from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
  matrix products; element-wise work is not counted), counted on the meta device at every size;
* CPU time per image (batch 1) under ``torch.inference_mode``: the median of the repeats after one warm-up run, with a
  fixed number of threads (``--threads``, default 1: on a shared machine, multi-threaded OpenMP regions spend most of
  their time waiting for a core). Both the wall-clock time and the CPU time of the process are reported;
* peak memory: every (network, size) pair runs one forward in a fresh child process, which reports the growth of its
  peak resident set (``ru_maxrss``) during the forward, i.e. the activations and temporaries on top of the weights;
* the official forward is ``tests/official_reference.py``, a literal re-implementation of the official
  NDR-Restore code (github.com/mdyao/NDR-Restore) that loads official checkpoints with strict=True; it stands in for
  the official code. NDRNet and NDRDegradationNet get its weights through ``ndr_plugin.convert_official`` and are run
  on the same input, interleaved with it; the maximal absolute difference of the outputs is reported next to the
  speed, so speed is never bought with fidelity.

Writes ``benchmarks/results/arch_speed.json`` and ``arch_speed.md``.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / 'benchmarks' / 'results'
sys.path[:0] = [str(REPO), str(REPO / 'tests')]

import ndr_plugin  # noqa: E402,F401  (compat before BasicSR)
import official_reference  # noqa: E402
from basicsr.archs import build_network  # noqa: E402
from basicsr.utils.registry import ARCH_REGISTRY  # noqa: E402
from ndr_plugin.convert_official import convert_official_state_dict  # noqa: E402

TINY_NDRNET = dict(type='NDRNet', dim=8, num_blocks=[1, 1, 1, 1], heads=[1, 1, 1, 1], num_refinement_blocks=1,
                   num_atoms=8, atom_dim=16, degradation_dim=8, cp_rank=4)
# name -> option dict for build_network; registered archs that are missing when this runs are skipped.
NETWORKS = {
    'NDRNet (paper)': dict(type='NDRNet'),
    'NDRNet (tiny)': TINY_NDRNET,
    'NDRNet use_ndr=false (paper)': dict(type='NDRNet', use_ndr=False),
    'NDRDegradationNet (paper)': dict(type='NDRDegradationNet'),
    'PromptIR (paper)': dict(type='PromptIR'),
    'official restoration_net (reference)': dict(type='official_restoration'),
    'official degradation_net (reference)': dict(type='official_degradation'),
}
# (ours, official) pairs compared on the same weights and inputs
PAIRS = (('NDRNet (paper)', 'official restoration_net (reference)'),
         ('NDRDegradationNet (paper)', 'official degradation_net (reference)'))
SPEED_TARGET = 0.8  # our paper-size NDRNet forward must take at most this fraction of the official forward's time


@functools.lru_cache(maxsize=2)
def official_model(legacy: bool = False) -> official_reference.NDRN:
    """The official model with default initialisation plus noise on the tensors initialised to constants."""
    torch.manual_seed(0)
    model = official_reference.NDRN(restoration=dict(legacy=legacy), degradation=dict(legacy=legacy)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'norm' in name or 'temperature' in name:
                param.add_(0.2 * torch.randn_like(param))
    return model


class OfficialDegradation(torch.nn.Module):
    """The official degradation net behind the same call signature as NDRDegradationNet."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, clean, maps):
        return self.net(clean, *maps)


def build(name: str, device: str = 'cpu', shared_weights: bool = True) -> torch.nn.Module | None:
    """The named network with random weights, for the compared pairs the official reference's (``shared_weights``)."""
    opt = NETWORKS[name]
    with torch.device(device):
        if opt['type'].startswith('official'):
            model = official_model() if device == 'cpu' and shared_weights else official_reference.NDRN()
            return (model.restoration_net if opt['type'] == 'official_restoration'
                    else OfficialDegradation(model.degradation_net)).eval()
        if opt['type'] not in ARCH_REGISTRY:
            return None
        torch.manual_seed(0)
        net = build_network(dict(opt)).eval()
    if device == 'cpu' and shared_weights and name in dict(PAIRS):
        net_g_sd, net_deg_sd = convert_official_state_dict(official_model().state_dict(), keep_bgr=True)
        net.load_state_dict(net_g_sd if opt['type'] == 'NDRNet' else net_deg_sd, strict=True)
    return net


def inputs(name: str, size: int, device: str = 'cpu') -> tuple:
    generator = torch.Generator().manual_seed(size)
    image = torch.rand(1, 3, size, size, generator=generator).to(device)
    if 'degradation' in name.lower():  # degradation maps of a paper-size NDRNet at the three levels
        maps = [torch.randn(1, 64, size >> level, size >> level, generator=generator).to(device) for level in range(3)]
        return image, maps
    return (image,)


def first_output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def fidelity(size: int = 128) -> list[dict]:
    """Max abs differences of our converted networks to the official forward, current and legacy-residual code."""
    rows = []
    lq, clean = (torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2))
    for legacy in (False, True):
        official = official_model(legacy)
        net_g_sd, net_deg_sd = convert_official_state_dict(official.state_dict(), keep_bgr=True)
        net = build_network(dict(type='NDRNet', legacy_residuals=legacy)).eval()
        deg = build_network(dict(type='NDRDegradationNet', legacy_residuals=legacy)).eval()
        net.load_state_dict(net_g_sd, strict=True)
        deg.load_state_dict(net_deg_sd, strict=True)
        with torch.inference_mode():
            restored, maps = net(lq, return_degradation=True)
            official_restored = official.restoration_process(lq)
            official_maps = [official.x_rep1, official.x_rep2, official.x_rep3]
            degraded, official_degraded = deg(clean, maps), official.degradation_process(clean)
        rows.append(dict(variant='legacy residuals' if legacy else 'current (HEAD)', size=size,
                         restored=(restored - official_restored).abs().max().item(),
                         maps=max((a - b).abs().max().item() for a, b in zip(maps, official_maps)),
                         degraded=(degraded - official_degraded).abs().max().item()))
        print(f'fidelity {rows[-1]}', flush=True)
    return rows


def parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def macs(name: str, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    net = build(name, device='meta', shared_weights=False)
    with torch.device('meta'), FlopCounterMode(display=False) as counter:
        net(*inputs(name, size, device='meta'))
    return counter.get_total_flops() / 2


def cpu_seconds() -> float:
    return time.thread_time() if torch.get_num_threads() == 1 else time.process_time()


def time_interleaved(calls: dict, repeats: int) -> dict:
    """Median wall and CPU seconds of each call, the calls run in turn, after one warm-up round."""
    wall = {k: [] for k in calls}
    cpu = {k: [] for k in calls}
    outputs = {}
    with torch.inference_mode():
        for k, call in calls.items():
            outputs[k] = first_output(call())
        for _ in range(repeats):
            for k, call in calls.items():
                start_wall, start_cpu = time.perf_counter(), cpu_seconds()
                call()
                wall[k].append(time.perf_counter() - start_wall)
                cpu[k].append(cpu_seconds() - start_cpu)
    return {k: dict(wall_ms=1e3 * statistics.median(wall[k]), cpu_ms=1e3 * statistics.median(cpu[k]),
                    runs=repeats, output=outputs[k]) for k in calls}


def peak_memory_mib(name: str, size: int, threads: int) -> float:
    """Growth of the peak resident set of a fresh process during one forward (MiB)."""
    command = [sys.executable, __file__, '--child-memory', name, str(size), '--threads', str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])['peak_growth_mib']


def _resident_kib() -> tuple[int, int]:
    """(current, peak) resident set in KiB; the peak can be reset (Linux /proc), else ru_maxrss."""
    try:
        status = Path('/proc/self/status').read_text()
        return int(re.search(r'VmRSS:\s+(\d+)', status)[1]), int(re.search(r'VmHWM:\s+(\d+)', status)[1])
    except (OSError, TypeError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak, peak


def child_memory(name: str, size: int) -> None:
    net = build(name, shared_weights=False)  # weight values do not change memory use
    args = inputs(name, size)
    try:
        Path('/proc/self/clear_refs').write_text('5')  # reset the peak to the current resident set
    except OSError:
        pass
    before, _ = _resident_kib()
    with torch.inference_mode():
        net(*args)
    _, peak = _resident_kib()
    print(json.dumps({'peak_growth_mib': (peak - before) / 1024}))


def ablation_variants() -> dict:
    """Label -> list of (module, attribute, replacement) that switch one optimisation off."""
    from ndr_plugin.archs import fast_paths, ndr_arch, ndr_degradation_arch

    def keep_layout(x):
        return x

    def default_pointwise(x, weight, bias):
        return torch.nn.functional.conv2d(x, weight, bias)

    return {'channels-first (NCHW) layout': [(ndr_arch, 'preferred_layout', keep_layout),
                                             (ndr_degradation_arch, 'preferred_layout', keep_layout)],
            "channels-last with PyTorch's own 1x1-conv kernel choice": [
                (fast_paths, 'pointwise_conv', default_pointwise)]}


def patched(call, patches: list):
    """``call`` run with module attributes temporarily replaced."""
    def run_patched():
        saved = [(module, attribute, getattr(module, attribute)) for module, attribute, _ in patches]
        try:
            for module, attribute, replacement in patches:
                setattr(module, attribute, replacement)
            return call()
        finally:
            for module, attribute, original in saved:
                setattr(module, attribute, original)
    return run_patched


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    sizes = [128, 256] if args.quick else [128, 256, 512]
    repeats = {128: 3, 256: 2, 512: 1} if args.quick else {128: 7, 256: 3, 512: 1}
    available = {name: build(name) for name in NETWORKS}
    available = {name: net for name, net in available.items() if net is not None}
    report = dict(machine=dict(python=platform.python_version(), torch=torch.__version__, cpu=platform.processor(),
                               cores=os.cpu_count(), threads=args.threads, load_average=os.getloadavg()),
                  quick=args.quick, networks={}, comparisons=[], ablations=[], bf16=None, fidelity=fidelity())
    for name, net in available.items():
        entry = dict(options=NETWORKS[name], parameters=parameters(net), macs_g={}, wall_ms={}, cpu_ms={},
                     peak_memory_mib={})
        for size in sizes:
            entry['macs_g'][size] = macs(name, size) / 1e9
        report['networks'][name] = entry
        print(f'{name}: {entry["parameters"]:,} parameters, MACs {entry["macs_g"]}', flush=True)
    for size in sizes:
        for ours, official in PAIRS:
            if ours not in available:
                continue
            args_ = inputs(ours, size)
            timed = time_interleaved({ours: lambda: available[ours](*args_),
                                      official: lambda: available[official](*args_)}, repeats[size])
            diff = (timed[ours]['output'] - timed[official]['output']).abs().max().item()
            ratio = timed[ours]['cpu_ms'] / timed[official]['cpu_ms']
            report['comparisons'].append(dict(ours=ours, official=official, size=size, max_abs_diff=diff,
                                              cpu_ratio=ratio,
                                              wall_ratio=timed[ours]['wall_ms'] / timed[official]['wall_ms'],
                                              runs=repeats[size]))
            for k in (ours, official):
                report['networks'][k]['wall_ms'][size] = timed[k]['wall_ms']
                report['networks'][k]['cpu_ms'][size] = timed[k]['cpu_ms']
            print(f'{size}px {ours}: {timed[ours]["cpu_ms"]:.0f} ms vs official {timed[official]["cpu_ms"]:.0f} ms '
                  f'(x{ratio:.2f}), max |diff| {diff:.2e}', flush=True)
        for name, net in available.items():
            if any(name in pair for pair in PAIRS):
                continue
            if size == 512 and args.quick:
                continue
            args_ = inputs(name, size)
            timed = time_interleaved({name: lambda: net(*args_)}, repeats[size])[name]
            report['networks'][name]['wall_ms'][size] = timed['wall_ms']
            report['networks'][name]['cpu_ms'][size] = timed['cpu_ms']
            print(f'{size}px {name}: {timed["cpu_ms"]:.0f} ms', flush=True)
        save(report)
    if not args.skip_ablations and 'NDRNet (paper)' in available:
        net, image = available['NDRNet (paper)'], inputs('NDRNet (paper)', 128)
        calls = {'shipped': lambda: net(*image)}
        calls.update({label: patched(lambda: net(*image), patches) for label, patches in ablation_variants().items()})
        timed = time_interleaved(calls, repeats[128])
        for label, result in timed.items():
            report['ablations'].append(dict(variant=label, size=128, cpu_ms=result['cpu_ms'],
                                            wall_ms=result['wall_ms']))
            print(f'ablation {label}: {result["cpu_ms"]:.0f} ms', flush=True)
    if args.bf16 and 'NDRNet (paper)' in available:
        report['bf16'] = bf16_mode(available['NDRNet (paper)'], available['official restoration_net (reference)'])
    save(report)
    if not args.skip_memory:
        for name in available:
            for size in sizes:
                if size == 512 and args.quick:
                    continue
                report['networks'][name]['peak_memory_mib'][size] = peak_memory_mib(name, size, args.threads)
                print(f'{size}px {name}: peak +{report["networks"][name]["peak_memory_mib"][size]:.0f} MiB',
                      flush=True)
            save(report)
    return report


def save(report: dict) -> None:
    """Writes the results so far (a long run that is interrupted keeps what it measured)."""
    report['machine']['load_average_after'] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / 'arch_speed.json').write_text(json.dumps(report, indent=1, default=str) + '\n')
    (RESULTS / 'arch_speed.md').write_text(markdown(report))


def bf16_mode(net, official, repeats: int = 3) -> dict:
    """Opt-in reduced precision: the network cast to bfloat16 (as ``ndr-restore --precision bf16`` runs it) against
    float32, interleaved so that machine load hits both alike, and its deviation from the float32 official output."""
    from ndr_plugin.restore.precision import cpu_has_native_bf16
    image = inputs('NDRNet (paper)', 128)[0]
    with torch.inference_mode():
        reference = first_output(official(image))
    half = copy.deepcopy(net).to(torch.bfloat16)
    load_before = os.getloadavg()[0]
    try:
        timed = time_interleaved({'fp32': lambda: net(image), 'bf16': lambda: half(image.bfloat16())}, repeats)
    except RuntimeError as err:
        return dict(supported=False, error=str(err).splitlines()[0])
    diff = (timed['bf16']['output'].float() - reference).abs()
    return dict(supported=True, size=128, native_bf16=cpu_has_native_bf16(), repeats=repeats,
                fp32_wall_ms=timed['fp32']['wall_ms'], wall_ms=timed['bf16']['wall_ms'],
                ratio_wall=timed['bf16']['wall_ms'] / timed['fp32']['wall_ms'],
                load_average=[load_before, os.getloadavg()[0]],
                max_abs_diff=diff.max().item(), mean_abs_diff=diff.mean().item())


def markdown(report: dict) -> str:
    m = report['machine']
    lines = ['# Architecture speed (CPU)', '',
             f'torch {m["torch"]}, Python {m["python"]}, {m["cores"]} cores, {m["threads"]} thread(s), '
             f'load average {m["load_average"][0]:.1f} before and {m["load_average_after"][0]:.1f} after '
             '(a shared machine: treat absolute times as indicative, ratios of interleaved runs as the result).'
             + (' Quick run.' if report['quick'] else ''), '',
             'The official forward is `tests/official_reference.py`, a literal re-implementation of the official code '
             '(github.com/mdyao/NDR-Restore) that loads official checkpoints with strict=True; it stands in for the '
             'official code. Ours use its weights through `ndr_plugin.convert_official`.', '',
             '## Ours against the official forward (same weights, same input, interleaved runs)', '',
             '| network | size | ours CPU ms | official CPU ms | time ratio (CPU) | time ratio (wall) | max abs diff |',
             '|---|---|---|---|---|---|---|']
    nets = report['networks']
    for c in report['comparisons']:
        lines.append(f'| {c["ours"]} | {c["size"]} | {nets[c["ours"]]["cpu_ms"][c["size"]]:.0f} | '
                     f'{nets[c["official"]]["cpu_ms"][c["size"]]:.0f} | {c["cpu_ratio"]:.2f} | {c["wall_ratio"]:.2f} '
                     f'| {c["max_abs_diff"]:.1e} |')
    lines += ['', 'Fidelity at paper size, 128 px, random official-format weights converted with '
                  '`convert_official_state_dict` (max abs difference to the official forward):', '',
              '| official code | restored | degradation maps | degraded (NDRDegradationNet) |', '|---|---|---|---|']
    lines += [f'| {f["variant"]} | {f["restored"]:.1e} | {f["maps"]:.1e} | {f["degraded"]:.1e} |'
              for f in report['fidelity']]
    paper = [c for c in report['comparisons'] if c['ours'] == 'NDRNet (paper)']
    if paper:
        worst = max(c['cpu_ratio'] for c in paper)
        verdict = 'met' if worst <= SPEED_TARGET else 'NOT met'
        lines += ['', f'Target: paper-size NDRNet at most {SPEED_TARGET}x the official time: **{verdict}** '
                      f'(worst ratio {worst:.2f}).']
    sizes = sorted({s for n in nets.values() for s in n['macs_g']}, key=int)
    lines += ['', '## All networks', '',
              '| network | parameters | ' + ' | '.join(f'GMACs {s}' for s in sizes) + ' | '
              + ' | '.join(f'CPU ms {s}' for s in sizes) + ' | ' + ' | '.join(f'peak MiB {s}' for s in sizes) + ' |',
              '|---|---|' + '---|' * (3 * len(sizes))]

    def cell(values, size, fmt):
        return fmt.format(values[size]) if size in values else '-'

    for name, n in nets.items():
        lines.append(f'| {name} | {n["parameters"]:,} | '
                     + ' | '.join(cell(n['macs_g'], s, '{:.2f}') for s in sizes) + ' | '
                     + ' | '.join(cell(n['cpu_ms'], s, '{:.0f}') for s in sizes) + ' | '
                     + ' | '.join(cell(n['peak_memory_mib'], s, '{:.0f}') for s in sizes) + ' |')
    lines += ['', 'Peak MiB: growth of the peak resident set of a fresh process during one forward (activations and '
                  'temporaries on top of the weights). MACs: FlopCounterMode FLOPs / 2 (convolutions and matrix '
                  'products).']
    if report['ablations']:
        base = report['ablations'][0]['cpu_ms']
        lines += ['', '## Switching single optimisations off (paper-size NDRNet, 128 px, interleaved runs)', '',
                  '| variant | CPU ms | vs shipped |', '|---|---|---|']
        lines += [f'| {a["variant"]} | {a["cpu_ms"]:.0f} | {a["cpu_ms"] / base:.2f} |' for a in report['ablations']]
    lines += ['', OPTIMISATION_NOTES]
    if report['bf16']:
        b = report['bf16']
        lines += ['', '## Opt-in bfloat16 (ndr-restore --precision bf16)', '']
        lines.append(f'{b["wall_ms"]:.0f} ms against {b["fp32_wall_ms"]:.0f} ms in float32 at 128 px (wall, median of '
                     f'{b["repeats"]} interleaved runs: ratio {b["ratio_wall"]:.2f}; load average '
                     f'{b["load_average"][0]:.1f}-{b["load_average"][1]:.1f}); CPU with bfloat16 instructions '
                     f'(AVX-512 BF16 / AMX): {"yes" if b["native_bf16"] else "no"}. Max abs diff to the float32 '
                     f'official output {b["max_abs_diff"]:.2e} (mean {b["mean_abs_diff"]:.2e}). '
                     '`benchmarks/results/precision.md` has the 256 px ratio and the PSNR change on real images.'
                     if b['supported'] else f'Not supported on this CPU: {b["error"]}')
    return '\n'.join(lines) + '\n'


OPTIMISATION_NOTES = """## How NDRNet is made faster than the official code (all exact up to float rounding)

1. Channels-last memory on CPU (`preferred_layout`): layer norm over contiguous channels is one fused kernel (the
   official to_3d / custom LayerNorm / to_4d costs ~10x more); oneDNN's depthwise 3x3 convolutions run ~2x faster.
2. 1x1 convolutions call oneDNN directly (`pointwise_conv`): PyTorch's heuristic sends single-threaded 1x1
   convolutions to its generic kernel, about half as fast here for the expanding projections.
3. GDFN computes its gate and value halves as separate tensors (sliced weights), so GELU runs on contiguous memory
   (channel halves of a channels-last tensor are strided and GELU on them was ~3x slower).
4. MDTA: in float32 the L2 normalisation of q and k is applied to the small (c x c) product instead of the two
   (c x HW) operands (reduced precision normalises first, as the official code, to stay in range), and `project_out`
   is folded into the attention matrix, so attn @ v and the projection are one (HW x C) @ (C x C) product that
   writes channels-last output directly (~1.4 GMACs fewer at 128 px).
5. Low-rank CP gate: the rank-16 mean is one (C x 16) @ (16 x HW) product instead of materialising the
   (16, C, H, W) cube (the official code's largest temporary: ~1 GB at 512 px for the level-1 injection); the
   injection's shared map gate is computed once (the official code calls it twice).
6. Without autograd, residual additions and the GELU gating update their fresh operand in place: fewer new
   activation buffers, whose first touch (page faults) is a sizeable part of CPU time here. Under autograd they make
   new tensors, since an in-place update of a view or of a saved operand costs autograd a full copy in the backward.

Development measurements (1 thread, 128 px, same loaded machine; not re-measured by this script): part of the
official code's extra time is page-fault churn from its many large temporaries. With glibc told to keep freed memory
(`MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=10000000000 MALLOC_TOP_PAD_=100000000`) both got faster
(best of 5, two sessions: official 4.3-4.8 -> 3.2-3.7 s, ours 2.2-2.6 -> 1.9-2.4 s), so the ratio under that tuning
was ~0.6-0.65 instead of ~0.55.
Tried and dropped: channels-last weights (`model.to(memory_format=torch.channels_last)`: no difference within the
noise), a single project_in followed by channel chunks in channels-last (strided GELU), tanh-approximated GELU (not
exact, and slower here), two threads (on this shared 2-core machine OpenMP barriers made everything several times
slower, for the official code too)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='128 and 256 px only, fewer repeats')
    parser.add_argument('--threads', type=int, default=1, help='torch.set_num_threads (default 1)')
    parser.add_argument('--bf16', action='store_true', help='also measure the opt-in bfloat16 autocast mode')
    parser.add_argument('--skip-memory', action='store_true', help='no peak-memory child processes')
    parser.add_argument('--skip-ablations', action='store_true', help='no optimisation ablations')
    parser.add_argument('--child-memory', nargs=2, metavar=('NAME', 'SIZE'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        torch.set_num_threads(args.threads)
        child_memory(args.child_memory[0], int(args.child_memory[1]))
        return 0
    save(run(args))
    print(f'Wrote {RESULTS / "arch_speed.md"} and {RESULTS / "arch_speed.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
