"""Which checkpoint ``--resume`` continues from, and whether a checkpoint file is whole.

mmengine's auto-resume trusts the work dir's ``last_checkpoint`` blindly: a pointer to a deleted
or half-written file ends in a FileNotFoundError or an unpickling error, and with no checkpoint
at all it logs "Auto resumed from the latest checkpoint None". ``choose_resume_checkpoint``
checks the files first: a bad pointer falls back to the newest whole checkpoint, and an empty
work dir is said plainly.
"""
import os
import os.path as osp
import re
import zipfile
from typing import NamedTuple, Optional

from ..checkpoint.reading import damaged_record
from .atomic_files import TEMP_SUFFIX

# What torch.save's legacy (non-zip) format starts with: pickle protocol 2, then its magic number.
LEGACY_TORCH_MAGIC = b'\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.'


class ResumeError(ValueError):
    """The checkpoint to resume from cannot be used; the message names it and what to do."""


class ResumeChoice(NamedTuple):
    path: Optional[str]  # None: train from scratch
    note: Optional[str]  # why this one, for the log


def checkpoint_file_problem(path):
    """Why path cannot be a torch checkpoint, or None when it looks whole.

    A torch checkpoint is a zip archive whose central directory, at the very end, is written
    last, so a truncated file has none; each record's bytes are checked against the CRC-32 the
    zip stores for it (one read of the file), so damaged weights are refused too. (A file that
    passes can still fail to unpickle; loading it says so.)
    """
    if not osp.isfile(path):
        return 'does not exist'
    if osp.getsize(path) == 0:
        return 'is empty (0 bytes)'
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            return f'is a damaged zip archive ({exc})'
        if not any(name.endswith('data.pkl') for name in names):
            return 'is a zip archive but not a torch checkpoint (it has no data.pkl)'
        record = damaged_record(path)
        if record is not None:
            return (f'is damaged: its record {record!r} does not match the CRC-32 the zip stores '
                    f'for it (its bytes changed after it was written: save or copy it again)')
        return None
    with open(path, 'rb') as f:
        if f.read(len(LEGACY_TORCH_MAGIC)) == LEGACY_TORCH_MAGIC:
            return None
    return ('is not a whole torch checkpoint (no zip directory at its end: cut short by an '
            'interrupted write, or another kind of file)')


def checkpoint_folder(cfg):
    """Where the run's CheckpointHook writes: the work dir, or out_dir/<work dir name>."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    work_dir = cfg.work_dir
    if hook.get('out_dir'):
        return osp.join(hook['out_dir'], osp.basename(work_dir.rstrip(os.sep)))
    return work_dir


def _checkpoint_name_pattern(cfg):
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    template = hook.get('filename_tmpl') or (
        'epoch_{}.pth' if hook.get('by_epoch', True) else 'iter_{}.pth')
    return re.compile('^' + re.escape(template).replace(r'\{\}', r'(\d+)') + '$')


def saved_checkpoints(cfg):
    """The run's checkpoint files (not best_* copies nor temporaries), newest step first."""
    folder = checkpoint_folder(cfg)
    if not osp.isdir(folder):
        return []
    pattern = _checkpoint_name_pattern(cfg)
    steps = [(int(match.group(1)), name) for name in os.listdir(folder)
             if not name.endswith(TEMP_SUFFIX) and (match := pattern.match(name))]
    return [osp.join(folder, name) for _, name in sorted(steps, reverse=True)]


def newest_whole_checkpoint(cfg):
    return next((path for path in saved_checkpoints(cfg) if checkpoint_file_problem(path) is None),
                None)


def check_resume_path(cfg, path):
    """Refuse --resume PATH when PATH is not a whole checkpoint, naming the last good one."""
    problem = checkpoint_file_problem(path)
    if problem is None:
        return
    good = newest_whole_checkpoint(cfg)
    instead = (f'the last good checkpoint in {checkpoint_folder(cfg)} is {good}: resume with '
               f'--resume {good}' if good else
               f'there is no good checkpoint in {checkpoint_folder(cfg)} either')
    raise ResumeError(f'cannot resume from {path}: it {problem}; {instead}.')


def _last_checkpoint(work_dir):
    """(the whole checkpoint that work_dir/last_checkpoint names, or None;
    why that file cannot be used, or None where there is no such file)."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None, None
    with open(pointer) as f:
        named = f.read().strip()
    if not named:
        return None, f'{pointer} is empty'
    problem = checkpoint_file_problem(named)
    if problem is not None:
        return None, f'{pointer} names {named}, which {problem}'
    return named, None


def choose_resume_checkpoint(cfg):
    """The checkpoint auto-resume continues from, with a note when it is not the obvious one.

    ``last_checkpoint`` in the work dir names it when that file is whole; otherwise the newest
    whole checkpoint of the run is taken; with none at all, training starts from scratch.
    Checkpoints that exist but are all broken stop the run rather than be silently ignored.
    """
    named, pointer_problem = _last_checkpoint(cfg.work_dir)
    if named is not None:
        return ResumeChoice(named, None)
    folder = checkpoint_folder(cfg)
    why = pointer_problem or f'there is no {osp.join(cfg.work_dir, "last_checkpoint")}'
    good = newest_whole_checkpoint(cfg)
    if good is not None:
        return ResumeChoice(good, f'--resume: {why}; resuming from {good}, the newest whole '
                                  f'checkpoint in {folder}.')
    broken = saved_checkpoints(cfg)
    if broken:
        raise ResumeError(f'--resume: {why}, and no checkpoint in {folder} is whole '
                          f'({", ".join(map(osp.basename, broken))}); remove them to start from '
                          f'scratch.')
    start = (f'training starts from scratch (with the weights of load_from={cfg.load_from})'
             if cfg.get('load_from') else 'training starts from scratch')
    stale = f'{pointer_problem}; ' if pointer_problem else ''
    return ResumeChoice(None, f'--resume: {stale}no checkpoint found in {cfg.work_dir}; {start}.')


def set_up_resume(cfg, requested):
    """Point cfg at the checkpoint that --resume continues from; return a note for the log.

    requested: 'auto' (the run's latest whole checkpoint) or a path. With nothing to resume,
    cfg trains from scratch instead of letting mmengine "auto-resume from None".
    """
    if requested == 'auto':
        path, note = choose_resume_checkpoint(cfg)
    else:
        check_resume_path(cfg, requested)
        path, note = requested, None
    cfg.resume = path is not None
    if path is not None:
        cfg.load_from = path
    return note
