#!/usr/bin/env python
# Copyright (c) vmamba-mm contributors. Licensed under the Apache License 2.0.
"""One prepared GPU run: correctness of every GPU scan backend, the model on GPU against CPU, a
per-op profile, throughput against two Swin-Ts, and the scan's GB/s, each under a time budget.

Runs from a plain copy of the repository (no install; torch, and timm/torchvision for the
throughput comparison): ``vmamba_mm`` and ``vmamba_kernels`` (the ``kernels/`` folder) are
imported from the tree this script is in. Results stream into ``DIR/gpu_check.json`` (rewritten
after every section, so a killed run keeps what was done) and ``DIR/summary.txt``, and print as
they come.

Sections, each with a share of ``--budget`` seconds (a section that finishes early leaves its
time to the next; the later sections' shares are always kept):

1. environment: versions, device, SMs, memory; measured copy bandwidth and matrix rates (the
   ceilings for the GB/s and roofline figures);
2. correctness: every Triton and CUDA backend of every scan operation against its sequential
   reference, forward and every gradient, float32 and bfloat16 inputs;
3. model: VMamba-T and 2DVMamba-T logits on the GPU against the CPU, same weights and input;
4. profile: one inference and one training step of VMamba-T (bf16 autocast), time by kind;
5. throughput: VMamba-T against torchvision ``swin_t`` and timm ``swin_tiny_patch4_window7_224``,
   interleaved rounds, CUDA events, strict fp32 / TF32 / bf16 inference and bf16 training (fused
   AdamW), with the issue's targets;
6. scan bandwidth: the selective scan at VMamba-T's four stage shapes against the copy
   bandwidth, and VMamba-T's time against the roofline floor;
7. compiled: VMamba-T under ``torch.compile(fullgraph=True)`` with CUDA graphs alone, then with
   ``mode='reduce-overhead'`` (Inductor and CUDA graphs), bf16 inference, logits and time
   against eager. Last, as the Inductor compile may take the rest of the run.

Sections run in a worker process that the main process watches: one that overruns its budget is
killed and recorded as a timeout, one that dies or leaves the GPU unusable (a CUDA error) is
recorded with its error, and a fresh worker goes on with the next section.

Exit status: 0 all sections ran and every check passed; 1 a correctness check failed; 3 no check
failed but a section errored or timed out; 2 usage error (or no CUDA device without --smoke).

``--smoke`` runs every section on the CPU with a tiny VMamba and small shapes, the Triton kernels
under ``TRITON_INTERPRET=1``; CUDA-only parts are replaced by their CPU equivalents (perf_counter
for CUDA events) or recorded as skipped with the reason.

Example::

    python tools/analysis_tools/gpu_check.py --out work_dirs/gpu_check
    python tools/analysis_tools/gpu_check.py --out /tmp/gpu_check_smoke --smoke --budget 120
"""
import argparse
import collections
import contextlib
import importlib
import importlib.util
import json
import os
import os.path as osp
import platform
import shutil
import subprocess
import sys
import threading
import time
import traceback

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
# Share of --budget per section, in run order.
SECTION_SHARES = collections.OrderedDict([
    ('environment', 0.05), ('correctness', 0.26), ('model', 0.08), ('profile', 0.09),
    ('throughput', 0.33), ('scan_bandwidth', 0.09), ('compiled', 0.10)])
# Faults for testing the supervisor, e.g. GPU_CHECK_FAULTS='environment=stall,model=raise':
# raise: the section raises at its start; stall: it gets a 1 s budget and sleeps past it (the
# main process must kill it); fail: it records a failed check, then runs as usual.
FAULTS_ENV = 'GPU_CHECK_FAULTS'
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
# A worker that hit a CUDA error exits with this, so that a fresh one runs the next section.
EXIT_RESTART = 75
# How far past --budget a late run may go (each section keeps half its share): 480 + 60 s stays
# inside the device tool's 10 minutes a command.
OVERRUN_S = 60.0
FINISHED = ('ok', 'failed', 'error', 'timeout', 'skipped')
SCAN_RANGE = 'gpu_check::scan'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, metavar='DIR',
                        help='folder for gpu_check.json and summary.txt (created)')
    parser.add_argument('--smoke', action='store_true',
                        help='every section on the CPU with tiny shapes (Triton interpreted)')
    parser.add_argument('--budget', type=float, default=480.0, metavar='SECONDS',
                        help='wall-clock budget of the whole run, shared by the sections '
                        f'(default 480; a run made late by worker restarts may exceed it by '
                        f'{OVERRUN_S:.0f} s at most)')
    parser.add_argument('--sections', nargs='+', default=list(SECTION_SHARES),
                        metavar='NAME', help=f'sections to run, in order (default all: '
                        f'{" ".join(SECTION_SHARES)})')
    # Internal: the worker process the main process starts.
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--run-end', type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [name for name in args.sections if name not in SECTION_SHARES]
    if unknown:
        parser.error(f'unknown section(s) {unknown}; choose from {list(SECTION_SHARES)}')
    if len(set(args.sections)) != len(args.sections):
        parser.error(f'--sections names a section twice: {args.sections}')
    if args.budget <= 0:
        parser.error(f'--budget must be positive seconds, got {args.budget}')
    faults = os.environ.get(FAULTS_ENV, '')
    for item in filter(None, faults.split(',')):
        name, _, kind = item.partition('=')
        if name not in SECTION_SHARES or kind not in ('raise', 'stall', 'fail'):
            parser.error(f"{FAULTS_ENV}={faults!r}: each item is SECTION=raise, SECTION=stall "
                         f"or SECTION=fail with SECTION one of {list(SECTION_SHARES)}")
    return args


# ================================================================ files shared by both processes

def write_json(path, data):
    """Write atomically: a reader (or a kill) never sees half a file."""
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


def parts_dir(out):
    return osp.join(out, 'parts')


def read_part(out, name):
    path = osp.join(parts_dir(out), f'{name}.json')
    if not osp.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def section_deadline(now, run_end, budget, name, later_sections):
    """Hard deadline of section ``name`` starting ``now``: all the time up to what the later
    sections' shares need (so time an earlier section left goes to this one), but at least half
    its own share (were the run late, say after worker restarts), and never more than
    ``OVERRUN_S`` past the run's end."""
    reserved = budget * sum(SECTION_SHARES[later] for later in later_sections)
    return min(max(now + 0.5 * budget * SECTION_SHARES[name], run_end - reserved),
               run_end + OVERRUN_S)


# ======================================================================== the main process

