"""benchmarks/gpu_check.py runs end to end on the CPU with tiny sizes, so the GPU check cannot rot unnoticed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu_quick(tmp_path):
    command = [sys.executable, str(REPO / 'benchmarks' / 'gpu_check.py'), '--device', 'cpu', '--quick', '--threads',
               '1', '--out', str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    sections = report['sections']
    assert list(sections) == ['parity', 'amp', 'throughput', 'memory', 'inference', 'ddp']
    assert not [name for name, section in sections.items() if 'error' in section]
    assert sections['parity']['passed'] and sections['amp']['passed']
    assert sections['amp']['bf16']['finite'] and 'skipped' in sections['amp']['fp16']  # fp16 autocast: CUDA only
    assert sections['throughput']['ours_it_s'] > 0 and sections['throughput']['official_it_s'] > 0
    assert 'skipped' in sections['memory'] and 'skipped' in sections['ddp']
    assert sections['inference']['latency_ms_fp32'] > 0
    assert '| parity |' in (tmp_path / 'gpu_check.md').read_text()
