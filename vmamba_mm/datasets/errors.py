"""The error for bad data, and the one line the tools print for it.

A module of its own: the transforms (run inside DataLoader workers), the layouts' checks and the
tools' error reporting all use it.
"""


class DataError(ValueError):
    """Bad data, said in words a user can act on (names the file)."""


def describe_data_error(exc):
    """The one-line message for a data problem raised during a run, or None for anything else.

    A DataLoader worker re-raises the worker's exception type with the worker's whole traceback as
    the message; the original message is its last line.
    """
    text = str(exc).strip()
    if isinstance(exc, DataError):
        line = text.splitlines()[-1]
        return line.split('DataError: ', 1)[-1]
    if isinstance(exc, AssertionError) and 'failed to load image:' in text:
        # mmcv's LoadImageFromFile asserts on bytes that do not decode; it names the file.
        path = text.rsplit('failed to load image:', 1)[1].strip().splitlines()[0]
        return (f'image file does not decode: {path}; replace or remove it (and its annotation, '
                f'if any).')
    if '!buf.empty()' in text:
        # OpenCV refusing zero bytes, where RefuseEmptyFiles did not run before the loader.
        return ('an image or label map read during the run is empty (0 bytes), and OpenCV does '
                'not say which: list them with `find DATA_ROOT -type f -size 0`, then replace or '
                'remove them (and their annotations).')
    return None