def supervise(args):
    out = osp.abspath(args.out)
    try:
        os.makedirs(parts_dir(out), exist_ok=True)
    except OSError as exc:
        print(f'error: cannot create the --out folder {out}: {exc}', file=sys.stderr)
        return EXIT_USAGE
    for name in SECTION_SHARES:  # a previous run's parts would be mistaken for this run's
        stale = osp.join(parts_dir(out), f'{name}.json')
        if osp.exists(stale):
            os.remove(stale)
    started = time.time()
    run_end = started + args.budget
    meta = dict(command=' '.join([osp.relpath(__file__, ROOT)] + sys.argv[1:]),
                smoke=args.smoke, budget_s=args.budget, started=time.strftime(
                    '%Y-%m-%d %H:%M:%S', time.localtime(started)),
                sections=args.sections,
                shares={name: SECTION_SHARES[name] for name in args.sections},
                faults=os.environ.get(FAULTS_ENV) or None)
    report = dict(meta=meta, sections={}, status='running')
    flush_report(out, report)
    pending = list(args.sections)

    def collect():
        """Move the sections the worker has finished, in order, into the report."""
        while pending:
            part = read_part(out, pending[0])
            if part is None or part['status'] not in FINISHED:
                return
            name = pending.pop(0)
            report['sections'][name] = part
            flush_report(out, report)
            print(f'== {name}: {part["status"]} ({part.get("elapsed_s", 0):.1f} s)', flush=True)

    while pending:
        exit_code, tail = run_worker(args, out, pending, run_end, collect)
        collect()
        if not pending:
            break
        part = read_part(out, pending[0])
        if part is None and exit_code == EXIT_RESTART:
            continue  # it left after a CUDA error in the section before: a fresh worker goes on
        if part is None and exit_code == EXIT_USAGE and not report['sections']:
            report['status'], report['exit_code'] = 'usage error', EXIT_USAGE
            report['error'] = '\n'.join(tail)
            flush_report(out, report)
            return EXIT_USAGE
        last_output = '; its last output:\n' + '\n'.join(tail)
        if part is None:  # the worker died before starting it: recorded, so the loop goes on
            part = dict(name=pending[0], status='error', started=time.time(), results={},
                        checks=[], lines=[], error=f'the worker exited with code {exit_code} '
                        f'before this section started{last_output}')
        elif part.get('killed'):
            part['status'] = 'timeout'
        else:
            part['status'] = 'error'
            part['error'] = (f'the worker process exited with code {exit_code} during this '
                             f'section{last_output}')
        part['elapsed_s'] = time.time() - part['started']
        write_json(osp.join(parts_dir(out), f'{part["name"]}.json'), part)
        collect()
    statuses = [part['status'] for part in report['sections'].values()]
    failed_checks = [f'{name}: {check["name"]}' for name, part in report['sections'].items()
                     for check in part.get('checks', []) if not check['passed']]
    report['failed_checks'] = failed_checks
    report['failed_sections'] = [name for name, part in report['sections'].items()
                                 if part['status'] in ('error', 'timeout')]
    report['elapsed_s'] = time.time() - started
    if failed_checks:
        report['status'], code = 'check failed', EXIT_CHECK_FAILED
    elif any(status in ('error', 'timeout') for status in statuses):
        report['status'], code = 'incomplete', EXIT_INCOMPLETE
    else:
        report['status'], code = 'ok', EXIT_OK
    report['exit_code'] = code
    flush_report(out, report)
    print(f'gpu_check: {report["status"]} in {report["elapsed_s"]:.0f} s; '
          f'{len(failed_checks)} failed check(s); see {osp.join(out, "summary.txt")}',
          flush=True)
    return code


def run_worker(args, out, sections, run_end, on_poll):
    """Run ``sections`` in a worker, echoing its output and calling ``on_poll`` as it goes; kill
    it when the running section is past its deadline. Returns (exit code, its last lines)."""
    # The worker sees what this process sees: the same interpreter flags (-S: no site-packages)
    # and environment.
    flags = [flag for flag, on in (('-S', sys.flags.no_site), ('-I', sys.flags.isolated),
                                   ('-E', sys.flags.ignore_environment)) if on]
    command = [sys.executable, *flags, osp.abspath(__file__), '--worker', '--out', out, '--budget',
               str(args.budget), '--run-end', repr(run_end), '--sections', *sections]
    if args.smoke:
        command.append('--smoke')
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    tail = collections.deque(maxlen=40)

    def echo():
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line.rstrip('\n'))

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    while proc.poll() is None:
        time.sleep(0.2)
        on_poll()
        running = [part for part in (read_part(out, name) for name in sections)
                   if part is not None and part['status'] == 'running']
        if running and time.time() > running[0]['deadline']:
            part = running[0]
            os.killpg(proc.pid, 9)
            proc.wait()
            part['killed'] = True
            part['error'] = (f'killed after {time.time() - part["started"]:.1f} s: past its '
                             f'budget of {part["deadline"] - part["started"]:.1f} s')
            write_json(osp.join(parts_dir(out), f'{part["name"]}.json'), part)
    reader.join(timeout=5)
    return proc.returncode, list(tail)


def flush_report(out, report):
    write_json(osp.join(out, 'gpu_check.json'), report)
    with open(osp.join(out, 'summary.txt'), 'w') as f:
        f.write(format_summary(report))


def format_summary(report):
    meta = report['meta']
    lines = [f'gpu_check {"--smoke " if meta["smoke"] else ""}started {meta["started"]}, budget '
             f'{meta["budget_s"]:.0f} s; status: {report["status"]}']
    if report.get('error'):
        lines.append(report['error'])
    for name, part in report['sections'].items():
        lines.append('')
        lines.append(f'== {name}: {part["status"]} ({part.get("elapsed_s", 0):.1f} s of '
                     f'{part.get("budget_s", 0):.0f})')
        lines.extend('  ' + line for line in part.get('lines', []))
        if part.get('error'):
            lines.extend('  ! ' + line for line in part['error'].rstrip().splitlines()[-15:])
    if report.get('failed_checks'):
        lines.append('')
        lines.append('FAILED CHECKS:')
        lines.extend('  ' + check for check in report['failed_checks'])
    return '\n'.join(lines) + '\n'


# =============================================================================== the worker

def make_repo_importable():
    """``vmamba_mm`` from this tree, and this tree's ``kernels/`` as ``vmamba_kernels`` when no
    installed package points at it (a plain copy has no install)."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    if 'vmamba_kernels' in sys.modules:
        return
    init = osp.join(ROOT, 'kernels', '__init__.py')
    spec = importlib.util.find_spec('vmamba_kernels')
    if spec is not None and spec.origin and osp.samefile(spec.origin, init):
        return
    spec = importlib.util.spec_from_file_location(
        'vmamba_kernels', init, submodule_search_locations=[osp.dirname(init)])
    module = importlib.util.module_from_spec(spec)
    sys.modules['vmamba_kernels'] = module
    spec.loader.exec_module(module)


class SectionTimeout(Exception):
    """The section's budget is spent; what it measured so far is kept."""


