"""Whether a tool can write where it was told to, asked before the work that produces the output.

A path under a regular file, or on a file system that refuses new files (``/proc``, a read-only
mount, a folder without write permission), would otherwise fail only after minutes of work, with
a traceback. The check creates (and removes) a probe file where the output will go, so it answers
as the real write will, whatever the reason.
"""
import os
import os.path as osp
import tempfile


def _nearest_existing(path):
    path = osp.abspath(path)
    while not osp.exists(path):
        path = osp.dirname(path)
    return path


def output_folder_problem(folder, what):
    """Why files cannot be written into ``folder`` (created if missing), as one line that starts
    with ``what`` (the flag and value, e.g. '--out-dir outputs'), or None when they can. Creates
    nothing that stays."""
    existing = _nearest_existing(folder)
    if not osp.isdir(existing):
        return f'{what}: {existing} is a file, not a folder; choose another path.'
    try:
        descriptor, probe = tempfile.mkstemp(prefix='.write-check-', dir=existing)
    except OSError as exc:
        return (f'{what}: cannot create files under {existing} ({exc.strerror}); choose a '
                f'writable path.')
    os.close(descriptor)
    os.remove(probe)
    return None


def work_dir_problem(cfg, flag_value):
    """output_folder_problem for the run's work_dir, named as the user set it (--work-dir, or
    the config's work_dir)."""
    what = f'--work-dir {flag_value}' if flag_value else f'work_dir {cfg.work_dir} (of the config)'
    return output_folder_problem(cfg.work_dir, what)
