"""tools/analysis_tools/gpu_check.py: the measuring pieces against hand-computed values, and the
whole script under --smoke as on a machine with torch alone and no install of this repository:
every section's figures, and a section that stalls, raises or fails a check recorded as such while
the later ones still run."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import sysconfig

import pytest
import torch

from tests.paths import ROOT
from vmamba_mm.analysis import device_check

SCRIPT = osp.join(ROOT, 'tools', 'analysis_tools', 'gpu_check.py')
SECTIONS = ['environment', 'correctness', 'model', 'profile', 'throughput', 'scan_bandwidth',
            'compiled']
MM_PACKAGES = ('mmengine', 'mmcv', 'mmpretrain', 'mmdet', 'mmseg', 'mmsegmentation')


def _load_script():
    spec = importlib.util.spec_from_file_location('gpu_check_script', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------- the pieces

def test_compare_against_hand_computed_errors():
    metrics = device_check.compare(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0]))
    assert metrics['max_scaled'] == pytest.approx(0.5 / 2.0)  # scale max(1, max|e|) = 2
    assert metrics['rel_norm'] == pytest.approx(0.5 / 5**0.5)
    assert metrics['finite'] and device_check.within(metrics, 0.25)
    assert not device_check.within(metrics, 0.2)
    small = device_check.compare(torch.tensor([0.1, 0.0]), torch.tensor([0.0, 0.0]))
    assert small['max_scaled'] == pytest.approx(0.1)  # the scale is at least 1
    nan = device_check.compare(torch.tensor([float('nan')]), torch.tensor([0.0]))
    assert not device_check.within(nan, 1e9)


def test_scan_bytes_by_hand():
    # batch 2, dim 16, L 256, N 1, 4 groups, bf16 inputs, float32 y:
    # u, delta 2 * 8192 and B, C 2 * 2048 elements at 2 bytes; y 8192 at 4; A, D, bias 16 * 3 * 4.
    forward = (2 * 8192 + 2 * 2048) * 2 + 8192 * 4 + 192
    # backward: the four inputs again, dy (4 bytes), du, ddelta, dB, dC (2 bytes), dA, dD, dbias.
    backward = (2 * 8192 + 2 * 2048) * 2 + 8192 * 4 + (2 * 8192 + 2 * 2048) * 2 + 2 * 192
    assert device_check.scan_bytes(2, 16, 256, 1, 4, 2) == dict(
        forward=forward, forward_backward=forward + backward)


def test_minimal_traffic_of_a_linear_layer():
    layer = torch.nn.Linear(4, 3).to('meta')
    x = torch.empty(2, 4, device='meta')
    elements, by_operator = device_check.minimal_traffic(layer, lambda: layer(x))
    # addmm reads the bias (3), the input (8) and the weight (12) and writes the output (6).
    assert elements == 29 and by_operator == {'aten::addmm': 29}


def test_roofline_floor():
    floor = device_check.roofline(2e12, 4e9, 1000.0, 4000.0)
    assert floor == dict(compute_ms=pytest.approx(2.0), memory_ms=pytest.approx(1.0),
                         floor_ms=pytest.approx(2.0), serial_ms=pytest.approx(3.0))


@pytest.mark.parametrize('name, in_scan, kind', [
    ('void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>',
     False, 'copies/layout'),
    ('sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64', False, 'gemm/conv'),
    ('void at::native::vectorized_layer_norm_kernel<float, float>', False, 'norms'),
    ('_selective_scan_fwd', False, 'scan'),
    ('void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>',
     False, 'element-wise'),
    ('void at::native::reduce_kernel<512, 1>', False, 'other'),
    ('aten::mul', True, 'scan'),
    ('aten::mm', True, 'gemm/conv'),
    ('aten::_slow_conv2d_forward', False, 'gemm/conv'),
    ('mkldnn::_linear_pointwise', False, 'gemm/conv'),  # the CPU inference path's linear
])
def test_kernel_kinds(name, in_scan, kind):
    assert device_check.kernel_kind(name, in_scan) == kind


def test_profile_totals_by_kind_on_the_cpu():
    x = torch.randn(64, 64)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with torch.profiler.record_function('scan-range'):
            y = (x * 2).exp()
        (x @ y).relu()
    summary = device_check.time_by_kind(prof.events(), 'scan-range', 'cpu')
    by_kind = summary['by_kind_ms']
    assert by_kind['scan'] > 0 and by_kind['gemm/conv'] > 0
    assert sum(by_kind.values()) == pytest.approx(summary['total_ms'])
    assert {'aten::mul', 'aten::exp'} <= {e['name'] for e in summary['top'] if e['kind'] == 'scan'}


def test_section_deadlines_keep_the_later_shares():
    script = _load_script()
    shares = script.SECTION_SHARES
    # 100 s left of a 100 s budget: the first section may use all but the others' shares.
    assert script.section_deadline(0.0, 100.0, 100.0, 'environment', SECTIONS[1:]) == \
        pytest.approx(100.0 * (1 - sum(shares[n] for n in SECTIONS[1:])))
    # Late (past the run's end): still half its own share, but never past the allowed overrun.
    assert script.section_deadline(120.0, 100.0, 100.0, 'profile', ['throughput']) == \
        pytest.approx(120.0 + 0.5 * 100.0 * shares['profile'])
    assert script.section_deadline(200.0, 100.0, 100.0, 'profile', ['throughput']) == \
        pytest.approx(100.0 + script.OVERRUN_S)


def test_usage_errors_exit_2(tmp_path):
    for args in (['--sections', 'nope'], ['--budget', '0'], []):
        proc = subprocess.run([sys.executable, SCRIPT, *(['--out', str(tmp_path)] if args else
                                                         []), *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and 'error:' in proc.stderr, (args, proc.stderr)


# --------------------------------------------------------------------- the script, --smoke

def _plain_environment(tmp_path):
    """PYTHONPATH of links to site-packages without the OpenMMLab packages and without this
    repository's editable install; run with -S, the script must find both packages itself."""
    links = tmp_path / 'site'
    links.mkdir()
    site_packages = sysconfig.get_paths()['purelib']
    for name in os.listdir(site_packages):
        if name.lower().startswith(MM_PACKAGES) or name.startswith('__editable__') or \
                name.lower().startswith('vmamba') or name == 'tests' or name.endswith('.pth'):
            continue
        os.symlink(osp.join(site_packages, name), links / name)
    env = {k: v for k, v in os.environ.items() if k not in ('TRITON_INTERPRET', 'PYTHONPATH')}
    env['PYTHONPATH'] = str(links)
    return env