class Section:
    """One section's record, saved to DIR/parts/NAME.json after every step."""

    def __init__(self, name, out, deadline, margin):
        self.name, self.out = name, out
        now = time.time()
        self.soft_deadline = deadline - margin
        self.record = dict(name=name, status='running', started=now, deadline=deadline,
                           budget_s=deadline - now, results={}, checks=[], lines=[])
        self.save()

    @property
    def results(self):
        return self.record['results']

    def remaining(self):
        return self.soft_deadline - time.time()

    def require(self, seconds, what):
        """Stop the section (a timeout) unless ``seconds`` are left for ``what``."""
        if self.remaining() < seconds:
            raise SectionTimeout(f'out of budget before {what} ({self.remaining():.1f} s left, '
                                 f'{seconds:.1f} s needed)')

    def note(self, line):
        print(f'[{self.name}] {line}', flush=True)
        self.record['lines'].append(line)
        self.save()

    def check(self, name, passed, **figures):
        self.record['checks'].append(dict(name=name, passed=bool(passed), **figures))
        self.save()
        return passed

    def save(self):
        write_json(osp.join(parts_dir(self.out), f'{self.name}.json'), self.record)

    def finish(self, status, error=None):
        self.record['status'] = status
        self.record['elapsed_s'] = time.time() - self.record['started']
        if error:
            self.record['error'] = error
        self.save()


class Context:
    """What every section needs: the device, the sizes, the models' builders."""

    def __init__(self, args):
        import torch
        self.args, self.out, self.smoke = args, osp.abspath(args.out), args.smoke
        self.device = 'cpu' if args.smoke else 'cuda'
        self.torch = torch
        from vmamba_mm.models import ARCH_SETTINGS
        if self.smoke:
            # VMamba-T's settings, one block per stage and 4 channels: every layer kind, tiny.
            self.arch = dict(ARCH_SETTINGS['tiny-s1l8'], depths=[1, 1, 1, 1], dims=4)
            self.arch_2d = dict(self.arch, scan_2d=True)
            self.arch_label, self.arch_2d_label = 'VMamba (smoke arch)', '2DVMamba (smoke arch)'
            self.batch, self.image, self.model_check = 2, 32, dict(batch=1, image=32)
            self.num_classes = 10
        else:
            self.arch, self.arch_2d = 'tiny-s1l8', '2dvmamba-tiny'
            self.arch_label, self.arch_2d_label = 'VMamba-T', '2DVMamba-T'
            self.batch, self.image, self.model_check = 128, 224, dict(batch=2, image=224)
            self.num_classes = 1000
        # The GPU side runs the automatic choice (Triton, else CUDA C++); under --smoke the Triton
        # kernels, interpreted. The CPU side is the vectorised 'torch' backend: it needs no
        # compiled extension (the 'cpp' one would be built on first use).
        self.device_backend = 'triton' if self.smoke else None
        self.references = {}  # the correctness section's reference results, by case
        self.perf_backend = 'torch' if self.smoke else None

    def part(self, name):
        return read_part(self.out, name)


def worker(args):
    if args.smoke:
        # Triton reads this when it is imported: its kernels then run on CPU tensors.
        os.environ['TRITON_INTERPRET'] = '1'
    make_repo_importable()
    import torch
    if not args.smoke and not torch.cuda.is_available():
        print('error: no CUDA device is visible to torch; run with --smoke to check the script '
              'on the CPU', file=sys.stderr, flush=True)
        return EXIT_USAGE
    if not args.smoke:
        # Build the CUDA C++ kernel for this GPU alone (half the time of the default two).
        major, minor = torch.cuda.get_device_capability()
        os.environ.setdefault('TORCH_CUDA_ARCH_LIST', f'{major}.{minor}')
    ctx = Context(args)
    faults = dict(item.partition('=')[::2] for item in
                  filter(None, os.environ.get(FAULTS_ENV, '').split(',')))
    for index, name in enumerate(args.sections):
        now = time.time()
        deadline = section_deadline(now, args.run_end, args.budget, name,
                                    args.sections[index + 1:])
        if faults.get(name) == 'stall':
            deadline = now + 1.0
        margin = min(10.0, max(0.0, 0.15 * (deadline - now)))
        section = Section(name, ctx.out, deadline, margin)
        try:
            if faults.get(name) == 'raise':
                raise RuntimeError(f'forced failure of section {name!r} ({FAULTS_ENV})')
            if faults.get(name) == 'stall':
                time.sleep(600)  # ignores its budget: the main process kills it
            if faults.get(name) == 'fail':
                section.check(f'forced failing check ({FAULTS_ENV})', False)
            SECTIONS[name](ctx, section)
        except SectionTimeout as exc:
            section.finish('timeout', str(exc))
            continue
        except Exception as exc:  # recorded with its traceback; the next section still runs
            section.finish('error', ''.join(traceback.format_exception(exc)))
            if ctx.device == 'cuda' and cuda_unusable(torch):
                return EXIT_RESTART
            continue
        failed = any(not check['passed'] for check in section.record['checks'])
        section.finish('failed' if failed else 'ok')
    return 0


def cuda_unusable(torch):
    """After an error: is the CUDA context still good (an illegal access poisons it)?"""
    try:
        torch.cuda.synchronize()
        torch.ones(1, device='cuda').add_(1).item()
    except RuntimeError:
        return True
    return False


# ============================================================================== the sections

