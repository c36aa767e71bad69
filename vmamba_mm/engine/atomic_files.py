"""Writes that a kill at any instant leaves either the old file or the complete new one.

A file is written under a temporary name in its own folder, flushed to disk, renamed over its
final name (atomic on POSIX file systems), and the folder is flushed so that the rename itself
survives a crash. Temporary names end in ``TEMP_SUFFIX``: a reader ignores such files, and
``remove_leftover_temporaries`` clears those of an interrupted run.
"""
import glob
import os
import os.path as osp

TEMP_SUFFIX = '.incomplete'


def temporary_path(final_path):
    return final_path + TEMP_SUFFIX


def fsync_path(path):
    """Flush a file's (or a folder's) contents and metadata to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def move_into_place(temp_path, final_path):
    """Make a completely written temporary file the final one, durably."""
    fsync_path(temp_path)
    os.replace(temp_path, final_path)
    fsync_path(osp.dirname(osp.abspath(final_path)))


def write_text_atomically(path, text):
    temp_path = temporary_path(path)
    with open(temp_path, 'w') as f:
        f.write(text)
    move_into_place(temp_path, path)


def leftover_temporaries(folder):
    return sorted(glob.glob(osp.join(glob.escape(folder), '*' + TEMP_SUFFIX)))


def remove_leftover_temporaries(folder):
    """Delete the temporary files an interrupted save left in folder; return their paths."""
    removed = []
    for path in leftover_temporaries(folder):
        try:
            os.remove(path)
        except FileNotFoundError:  # another process of the same run removed it first
            continue
        removed.append(path)
    return removed