def _run(tmp_path, out, *args, faults=None):
    env = _plain_environment(tmp_path)
    if faults:
        env['GPU_CHECK_FAULTS'] = faults
    proc = subprocess.run([sys.executable, '-S', SCRIPT, '--out', str(out), '--smoke', *args],
                          capture_output=True, text=True, timeout=400, env=env, cwd=str(tmp_path))
    with open(out / 'gpu_check.json') as f:
        report = json.load(f)
    return proc, report


@pytest.mark.slow
def test_smoke_run_has_every_section_with_real_figures(tmp_path):
    out = tmp_path / 'out'
    proc, report = _run(tmp_path, out, '--budget', '300')
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert report['status'] == 'ok' and list(report['sections']) == SECTIONS
    sections = report['sections']
    assert all(part['status'] == 'ok' for part in sections.values())
    summary = (out / 'summary.txt').read_text()
    assert all(f'== {name}: ok' in summary for name in SECTIONS)

    env = sections['environment']['results']
    # Neither package was installed in the child: both came from this tree.
    assert env['imported_from'] == dict(vmamba_mm=osp.join(ROOT, 'vmamba_mm'),
                                        vmamba_kernels=osp.join(ROOT, 'kernels'))
    assert env['versions']['torch'] == torch.__version__ and env['triton_interpret']
    assert env['copy_bandwidth']['gbs'] > 0
    assert all(rate['tflops'] > 0 for rate in env['matmul'].values())

    correctness = sections['correctness']
    tolerances = correctness['results']['tolerances']
    for op in ('selective_scan', 'selective_scan_2d', 'cross_scan', 'cross_merge',
               'cross_selective_scan', 'cross_selective_scan_2d'):
        rows = correctness['results'][f'{op}/triton']
        assert {row['dtype'] for row in rows} == {'float32', 'bfloat16'}
        for row in rows:
            assert row['worst_forward'] <= tolerances[f'{row["dtype"]} forward']
            assert row['worst_gradient'] <= tolerances[f'{row["dtype"]} gradient']
            assert all(metrics['finite'] for metrics in row['errors'].values())
        # bf16 really rounded the inputs: the gradients differ from the float32 reference.
        assert [row for row in rows if row['dtype'] == 'bfloat16'][0]['worst_gradient'] > 0
    for op in ('selective_scan', 'cross_selective_scan'):
        assert 'no CUDA device' in correctness['results'][f'{op}/cuda']['skipped']
    assert correctness['checks'] and all(check['passed'] for check in correctness['checks'])

    for label, result in sections['model']['results'].items():
        if label == 'rule':
            continue
        assert result['scan_backends'] == ['triton']
        assert result['fp32']['max_scaled'] <= 1e-3 and result['top1_agreement_fp32'] == 1.0
        assert '--smoke' in result['bf16_autocast']['skipped']

    for step in ('inference', 'training'):
        profile = sections['profile']['results'][step]
        assert profile['total_ms'] > 0
        assert profile['by_kind_ms']['gemm/conv'] > 0 and profile['by_kind_ms']['scan'] > 0
        assert sum(profile['by_kind_ms'].values()) == pytest.approx(profile['total_ms'])

    throughput = sections['throughput']['results']
    for mode in ('inference bf16', 'inference tf32', 'training bf16', 'inference fp32'):
        models = throughput[mode]['models']
        assert {'VMamba (smoke arch)', 'torchvision swin_t'} <= set(models)
        assert all(m['ms_per_batch'] > 0 and m['img_per_s'] > 0 for m in models.values())
        ratio = throughput[mode]['ratios']['torchvision swin_t']
        assert ratio['ratio'] == pytest.approx(models['VMamba (smoke arch)']['img_per_s'] /
                                               models['torchvision swin_t']['img_per_s'])
        if importlib.util.find_spec('timm') is None:
            assert 'timm is not installed' in \
                throughput[mode]['ratios']['timm swin_tiny_patch4_window7_224']['skipped']

    scan = sections['scan_bandwidth']['results']
    # The smoke arch (VMamba-T's settings, dims 4) at batch 2, 32^2: stage i has 4 routes x 4 * 2^i
    # channels on an (8 / 2^i)^2 map, N = 1, one B/C group per route.
    assert [tuple(row['shape']) for row in scan['stages']] == [
        (2, 16, 64, 1, 4), (2, 32, 16, 1, 4), (2, 64, 4, 1, 4), (2, 128, 1, 1, 4)]
    stage1 = scan['stages'][0]
    # u, delta 2 * 2048 and B, C 2 * 512 elements at 2 bytes, y 2048 at 4, A, D, bias 16 * 3 * 4.
    assert stage1['forward']['bytes'] == (2 * 2048 + 2 * 512) * 2 + 2048 * 4 + 192
    assert all(row[k]['gbs'] > 0 and row[k]['share_of_copy'] > 0 for row in scan['stages']
               for k in ('forward', 'forward_backward'))
    roofline = scan['roofline']
    assert roofline['flop'] > 0 and roofline['traffic_bytes'] > 0 and roofline['floor_ms'] > 0
    assert roofline['measured_ms'] == \
        throughput['inference bf16']['models']['VMamba (smoke arch)']['ms_per_batch']

    compiled = sections['compiled']['results']
    assert compiled['setup']['variants'] == {'aot_eager': {'backend': 'aot_eager'}}
    variant = compiled['aot_eager']
    assert variant['compile_s'] > 0 and variant['ms_per_batch'] > 0
    assert variant['logits']['finite'] and variant['logits']['max_scaled'] <= 2e-2
    assert compiled['eager_ms_per_batch'] > 0


