"""One command that checks and measures training and inference on a GPU, in under 5 minutes on one device.

    python benchmarks/gpu_check.py                        # cuda, paper-size networks
    python benchmarks/gpu_check.py --device cpu --quick   # tiny sizes on the CPU: the test suite runs this

Sections (each saved to ``benchmarks/results/gpu_check.json`` / ``.md`` as soon as it is measured, so a run cut short
keeps what it had; a section that fails records its error and the others still run):

1. ``parity``: NDRNet output on the device against the CPU, same weights and input (max abs difference <= 1e-3).
2. ``amp``: one NDRModel joint training step under ``train.amp: bf16`` and ``fp16`` (fp16 on CUDA only) from the same
   weights and batch as a float32 step: finite losses and gradient norm, losses within 5% of float32.
3. ``throughput``: NDRModel joint iterations per second against the official step (``train_steps.py``) at batch 8 of
   128 px (goal: 1.5x or better).
4. ``memory``: peak device memory of one training step, ours with and without ``checkpoint_blocks`` against the
   official step, at the same batch (CUDA only).
5. ``inference``: NDRNet latency at 720x480 in float32 and in ``auto`` precision, and the peak memory of a tiled
   4000x3000 photo (tile 512, one statistics pass).
6. ``ddp``: two processes, NCCL, one DDP training step of NDRNet, gradients equal across ranks (two GPUs needed).

``--quick`` shrinks every size (demo/tiny networks, small images) so the whole check runs on a CPU in seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train_steps  # noqa: E402  (puts the repository and tests/ on sys.path)
from ndr_plugin.archs.ndr_arch import NDRNet  # noqa: E402
from ndr_plugin.restore.precision import resolve_precision  # noqa: E402
from ndr_plugin.restore.tiling import TileSettings, tiled_forward  # noqa: E402

PARITY_TOLERANCE = 1e-3
AMP_LOSS_TOLERANCE = 0.05
TINY_NDRNET = dict(dim=8, num_blocks=[1, 1, 1, 1], heads=[1, 1, 1, 1], num_refinement_blocks=1, num_atoms=8,
                   atom_dim=16, degradation_dim=8, cp_rank=4)


class Sizes:
    """Network size, batches and images of a full or a ``--quick`` run."""

    def __init__(self, quick: bool) -> None:
        self.network = 'tiny' if quick else 'paper'
        self.ndrnet = TINY_NDRNET if quick else {}
        self.batch, self.crop = (2, 32) if quick else (8, 128)
        self.steps = 2 if quick else 5
        self.latency = (48, 72) if quick else (480, 720)
        self.photo = (80, 112) if quick else (3000, 4000)
        self.tile = 64 if quick else 512


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def peak_reset(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == 'cuda' else None


def check_parity(device: torch.device, sizes: Sizes) -> dict:
    torch.manual_seed(0)
    net = NDRNet(**sizes.ndrnet).eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        on_cpu = net(image)
        on_device = net.to(device)(image.to(device)).cpu()
    diff = (on_device - on_cpu).abs().max().item()
    return {'max_abs_diff': diff, 'tolerance': PARITY_TOLERANCE, 'passed': diff <= PARITY_TOLERANCE}


def _one_step_log(device: torch.device, sizes: Sizes, amp: str | bool, state: dict | None) -> tuple[dict, dict]:
    torch.manual_seed(0)
    step, model = train_steps.ours_step('joint', sizes.network, str(device), train={'amp': amp})
    if state is not None:
        model.net_g.load_state_dict(state['g'])
        model.net_deg.load_state_dict(state['deg'])
    step(*train_steps.make_batch(sizes.batch, sizes.crop, str(device)))
    log = {k: float(v) for k, v in model.log_dict.items() if k in ('l_rest', 'l_deg', 'grad_norm')}
    return log, {'g': model.net_g.state_dict(), 'deg': model.net_deg.state_dict()}


def check_amp(device: torch.device, sizes: Sizes) -> dict:
    torch.manual_seed(0)
    _, initial = _one_step_log(device, sizes, False, None)  # weights after one float32 step: a trained-ish start
    reference, _ = _one_step_log(device, sizes, False, initial)
    result = {'fp32': reference}
    for amp in ('bf16', 'fp16'):
        if amp == 'fp16' and device.type != 'cuda':
            result[amp] = {'skipped': 'fp16 autocast is CUDA only'}
            continue
        log, _ = _one_step_log(device, sizes, amp, initial)
        finite = all(map(lambda v: v == v and abs(v) != float('inf'), log.values()))
        close = all(abs(log[k] - reference[k]) <= AMP_LOSS_TOLERANCE * abs(reference[k]) for k in ('l_rest', 'l_deg'))
        result[amp] = {**log, 'finite': finite, 'losses_within_5pct': close}
    result['passed'] = all(r.get('finite', True) and r.get('losses_within_5pct', True)
                           for k, r in result.items() if k != 'fp32')
    return result


def _steps_per_second(step: Callable, device: torch.device, sizes: Sizes) -> float:
    lq, gt = train_steps.make_batch(sizes.batch, sizes.crop, str(device))
    step(lq, gt)  # warm-up: Adam state, cuDNN algorithm choice
    synchronize(device)
    start = time.perf_counter()
    for _ in range(sizes.steps):
        step(lq, gt)
    synchronize(device)
    return sizes.steps / (time.perf_counter() - start)


def _official_step(device: torch.device, sizes: Sizes) -> Callable:
    torch.manual_seed(0)
    return train_steps.official_step(train_steps.official_model(sizes.network).to(device).train())


def check_throughput(device: torch.device, sizes: Sizes) -> dict:
    official = _steps_per_second(_official_step(device, sizes), device, sizes)
    ours = _steps_per_second(train_steps.ours_step('joint', sizes.network, str(device))[0], device, sizes)
    return {'batch': sizes.batch, 'crop': sizes.crop, 'ours_it_s': ours, 'official_it_s': official,
            'speedup': ours / official, 'goal': 1.5}


def _step_peak(make_step: Callable, device: torch.device, sizes: Sizes) -> float | None:
    peak_reset(device)
    step = make_step()
    step(*train_steps.make_batch(sizes.batch, sizes.crop, str(device)))
    synchronize(device)
    return peak_mib(device)


def check_memory(device: torch.device, sizes: Sizes) -> dict:
    if device.type != 'cuda':
        return {'skipped': 'peak device memory is measured on CUDA only'}
    result = {'batch': sizes.batch, 'crop': sizes.crop,
              'official_mib': _step_peak(lambda: _official_step(device, sizes), device, sizes)}
    for label, network in (('ours_mib', None), ('ours_checkpointed_mib', {'checkpoint_blocks': True})):
        make = (lambda net=network: train_steps.ours_step('joint', sizes.network, str(device), network=net)[0])
        result[label] = _step_peak(make, device, sizes)
    result['checkpointed_vs_official'] = result['ours_checkpointed_mib'] / result['official_mib']
    return result


def check_inference(device: torch.device, sizes: Sizes) -> dict:
    torch.manual_seed(0)
    result = {}
    for precision in ('fp32', 'auto'):
        dtype = resolve_precision(precision, device)
        net = NDRNet(**sizes.ndrnet).eval().to(device, dtype)
        image = torch.rand(1, 3, *sizes.latency, device=device, dtype=dtype)
        with torch.inference_mode():
            net(image)
            synchronize(device)
            start = time.perf_counter()
            net(image)
            synchronize(device)
        result[f'latency_ms_{precision}'] = 1e3 * (time.perf_counter() - start)
        result[f'dtype_{precision}'] = str(dtype).removeprefix('torch.')
    net = NDRNet(**sizes.ndrnet).eval().to(device)
    photo = torch.rand(1, 3, *sizes.photo, device=device)
    peak_reset(device)
    start = time.perf_counter()
    with torch.inference_mode():
        tiled_forward(net, photo, TileSettings(sizes.tile, 32 if sizes.tile > 64 else 16, 1))
    synchronize(device)
    result.update(photo=list(sizes.photo), tile=sizes.tile, tiled_seconds=time.perf_counter() - start,
                  tiled_peak_mib=peak_mib(device), latency_size=list(sizes.latency))
    return result


def _ddp_worker(rank: int, port: int, queue) -> None:  # pragma: no cover (two GPUs)
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    dist.init_process_group('nccl', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    torch.cuda.set_device(rank)
    torch.manual_seed(0)
    net = DistributedDataParallel(NDRNet(**TINY_NDRNET).cuda(rank), device_ids=[rank])
    lq, gt = train_steps.make_batch(2, 64, f'cuda:{rank}', seed=rank)
    (net(lq) - gt).abs().mean().backward()
    grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    gathered = [torch.zeros_like(grads) for _ in range(2)]
    dist.all_gather(gathered, grads)
    if rank == 0:
        queue.put((gathered[0] - gathered[1]).abs().max().item())
    dist.destroy_process_group()


def check_ddp(device: torch.device, sizes: Sizes) -> dict:
    if device.type != 'cuda' or torch.cuda.device_count() < 2:
        return {'skipped': 'needs two CUDA devices'}
    import torch.multiprocessing as mp
    context = mp.get_context('spawn')
    queue = context.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(29517, queue), nprocs=2, start_method='spawn')
    difference = queue.get()
    return {'processes': 2, 'backend': 'nccl', 'grad_max_abs_diff_between_ranks': difference,
            'passed': difference == 0}


SECTIONS = {'parity': check_parity, 'amp': check_amp, 'throughput': check_throughput, 'memory': check_memory,
            'inference': check_inference, 'ddp': check_ddp}


def markdown(report: dict) -> str:
    lines = [f'# GPU check ({report["device"]})', '',
             f'{report["device_name"]}; torch {report["torch"]}; {"quick sizes" if report["quick"] else "full sizes"}; '
             f'1-minute load average at start {report["load_1min"]:.2f}.', '',
             '| section | seconds | result |', '|---|---:|---|']
    for name, section in report['sections'].items():
        body = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in section.items() if k != 'seconds'}
        lines.append(f'| {name} | {section.get("seconds", 0):.1f} | `{json.dumps(body)}` |')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda', help='cuda, cuda:<index> or cpu (default: cuda)')
    parser.add_argument('--quick', action='store_true', help='tiny sizes (runs on a CPU in seconds)')
    parser.add_argument('--out', type=Path, default=HERE / 'results', help='folder for gpu_check.json / .md')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch\'s choice)')
    parser.add_argument('--only', nargs='+', choices=list(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is visible (use --device cpu --quick for the CPU check)')
    sizes = Sizes(args.quick)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {'device': str(device), 'device_name': torch.cuda.get_device_name(device) if device.type == 'cuda'
              else platform.processor() or platform.machine(), 'torch': torch.__version__, 'quick': args.quick,
              'load_1min': os.getloadavg()[0], 'sections': {}}
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.only:
        start = time.perf_counter()
        try:
            section = SECTIONS[name](device, sizes)
        except Exception as err:  # noqa: BLE001  (one broken section must not hide the others' results)
            section = {'error': f'{type(err).__name__}: {err}', 'traceback': traceback.format_exc(limit=3)}
        section['seconds'] = time.perf_counter() - start
        if 'error' in section or section.get('passed') is False:
            failed.append(name)
        report['sections'][name] = section
        (args.out / 'gpu_check.json').write_text(json.dumps(report, indent=1) + '\n', encoding='utf-8')
        (args.out / 'gpu_check.md').write_text(markdown(report), encoding='utf-8')
        print(f'{name}: {json.dumps(section)[:400]}', flush=True)
    if failed:
        print(f'failed sections: {", ".join(failed)}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