def section_environment(ctx, sec):
    torch = ctx.torch
    from vmamba_mm.analysis import device_check
    import vmamba_kernels
    import vmamba_mm
    from vmamba_kernels import dispatch
    versions = dict(python=platform.python_version(), torch=torch.__version__,
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    for name in ('triton', 'torchvision', 'timm', 'numpy'):
        versions[name] = (importlib.import_module(name).__version__
                          if importlib.util.find_spec(name) else 'not installed')
    sec.results['versions'] = versions
    sec.results['imported_from'] = dict(vmamba_mm=osp.dirname(vmamba_mm.__file__),
                                        vmamba_kernels=osp.dirname(vmamba_kernels.__file__))
    sec.results['triton_interpret'] = os.environ.get('TRITON_INTERPRET') == '1'
    sec.results['torch_cuda_arch_list'] = os.environ.get('TORCH_CUDA_ARCH_LIST')
    sec.note('versions: ' + ', '.join(f'{k} {v}' for k, v in versions.items()))
    if ctx.device == 'cuda':
        props = torch.cuda.get_device_properties(0)
        device = dict(name=props.name, capability=f'{props.major}.{props.minor}',
                      sms=props.multi_processor_count, memory_gib=props.total_memory / 2**30,
                      l2_mib=getattr(props, 'L2_cache_size', 0) / 2**20)
        smi = subprocess.run(['nvidia-smi', '--query-gpu=driver_version,clocks.sm,clocks.mem,'
                              'power.draw', '--format=csv,noheader'], capture_output=True,
                             text=True, timeout=20) if shutil.which('nvidia-smi') else None
        device['nvidia_smi'] = smi.stdout.strip() if smi is not None else 'not found'
        copy_bytes, matmul_size = 2 * 2**30, 8192
    else:
        device = dict(name=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                      threads=torch.get_num_threads())
        copy_bytes, matmul_size = 64 * 2**20, 256
    sec.results['device'] = device
    sec.note('device: ' + ', '.join(f'{k} {v}' for k, v in device.items()))
    # Which scan backends exist here; the CUDA C++ one is built (minutes) in the correctness
    # section, not here, so it is only listed.
    sec.results['backends'] = {op: dispatch.backends_of(op) for op in dispatch.operations()}
    sec.require(2, 'the copy bandwidth')
    copy = device_check.copy_bandwidth_gbs(ctx.device, copy_bytes)
    sec.results['copy_bandwidth'] = copy
    sec.note(f'copy bandwidth {copy["gbs"]:.4g} GB/s (read + write of {copy_bytes / 2**20:.0f} '
             f'MiB, {copy["ms"]:.3f} ms)')
    rates = {}
    for label, dtype, tf32 in (('bf16', torch.bfloat16, False), ('tf32', torch.float32, True),
                               ('fp32', torch.float32, False)):
        sec.require(2, f'the {label} matrix rate')
        rates[label] = device_check.matmul_tflops(ctx.device, matmul_size, dtype, tf32)
        sec.results['matmul'] = rates
        sec.note(f'matrix product {label} {matmul_size}^3: {rates[label]["tflops"]:.4g} TFLOP/s')


# ------------------------------------------------------------------------------ correctness

def section_correctness(ctx, sec):
    torch = ctx.torch
    from vmamba_kernels import dispatch
    from vmamba_mm.analysis.backend_check import GPU_BACKENDS, TOLERANCES, correctness_cases
    from vmamba_mm.analysis.device_check import compare, within
    sec.results['tolerances'] = {f'{d} {k}': v for (d, k), v in TOLERANCES.items()}
    sec.results['reference'] = ("the 'reference' backend (sequential) on the CPU in float32, "
                                'on the same (rounded) inputs')
    cases = correctness_cases(ctx.smoke)
    # Triton first: the CUDA C++ backend is built on first use, which can take minutes.
    for backend in GPU_BACKENDS:
        for op in sorted({case[0] for case in cases}):
            if backend not in dispatch.backends_of(op):
                continue
            key = f'{op}/{backend}'
            sec.require(3, f'{key}')
            began = time.time()
            described = dispatch.describe(op, backend)
            reason = described.unavailable_reason
            if reason is None and ctx.device not in described.devices:
                reason = f'it runs on {list(described.devices)} only'
            if reason is not None:
                sec.results[key] = dict(skipped=reason)
                sec.note(f'{key}: skipped ({reason})')
                continue
            if time.time() - began > 5:
                sec.note(f'{key}: ready after {time.time() - began:.0f} s (built on first use)')
            rows = sec.results[key] = []
            for case_op, label, shape in cases:
                if case_op != op:
                    continue
                for dtype in (torch.float32, torch.bfloat16):
                    sec.require(2, f'{key} {label} {dtype}')
                    rows.append(check_one_case(ctx, sec, op, backend, label, shape, dtype,
                                               compare, within))


def check_one_case(ctx, sec, op, backend, label, shape, dtype, compare, within):
    torch = ctx.torch
    from vmamba_mm.analysis.backend_check import (TOLERANCES, make_case_inputs, run_case,
                                                  strict_fp32)
    dtype_name = str(dtype).replace('torch.', '')
    fused_core = op.startswith('cross_selective_scan')
    tensors, kwargs = make_case_inputs(op, shape, dtype, seed=len(label) + shape[0])
    # The reference sees the rounded values, in float32; the fused cores in bf16 run as in the
    # model, under autocast, with float32 weights.
    reference_inputs = {name: t.float() for name, t in tensors.items()}
    autocast = dtype if (fused_core and dtype != torch.float32) else None
    began = time.time()
    with strict_fp32():
        # The same inputs for every backend: the sequential reference runs once per case.
        key = (op, label, dtype_name)
        if key not in ctx.references:
            ctx.references[key] = run_case(op, reference_inputs, kwargs, 'reference',
                                           'cpu', grad_seed=1)
        ref_out, ref_grads = ctx.references[key]
        no_grad_out, _ = run_case(op, tensors, kwargs, backend, ctx.device, None,
                                  autocast)
        out, grads = run_case(op, tensors, kwargs, backend, ctx.device, 1, autocast)
    forward_tol = TOLERANCES[(dtype_name, 'forward')]
    gradient_tol = TOLERANCES[(dtype_name, 'gradient')]
    errors = {'forward (no grad)': compare(no_grad_out.float(), ref_out),
              'forward (autograd)': compare(out.float(), ref_out)}
    for name, ref_grad in ref_grads.items():
        grad = grads.get(name)
        if ref_grad is None:
            continue
        if grad is None:
            errors[f'd{name}'] = dict(max_scaled=float('inf'), rel_norm=float('inf'),
                                      finite=False, missing=True)
        else:
            errors[f'd{name}'] = compare(grad.float(), ref_grad)
    failing = []
    for name, metrics in errors.items():
        tolerance = forward_tol if name.startswith('forward') else gradient_tol
        metrics['tolerance'] = tolerance
        metrics['passed'] = within(metrics, tolerance)
        if not metrics['passed']:
            failing.append(f'{name} {metrics["max_scaled"]:.2e} > {tolerance:.0e}')
    worst_forward = max(m['max_scaled'] for n, m in errors.items() if n.startswith('forward'))
    worst_gradient = max([m['max_scaled'] for n, m in errors.items()
                          if not n.startswith('forward')] or [0.0])
    row = dict(case=label, dtype=dtype_name, autocast=autocast is not None,
               seconds=time.time() - began, errors=errors, worst_forward=worst_forward,
               worst_gradient=worst_gradient)
    sec.check(f'{op}/{backend} {label} {dtype_name}', not failing, worst_forward=worst_forward,
              worst_gradient=worst_gradient, failing=failing)
    sec.note(f'{op}/{backend} {label} {dtype_name}: forward {worst_forward:.1e} (tol '
             f'{forward_tol:.0e}), gradients {worst_gradient:.1e} (tol {gradient_tol:.0e})'
             f'{"" if not failing else "  FAILED: " + "; ".join(failing)}')
    return row


# ------------------------------------------------------------------------------- the model

def build_vmamba(ctx, arch, backend, num_classes=None):
    import vmamba_mm
    return vmamba_mm.create_model(arch, num_classes=num_classes or ctx.num_classes,
                                  scan_backend=backend)


def section_model(ctx, sec):
    torch = ctx.torch
    from vmamba_mm.analysis.backend_check import strict_fp32
    from vmamba_mm.analysis.device_check import compare, within
    batch, image = ctx.model_check['batch'], ctx.model_check['image']
    tolerance = 1e-3
    sec.results['rule'] = (f'logits on {ctx.device} (strict fp32: no TF32) against the CPU with '
                           f"the 'torch' scan backend; pass: max scaled error <= {tolerance:g}. "
                           'bf16 autocast is reported, not judged.')
    for label, arch in ((ctx.arch_label, ctx.arch), (ctx.arch_2d_label, ctx.arch_2d)):
        sec.require(5, label)
        torch.manual_seed(0)
        cpu_model = build_vmamba(ctx, arch, 'torch').eval()
        device_model = build_vmamba(ctx, arch, ctx.device_backend)
        device_model.load_state_dict(cpu_model.state_dict())
        device_model = device_model.to(ctx.device).eval()
        x = torch.randn(batch, 3, image, image, generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            expected = cpu_model(x)
            with strict_fp32():
                got = device_model(x.to(ctx.device))
            # Under --smoke a second interpreted forward would double the section's time; the
            # bf16 autocast path of the scan cores is checked in the correctness section.
            got_bf16 = None
            if not ctx.smoke:
                with torch.autocast(torch.device(ctx.device).type, dtype=torch.bfloat16):
                    got_bf16 = device_model(x.to(ctx.device))
        from vmamba_mm.models import TokenMixer
        backends = sorted({b for m in device_model.modules() if isinstance(m, TokenMixer)
                           for b in m.scan_backends().values()})
        fp32 = compare(got.float(), expected)
        bf16 = (compare(got_bf16.float(), expected) if got_bf16 is not None else
                dict(skipped='not run under --smoke (a second interpreted forward)'))
        top1 = (got.float().cpu().argmax(-1) == expected.argmax(-1)).float().mean().item()
        sec.results[label] = dict(input=[batch, 3, image, image], scan_backends=backends,
                                  fp32=fp32, bf16_autocast=bf16, top1_agreement_fp32=top1)
        sec.check(f'{label} logits fp32', within(fp32, tolerance),
                  max_scaled=fp32['max_scaled'], tolerance=tolerance)
        sec.note(f'{label} ({"/".join(backends)}) {ctx.device} vs cpu, batch {batch} {image}^2: '
                 f'fp32 max scaled {fp32["max_scaled"]:.1e} (tol {tolerance:g}), rel '
                 f'{fp32["rel_norm"]:.1e}, top-1 agree {top1:.0%}; bf16 autocast ' +
                 (f'rel {bf16["rel_norm"]:.1e}' if 'rel_norm' in bf16 else bf16['skipped']))


# ------------------------------------------------------------------------------ the profile

def training_step(torch, model, optimizer, x, labels, device_type):
    with torch.autocast(device_type, dtype=torch.bfloat16):
        logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def section_profile(ctx, sec):
    torch = ctx.torch
    from vmamba_mm.analysis.device_check import profile_scan_cores, synchronize, time_by_kind
    device_type = torch.device(ctx.device).type
    model = build_vmamba(ctx, ctx.arch, ctx.perf_backend).to(ctx.device)
    profile_scan_cores(model, SCAN_RANGE)
    x = torch.randn(ctx.batch, 3, ctx.image, ctx.image, device=ctx.device)
    labels = torch.randint(0, ctx.num_classes, (ctx.batch, ), device=ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device_type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)

    def inference():
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16):
            model.eval()(x)

    def training():
        training_step(torch, model.train(), optimizer, x, labels, device_type)

    sec.results['setup'] = dict(model=ctx.arch_label, batch=ctx.batch, image=ctx.image,
                                precision='bf16 autocast', optimizer='AdamW(fused=True)',
                                time=('CUDA kernel time' if device_type == 'cuda' else
                                      'CPU operator self time'))
    for label, step in (('inference', inference), ('training', training)):
        sec.require(5, f'the {label} profile')
        for _ in range(2):  # warm-up: kernel compilation, cuDNN/cuBLAS handles, allocator
            step()
        synchronize(ctx.device)
        with torch.profiler.profile(activities=activities) as prof:
            step()
            synchronize(ctx.device)
        summary = time_by_kind(prof.events(), SCAN_RANGE, device_type)
        sec.results[label] = summary
        total = summary['total_ms']
        shares = ', '.join(f'{kind} {ms:.1f} ms ({ms / total:.0%})'
                           for kind, ms in summary['by_kind_ms'].items() if ms > 0)
        sec.note(f'{label} step, batch {ctx.batch}: {total:.1f} ms: {shares}')
        for entry in summary['top'][:5]:
            sec.note(f'   {entry["ms"]:8.2f} ms x{entry["calls"]:<4d} {entry["kind"]:13s} '
                     f'{entry["name"][:90]}')


# --------------------------------------------------------------------------- throughput

PRECISIONS = ('fp32', 'tf32', 'bf16')
# (mode, precision, VMamba-T / torchvision swin_t target, VMamba-T / timm swin_tiny target)
# The modes with targets first: a short budget cuts strict fp32, not them.
MODES = (('inference', 'bf16', 1.5, 1.2), ('inference', 'tf32', 1.5, 1.2),
         ('training', 'bf16', 1.0, 1.0), ('inference', 'fp32', None, None))
TV_SWIN, TIMM_SWIN = 'torchvision swin_t', 'timm swin_tiny_patch4_window7_224'


@contextlib.contextmanager
def precision(torch, name, device_type):
    """fp32: no TF32 (matmul and cuDNN); tf32: TF32 allowed for both; bf16: bf16 autocast, TF32
    off for what stays in float32. The same for every model."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tf32 = name == 'tf32'
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    autocast = (torch.autocast(device_type, dtype=torch.bfloat16) if name == 'bf16' else
                contextlib.nullcontext())
    try:
        with autocast:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def build_comparison_models(ctx):
    """{label: model or the reason it cannot be built here}."""
    import vmamba_mm  # noqa: F401
    models = {ctx.arch_label: build_vmamba(ctx, ctx.arch, ctx.perf_backend)}
    if importlib.util.find_spec('torchvision') is None:
        models[TV_SWIN] = 'skipped: torchvision is not installed'
    else:
        from torchvision.models import swin_t
        from torchvision.models.swin_transformer import SwinTransformer
        models[TV_SWIN] = (SwinTransformer([4, 4], 8, [1, 1, 1, 1], [1, 1, 1, 1], [4, 4],
                                           num_classes=ctx.num_classes)
                           if ctx.smoke else swin_t())
    if importlib.util.find_spec('timm') is None:
        models[TIMM_SWIN] = 'skipped: timm is not installed'
    else:
        import timm
        extra = (dict(img_size=ctx.image, embed_dim=8, depths=(1, 1, 1, 1),
                      num_heads=(1, 1, 1, 1), window_size=4, num_classes=ctx.num_classes)
                 if ctx.smoke else {})
        models[TIMM_SWIN] = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                                              **extra)
    return {label: (m.to(ctx.device) if not isinstance(m, str) else m)
            for label, m in models.items()}


def section_throughput(ctx, sec):
    torch = ctx.torch
    from vmamba_mm.analysis.device_check import synchronize, time_ms
    device_type = torch.device(ctx.device).type
    models = build_comparison_models(ctx)
    runnable = {label: m for label, m in models.items() if not isinstance(m, str)}
    for label, m in models.items():
        if isinstance(m, str):
            sec.note(f'{label}: {m}')
    x = torch.randn(ctx.batch, 3, ctx.image, ctx.image, device=ctx.device)
    labels = torch.randint(0, ctx.num_classes, (ctx.batch, ), device=ctx.device)
    optimizers = {}
    rounds, warmup = (2, 1) if ctx.smoke else (5, 3)
    sec.results['setup'] = dict(
        batch=ctx.batch, image=ctx.image, rounds=rounds,
        timing='CUDA events' if device_type == 'cuda' else 'perf_counter',
        models={label: (m if isinstance(m, str) else
                        f'{sum(p.numel() for p in m.parameters()) / 1e6:.2f}M parameters')
                for label, m in models.items()},
        note=None if device_type == 'cuda' else 'TF32 flags have no effect on the CPU')
    for index, (mode, prec, tv_target, timm_target) in enumerate(MODES):
        key = f'{mode} {prec}'
        share = sec.remaining() / (len(MODES) - index)
        sec.require(2, key)

        def step_for(label, model, mode=mode, prec=prec):
            if mode == 'inference':
                model.eval()

                def run_step():
                    with torch.inference_mode(), precision(torch, prec, device_type):
                        model(x)
            else:
                model.train()
                if label not in optimizers:
                    optimizers[label] = torch.optim.AdamW(model.parameters(), lr=1e-4,
                                                          fused=True)

                def run_step():
                    training_step(torch, model, optimizers[label], x, labels, device_type)
            return run_step

        steps = {label: step_for(label, m) for label, m in runnable.items()}
        single = {}
        for label, step in steps.items():
            for _ in range(warmup):  # kernel compilation, autotuning, the allocator's pools
                step()
            synchronize(ctx.device)
            single[label] = max(time_ms(step, ctx.device), 1e-3) / 1e3
        # About a second per model and round (one step under --smoke), and as many rounds as
        # this mode's share of what is left allows.
        per_step = sum(single.values())
        iters = 1 if ctx.smoke else max(1, min(20, int(1.0 / max(single.values()))))
        fitted_rounds = max(1, min(rounds, int(share * 0.8 / (iters * per_step))))
        times = {label: [] for label in steps}
        peaks = {label: 0 for label in steps}
        for done in range(fitted_rounds):
            if done and sec.remaining() < iters * per_step:
                break  # fewer rounds than planned; each model has the same number
            for label, step in steps.items():
                sec.require(iters * single[label], f'{key} {label}')
                if device_type == 'cuda':
                    torch.cuda.synchronize()
                    base = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                times[label].append(time_ms(step, ctx.device, iters))
                if device_type == 'cuda':
                    peaks[label] = max(peaks[label], torch.cuda.max_memory_allocated() - base)
        entry = dict(iters_per_round=iters, rounds=len(times[ctx.arch_label]), models={})
        for label in steps:
            ms = sorted(times[label])[len(times[label]) // 2]
            entry['models'][label] = dict(
                ms_per_batch=ms, img_per_s=ctx.batch / (ms / 1e3), rounds_ms=times[label],
                peak_mib_above_resident=(peaks[label] / 2**20 if device_type == 'cuda'
                                         else None))
        ours = entry['models'][ctx.arch_label]['img_per_s']
        ratios = {}
        for other, target in ((TV_SWIN, tv_target), (TIMM_SWIN, timm_target)):
            if other not in entry['models']:
                ratios[other] = dict(skipped=models[other])
                continue
            ratio = ours / entry['models'][other]['img_per_s']
            ratios[other] = dict(ratio=ratio, target=target,
                                 met=None if target is None else ratio >= target)
        entry['ratios'] = ratios
        sec.results[key] = entry
        parts = []
        for label, figures in entry['models'].items():
            memory = (f', +{figures["peak_mib_above_resident"]:.0f} MiB'
                      if figures['peak_mib_above_resident'] is not None else '')
            parts.append(f'{label} {figures["img_per_s"]:.4g} img/s ({figures["ms_per_batch"]:.4g} '
                         f'ms){memory}')
        sec.note(f'{key} (batch {ctx.batch}, {ctx.image}^2): ' + '; '.join(parts))
        for other, r in ratios.items():
            if 'skipped' in r:
                sec.note(f'   vs {other}: {r["skipped"]}')
            else:
                verdict = ('' if r['target'] is None else
                           f' (target >= {r["target"]}x: {"met" if r["met"] else "NOT met"})')
                sec.note(f'   vs {other}: {r["ratio"]:.2f}x{verdict}')


# ------------------------------------------------------------------------ scan bandwidth

def stage_scan_shapes(ctx):
    """(stage, batch, dim, L, N, groups) of the selective scan in each stage of the model: dim =
    4 routes x the stage's SSM channels, L its map's pixels, one B/C group per route."""
    from vmamba_kernels import NUM_ROUTES
    from vmamba_mm.models import resolve_arch
    settings = resolve_arch(ctx.arch)
    shapes = []
    for stage, channels in enumerate(settings['dims']):
        side = ctx.image // settings['patch_size'] // 2**stage
        inner = int(settings['ssm_ratio'] * channels)
        shapes.append((stage + 1, ctx.batch, NUM_ROUTES * inner, side * side,
                       settings['ssm_d_state'], NUM_ROUTES))
    return shapes


def time_bandwidth(ctx, row, forward, forward_backward, nbytes, copy_gbs, warmup, repeats):
    """Times both calls into ``row`` (ms, bytes, GB/s, share of the copy bandwidth); returns
    them as the note's text."""
    from vmamba_mm.analysis.device_check import median_ms
    for fn, key in ((forward, 'forward'), (forward_backward, 'forward_backward')):
        ms = median_ms(fn, ctx.device, warmup=warmup, repeats=repeats)
        gbs = nbytes[key] / (ms * 1e-3) / 1e9
        row[key] = dict(ms=ms, bytes=nbytes[key], gbs=gbs,
                        share_of_copy=gbs / copy_gbs if copy_gbs else None)
    return '; '.join(f'{label} {row[k]["ms"]:.3g} ms {row[k]["gbs"]:.4g} GB/s' +
                     (f' ({row[k]["share_of_copy"]:.0%} of copy)' if copy_gbs else '')
                     for label, k in (('fwd', 'forward'), ('fwd+bwd', 'forward_backward')))


def section_scan_bandwidth(ctx, sec):
    torch = ctx.torch
    import vmamba_kernels
    from vmamba_mm.analysis.device_check import scan_bytes
    environment = ctx.part('environment') or {}
    copy_gbs = environment.get('results', {}).get('copy_bandwidth', {}).get('gbs')
    dtype = torch.bfloat16
    if ctx.smoke:
        # The scan's Triton kernels are checked in the correctness section; interpreted, their
        # times mean nothing, and at these shapes they take a minute.
        backends = ['torch']
        warmup, repeats = 1, 3
    else:
        # The CUDA C++ kernel only if the correctness section built it: a build killed there can
        # leave its lock behind, and a second build would wait on it.
        from vmamba_mm.analysis.backend_check import GPU_BACKENDS
        correctness = (ctx.part('correctness') or {}).get('results', {})
        backends = [b for b in GPU_BACKENDS if isinstance(correctness.get(f'selective_scan/{b}'),
                                                          list)]
        if not backends:
            backends = ['triton']
        warmup, repeats = 2, 5
    sec.results['setup'] = dict(
        dtype='bfloat16 u, delta, B, C; float32 y', backends=backends, copy_gbs=copy_gbs,
        bytes_rule=scan_bytes.__doc__.split('\n\n')[1].strip().replace('\n', ' '),
        shapes='(stage, batch, dim, L, N, groups)')
    if copy_gbs is None:
        sec.note('no copy bandwidth from the environment section: GB/s only, no share')
    rows = sec.results['stages'] = []
    for stage, batch, dim, length, state, groups in stage_scan_shapes(ctx):
        gen = torch.Generator().manual_seed(stage)
        u = torch.randn(batch, dim, length, generator=gen).to(ctx.device, dtype)
        delta = (torch.randn(batch, dim, length, generator=gen) * 0.5).to(ctx.device, dtype)
        A = (-torch.rand(dim, state, generator=gen) - 0.1).to(ctx.device)
        B = torch.randn(batch, groups, state, length, generator=gen).to(ctx.device, dtype)
        C = torch.randn(batch, groups, state, length, generator=gen).to(ctx.device, dtype)
        D = torch.randn(dim, generator=gen).to(ctx.device)
        bias = (torch.randn(dim, generator=gen) * 0.5).to(ctx.device)
        nbytes = scan_bytes(batch, dim, length, state, groups, u.element_size())
        leaves = [t.clone().requires_grad_() for t in (u, delta, B, C)]
        for backend in backends:
            sec.require(3, f'stage {stage} {backend}')

            def forward(backend=backend, inputs=(u, delta, A, B, C, D, bias)):
                with torch.no_grad():
                    vmamba_kernels.selective_scan(*inputs, True, out_dtype=torch.float32,
                                                  backend=backend)

            def forward_backward(backend=backend, inputs=(*leaves[:2], A, *leaves[2:], D, bias)):
                y = vmamba_kernels.selective_scan(*inputs, True, out_dtype=torch.float32,
                                                  backend=backend)
                y.backward(torch.ones_like(y))

            row = dict(stage=stage, shape=[batch, dim, length, state, groups], backend=backend)
            shares = time_bandwidth(ctx, row, forward, forward_backward, nbytes, copy_gbs,
                                    warmup, repeats)
            rows.append(row)
            sec.save()
            sec.note(f'stage {stage} {tuple(row["shape"])} {backend}: {shares}')
    core_rows(ctx, sec, copy_gbs)
    if copy_gbs and not ctx.smoke:
        best = max((r['forward_backward']['share_of_copy'] for r in rows + sec.results['cores']
                    if r['stage'] == 1), default=None)
        if best is not None:
            sec.results['target_stage1_fwd_bwd'] = dict(best_share=best, target=0.5,
                                                        met=best >= 0.5)
            sec.note(f'stage 1 fwd+bwd best {best:.0%} of copy bandwidth (target >= 50%: '
                     f'{"met" if best >= 0.5 else "NOT met"})')
    sec.require(3, 'the roofline floor')
    roofline_figures(ctx, sec, environment)


def core_rows(ctx, sec, copy_gbs):
    """The fused scan core (what the model runs on the GPU: every route of a stage's map in one
    kernel pair, delta formed inside) at the four stages' shapes, bf16 map and projections."""
    torch = ctx.torch
    import vmamba_kernels
    from vmamba_kernels import NUM_ROUTES
    from vmamba_mm.analysis.device_check import scan_core_bytes
    from vmamba_mm.models import resolve_arch
    settings = resolve_arch(ctx.arch)
    # Under --smoke the 'torch' core, as for the scan rows: interpreted Triton times mean nothing.
    backend = 'torch' if ctx.smoke else 'triton'
    warmup, repeats = (1, 1) if ctx.smoke else (2, 5)
    rows = sec.results['cores'] = []
    for stage, channels in enumerate(settings['dims']):
        side = ctx.image // settings['patch_size'] // 2**stage
        inner = int(settings['ssm_ratio'] * channels)
        state, rank = settings['ssm_d_state'], -(-channels // 16)
        gen = torch.Generator().manual_seed(stage)
        x = torch.randn(ctx.batch, inner, side, side, generator=gen).to(ctx.device,
                                                                        torch.bfloat16)
        weights = [torch.randn(NUM_ROUTES, rank + 2 * state, inner, generator=gen) * inner**-0.5,
                   torch.randn(NUM_ROUTES, inner, rank, generator=gen) * rank**-0.5,
                   -torch.rand(NUM_ROUTES * inner, state, generator=gen) - 0.1,
                   torch.randn(NUM_ROUTES * inner, generator=gen),
                   torch.randn(NUM_ROUTES * inner, generator=gen) * 0.5]
        weights = [w.to(ctx.device) for w in weights]
        nbytes = scan_core_bytes(ctx.batch, inner, side * side, NUM_ROUTES, rank, state, 2)
        leaves = [x.clone().requires_grad_()] + [w.clone().requires_grad_() for w in weights]
        sec.require(3, f'stage {stage + 1} core')

        def forward(inputs=(x, *weights)):
            with torch.no_grad(), torch.autocast(torch.device(ctx.device).type,
                                                 dtype=torch.bfloat16):
                vmamba_kernels.cross_selective_scan(*inputs, backend=backend)

        def forward_backward(inputs=leaves):
            with torch.autocast(torch.device(ctx.device).type, dtype=torch.bfloat16):
                y = vmamba_kernels.cross_selective_scan(*inputs, backend=backend)
            y.backward(torch.ones_like(y))

        row = dict(stage=stage + 1, shape=[ctx.batch, inner, side, side, rank, state],
                   backend=backend, operation='cross_selective_scan')
        shares = time_bandwidth(ctx, row, forward, forward_backward, nbytes, copy_gbs, warmup,
                                repeats)
        rows.append(row)
        sec.save()
        sec.note(f'core stage {stage + 1} (batch, C, H, W, R, N) {tuple(row["shape"])}: '
                 f'{shares}')


def roofline_figures(ctx, sec, environment):
    """VMamba-T's bf16 inference time (throughput section) against the floor of its FLOP and
    fewest bytes at the measured ceilings."""
    torch = ctx.torch
    from vmamba_mm.analysis.device_check import minimal_traffic, roofline
    from vmamba_mm.analysis.flops import count_macs
    model = build_vmamba(ctx, ctx.arch, None).to('meta').to(torch.bfloat16)
    x = torch.empty(ctx.batch, 3, ctx.image, ctx.image, device='meta', dtype=torch.bfloat16)
    macs, _ = count_macs(model, lambda: model(x), 'meta')
    from vmamba_mm.analysis.flops import scan_kernels_for_counting
    with scan_kernels_for_counting(model, 'meta'):
        elements, by_operator = minimal_traffic(model, lambda: model(x))
    flop, traffic = 2 * macs.total, 2 * elements
    figures = dict(flop=flop, macs=macs.total, traffic_bytes=traffic,
                   traffic_by_operator_bytes={k: 2 * v for k, v in by_operator.items()},
                   rule=('FLOP = 2 x multiply-adds (vmamba_mm.analysis.flops, the official rule); '
                         'bytes = every element read or written by the GEMMs, convolutions and '
                         'the scan kernel at 2 bytes (bf16), element-wise ops, norms and layout '
                         'taken as fused into them; floor = max(FLOP / measured bf16 matrix '
                         'rate, bytes / measured copy bandwidth), serial = their sum'))
    results = environment.get('results', {})
    rate = results.get('matmul', {}).get('bf16', {}).get('tflops')
    copy_gbs = results.get('copy_bandwidth', {}).get('gbs')
    throughput = ctx.part('throughput') or {}
    measured = (throughput.get('results', {}).get('inference bf16', {}).get('models', {})
                .get(ctx.arch_label, {}).get('ms_per_batch'))
    sec.results['roofline'] = figures
    sec.note(f'{ctx.arch_label} batch {ctx.batch} {ctx.image}^2: {flop / 1e12:.4g} TFLOP, '
             f'{traffic / 1e9:.4g} GB fewest bytes (bf16)')
    if rate is None or copy_gbs is None:
        sec.note('roofline: no measured ceilings from the environment section')
        return
    floor = roofline(flop, traffic, rate, copy_gbs)
    figures.update(floor, measured_ms=measured,
                   multiple_of_floor=measured / floor['floor_ms'] if measured else None,
                   multiple_of_serial=measured / floor['serial_ms'] if measured else None)
    sec.save()
    line = (f'floor {floor["floor_ms"]:.3g} ms (compute {floor["compute_ms"]:.3g} at '
            f'{rate:.4g} TFLOP/s, memory {floor["memory_ms"]:.3g} at {copy_gbs:.4g} GB/s; '
            f'serial {floor["serial_ms"]:.3g})')
    if measured:
        line += (f'; bf16 inference {measured:.3g} ms = {figures["multiple_of_floor"]:.3g}x '
                 f'the floor, {figures["multiple_of_serial"]:.3g}x serial')
    else:
        line += '; no bf16 inference time from the throughput section'
    sec.note(line)


# ------------------------------------------------------------------------- compiled model

def section_compiled(ctx, sec):
    """VMamba-T compiled whole (no graph break allowed) against itself in eager mode: bf16
    autocast inference. On the GPU: first CUDA graphs alone (``backend='cudagraphs'``, which
    compiles in seconds), then Inductor with CUDA graphs (``mode='reduce-overhead'``), each
    recorded as it finishes. Under --smoke: dynamo and AOT autograd only ('aot_eager'; Inductor
    takes minutes on two cores and CUDA graphs need a GPU), which still fails on any graph
    break."""
    torch = ctx.torch
    from vmamba_mm.analysis.device_check import compare, synchronize, time_ms, within
    device_type = torch.device(ctx.device).type
    variants = ([('aot_eager', dict(backend='aot_eager'))] if ctx.smoke else
                [('cudagraphs', dict(backend='cudagraphs')),
                 ('reduce-overhead', dict(mode='reduce-overhead'))])
    tolerance = 2e-2
    iters = 1 if ctx.smoke else 10
    sec.results['setup'] = dict(batch=ctx.batch, image=ctx.image, fullgraph=True,
                                precision='bf16 autocast', variants=dict(variants),
                                rule=f'logits max scaled error against eager <= {tolerance:g}')
    torch.manual_seed(0)
    model = build_vmamba(ctx, ctx.arch, ctx.device_backend).to(ctx.device).eval()
    x = torch.randn(ctx.batch, 3, ctx.image, ctx.image, device=ctx.device)

    def eager():
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16):
            return model(x)

    expected = eager()
    sec.require(2, 'eager timing')
    eager_ms = sec.results['eager_ms_per_batch'] = time_ms(eager, ctx.device, iters)
    for label, how in variants:
        sec.require(5, f'the {label} compile')
        torch._dynamo.reset()
        compiled_model = torch.compile(model, fullgraph=True, **how)

        def compiled(compiled_model=compiled_model):
            with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16):
                return compiled_model(x)

        started = time.time()
        for _ in range(1 if ctx.smoke else 3):  # CUDA graphs record on the second or third call
            got = compiled()
        synchronize(ctx.device)
        compile_s = time.time() - started
        errors = compare(got.float(), expected.float())
        sec.check(f'{label}: compiled logits equal eager', within(errors, tolerance),
                  max_scaled=errors['max_scaled'], tolerance=tolerance)
        sec.require(2, f'{label} timing')
        ms = time_ms(compiled, ctx.device, iters)
        sec.results[label] = dict(compile=how, compile_s=compile_s, logits=errors,
                                  ms_per_batch=ms, speedup_over_eager=eager_ms / ms)
        sec.note(f'{ctx.arch_label} {label} ({how}): compiled in {compile_s:.0f} s, logits vs '
                 f'eager max scaled {errors["max_scaled"]:.1e} (tol {tolerance:g}); bf16 batch '
                 f'{ctx.batch}: {ms:.4g} ms against eager {eager_ms:.4g} ms '
                 f'({eager_ms / ms:.2f}x)')


SECTIONS = collections.OrderedDict([
    ('environment', section_environment), ('correctness', section_correctness),
    ('model', section_model), ('profile', section_profile),
    ('throughput', section_throughput), ('scan_bandwidth', section_scan_bandwidth),
    ('compiled', section_compiled)])


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    return supervise(args)


if __name__ == '__main__':
    sys.exit(main())