@pytest.mark.slow
def test_a_stalled_a_raising_and_a_failing_section_are_recorded(tmp_path):
    out = tmp_path / 'out'
    proc, report = _run(tmp_path, out, '--budget', '200', '--sections', 'environment',
                        'correctness', 'profile', 'scan_bandwidth',
                        faults='environment=stall,correctness=raise,profile=fail')
    sections = report['sections']
    assert list(sections) == ['environment', 'correctness', 'profile', 'scan_bandwidth']
    # The stalled section was killed by the main process; a fresh worker went on.
    assert sections['environment']['status'] == 'timeout'
    assert 'killed after' in sections['environment']['error']
    assert sections['correctness']['status'] == 'error'
    assert 'RuntimeError: forced failure of section' in sections['correctness']['error']
    # The failing check is recorded, and the section still measured everything.
    assert sections['profile']['status'] == 'failed'
    assert sections['profile']['results']['training']['total_ms'] > 0
    assert sections['scan_bandwidth']['status'] == 'ok'
    assert len(sections['scan_bandwidth']['results']['stages']) == 4
    assert report['failed_sections'] == ['environment', 'correctness']
    assert report['failed_checks'] == ['profile: forced failing check (GPU_CHECK_FAULTS)']
    assert proc.returncode == report['exit_code'] == 1
    summary = (out / 'summary.txt').read_text()
    assert '== environment: timeout' in summary and 'FAILED CHECKS:' in summary
