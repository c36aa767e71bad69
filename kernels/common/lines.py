"""V2M's line geometry, defined once for the ``v2m_scan`` backends and the V2M mixer.

V2M's 2D scan starts from each of the four corners of an H x W map (row-major pixel index
``p = i * W + j``). Orientation ``o`` sees the map flipped by ``ORIENTATION_FLIPS[o]`` = (flip
rows, flip columns): top-left, top-right, bottom-left and bottom-right starts. Its row stage scans
every row, left to right or (flipped columns) right to left; its column stage every column, top
to bottom or (flipped rows) bottom to top. ``line_pixels`` lays one stage's lines end to end as
the route table the C++ route kernel reads, each line a segment that starts from a zero state.
"""
import torch

from .routes import cached_table

ORIENTATION_FLIPS = ((False, False), (False, True), (True, False), (True, True))
NUM_ORIENTATIONS = len(ORIENTATION_FLIPS)
STAGES = ('row', 'column')


def check_stage(stage):
    if stage not in STAGES:
        raise ValueError(f"Unknown V2M scan stage {stage!r}; choose 'row' (scan every row) or "
                         "'column' (scan every column).")


def reverses_lines(stage, orientation):
    """Whether ``orientation`` scans ``stage``'s lines from their far end."""
    flip_rows, flip_columns = ORIENTATION_FLIPS[orientation]
    return flip_columns if stage == 'row' else flip_rows


def line_length(stage, height, width):
    """Tokens per line of ``stage``: a row has W, a column H."""
    return width if stage == 'row' else height


def line_pixels(stage, height, width, device=None):
    """(NUM_ORIENTATIONS, H*W) int64: the pixel each orientation visits at each step of
    ``stage``, its lines (rows top to bottom, or columns left to right) end to end."""
    check_stage(stage)
    grid = torch.arange(height * width, device=device).view(height, width)
    lines = grid if stage == 'row' else grid.t()
    return torch.stack([(lines.flip(1) if reverses_lines(stage, o) else lines).reshape(-1)
                        for o in range(NUM_ORIENTATIONS)])


def line_table(stage, height, width, device):
    """``line_pixels`` for the compiled kernel, cached per (stage, H, W, device)."""
    return cached_table(line_pixels, stage, height, width, device)
