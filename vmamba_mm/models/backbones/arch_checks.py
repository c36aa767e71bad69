"""Checks on a VSSM arch's settings, so that a bad value is named before any layer is built.

Without them a wrong type or range surfaces deep inside torch (``int(nan)``, a Conv2d with zero
channels, a scan with an empty state) or, for a huge size, as an allocation that takes the
machine's memory. Each error names the arch key and says what it takes.
"""
import math
import numbers

from vmamba_kernels import SCAN_ORDERS

from ..mixers import parse_mixer_spec

PATCH_EMBED_VERSIONS = ('v1', 'v2')
DOWNSAMPLE_VERSIONS = ('v1', 'v2', 'v3')
# Far beyond any VMamba (the largest released has 0.1e9): 2**33 float32 parameters are 32 GiB.
MAX_PARAMETERS = 2**33
SIZE_KEYS = ('dims', 'depths', 'patch_size', 'ssm_ratio', 'ssm_d_state', 'ssm_dt_rank',
             'ssm_conv', 'mlp_ratio')


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int_at_least(settings, key, low):
    value = settings[key]
    if not _is_int(value):
        raise TypeError(f'VSSM arch {key} must be an int, got {value!r}.')
    if value < low:
        raise ValueError(f'VSSM arch {key} must be at least {low}, got {value}.')


def _real_in(settings, key, low, high=math.inf, high_open=False):
    """A finite number in [low, high] (or [low, high) with high_open)."""
    value = settings[key]
    if not _is_real(value):
        raise TypeError(f'VSSM arch {key} must be a number, got {value!r}.')
    in_range = low <= value < high if high_open else low <= value <= high
    if not in_range or not math.isfinite(value):
        upper = f'below {high}' if high_open else 'finite'
        raise ValueError(f'VSSM arch {key} must be at least {low} and {upper}, got {value}.')


def _one_of(settings, key, choices, allow_none=False):
    value = settings[key]
    if value is None and allow_none:
        return
    if not isinstance(value, str):
        raise TypeError(f'VSSM arch {key} must be one of {list(choices)}, got {value!r}.')
    if value not in choices:
        raise ValueError(f'Unknown {key} {value!r}; choose one of {sorted(choices)}.')


def _check_depths_and_dims(settings):
    depths, dims = settings['depths'], settings['dims']
    if not isinstance(depths, (list, tuple)) or not depths or not all(map(_is_int, depths)):
        raise TypeError(f'VSSM arch depths must be a non-empty list of ints (blocks per stage), '
                        f'got {depths!r}.')
    if min(depths) < 0:
        raise ValueError(f'VSSM arch depths must not be negative, got {list(depths)}.')
    if _is_int(dims):
        if dims < 1:
            raise ValueError(f'VSSM arch dims must be at least 1, got {dims}.')
        return
    if not isinstance(dims, (list, tuple)) or not all(map(_is_int, dims)):
        raise TypeError(f'VSSM arch dims must be an int (doubled at each stage) or a list of '
                        f'ints, got {dims!r}.')
    if len(dims) != len(depths):
        raise ValueError(f'VSSM arch: dims {list(dims)} and depths {list(depths)} differ in '
                         f'length.')
    if min(dims) < 1:
        raise ValueError(f'VSSM arch dims must all be at least 1, got {list(dims)}.')


def check_arch_values(settings):
    """Types and ranges of every setting (the official key names plus gated / scan_order /
    scan_2d)."""
    _check_depths_and_dims(settings)
    _int_at_least(settings, 'patch_size', 1)
    _int_at_least(settings, 'ssm_d_state', 1)
    _real_in(settings, 'ssm_ratio', 0.0)
    if settings['ssm_dt_rank'] != 'auto':
        if not _is_int(settings['ssm_dt_rank']):
            raise TypeError(f"VSSM arch ssm_dt_rank must be 'auto' or an int, got "
                            f"{settings['ssm_dt_rank']!r}.")
        _int_at_least(settings, 'ssm_dt_rank', 1)
    if not _is_int(settings['ssm_conv']):
        raise TypeError(f"VSSM arch ssm_conv must be an int (the depthwise conv's kernel size; "
                        f"below 2 means no conv), got {settings['ssm_conv']!r}.")
    if settings['ssm_conv'] > 1 and settings['ssm_conv'] % 2 == 0:
        # An even kernel with padding (k - 1) // 2 changes the map size; the scan needs it kept.
        raise ValueError(f"VSSM arch ssm_conv must be odd (or below 2 for no conv), got "
                         f"{settings['ssm_conv']}.")
    for key in ('ssm_conv_bias', 'scan_2d'):
        if not isinstance(settings[key], bool):
            raise TypeError(f'VSSM arch {key} must be True or False, got {settings[key]!r}.')
    for key in ('gated', ):
        if settings[key] is not None and not isinstance(settings[key], bool):
            raise TypeError(f'VSSM arch {key} must be True, False or None (from forward_type), '
                            f'got {settings[key]!r}.')
    _real_in(settings, 'mlp_ratio', 0.0)
    _real_in(settings, 'drop_path_rate', 0.0, 1.0, high_open=True)
    _one_of(settings, 'downsample_version', DOWNSAMPLE_VERSIONS)
    _one_of(settings, 'patchembed_version', PATCH_EMBED_VERSIONS)
    _one_of(settings, 'scan_order', SCAN_ORDERS, allow_none=True)
    if settings['patchembed_version'] == 'v2' and settings['patch_size'] != 4:
        raise ValueError(f"VSSM arch patchembed_version 'v2' is two stride-2 convs: patch_size "
                         f"must be 4, got {settings['patch_size']}.")


def check_drop_path_rate(rate):
    """VSSM's drop_path_rate argument, which overrides the arch's: a keep probability > 0."""
    _real_in({'drop_path_rate': rate}, 'drop_path_rate', 0.0, 1.0, high_open=True)


def _widths(ratio, channels, key):
    try:
        width = int(ratio * channels)
    except OverflowError as exc:
        raise ValueError(f'VSSM arch {key}={ratio} times {channels} channels is too large.') \
            from exc
    return width


def estimated_parameters(settings):
    """About how many parameters the arch has (the large terms), as a float; inf if overflowing.

    ``settings`` is resolved: ``dims`` a list, ``mixer`` a complete spec. Each block's mixer
    gives its own count (``TokenMixer.parameter_estimate``).
    """
    mixer_cls, options = parse_mixer_spec(settings['mixer'])
    try:
        total = 3.0 * settings['dims'][0] * settings['patch_size']**2
        dims = [float(d) for d in settings['dims']]
        for stage, (depth, channels) in enumerate(zip(settings['depths'], dims)):
            block = (mixer_cls.parameter_estimate(channels, options) +
                     2 * channels * channels * settings['mlp_ratio'])
            total += depth * block
            if stage + 1 < len(dims):
                total += 9 * channels * dims[stage + 1]
    except OverflowError:
        return math.inf
    return total if math.isfinite(total) else math.inf


def check_arch_size(settings):
    """Refuse an arch too large to build, before anything is allocated; then the widths that
    the sizes imply (inner SSM and MLP widths, the v2 patch embedding's half width) >= 1."""
    count = estimated_parameters(settings)
    if count > MAX_PARAMETERS:
        given = ', '.join(f'{key}={settings[key]!r}' for key in SIZE_KEYS)
        raise ValueError(f'VSSM arch would have about {count:.2g} parameters, more than '
                         f'{MAX_PARAMETERS:.2g} ({MAX_PARAMETERS * 4 / 2**30:.0f} GiB in float32); '
                         f'check {given}.')
    for channels in settings['dims']:
        if _widths(settings['ssm_ratio'], channels, 'ssm_ratio') < 1:
            raise ValueError(f"VSSM arch ssm_ratio={settings['ssm_ratio']} gives no SSM channels "
                             f'for a stage of {channels}; int(ssm_ratio * dims) must be >= 1.')
        if settings['mlp_ratio'] > 0 and _widths(settings['mlp_ratio'], channels,
                                                 'mlp_ratio') < 1:
            raise ValueError(f"VSSM arch mlp_ratio={settings['mlp_ratio']} gives no MLP channels "
                             f'for a stage of {channels}; use 0 for no MLP or a ratio with '
                             f'int(mlp_ratio * dims) >= 1.')
    if settings['patchembed_version'] == 'v2' and settings['dims'][0] < 2:
        raise ValueError(f"VSSM arch patchembed_version 'v2' halves dims[0] in its first conv; "
                         f"dims[0] must be at least 2, got {settings['dims'][0]}.")


def minimum_input_size(settings):
    """The smallest image side every layer of the arch can take.

    Only two layers need more than one pixel: the 'v1' patch embedding (a stride-p conv needs a
    whole patch) and the 'v2' downsample (an unpadded 2x2 stride-2 conv needs two pixels at the
    input of each stage after the first). The other layers pad.
    """
    smallest_map = 2**(len(settings['depths']) - 1) if settings['downsample_version'] == 'v2' \
        else 1
    patch = settings['patch_size']
    if settings['patchembed_version'] == 'v1':
        return patch * smallest_map
    return max(patch, 4 * (smallest_map - 1) + 1)  # two padded stride-2 convs: ceil(H / 4)


def check_in_channels(in_channels):
    if not _is_int(in_channels) or in_channels < 1:
        raise ValueError(f'in_channels must be a positive int, got {in_channels!r}.')


def stage_indices(out_indices, num_stages, name='out_indices'):
    """VSSM's out_indices (an int or a sequence, negatives from the end) as stage numbers, in
    the order given; ``name`` is what error messages call the argument."""
    out_indices = [out_indices] if _is_int(out_indices) else out_indices
    if not isinstance(out_indices, (list, tuple)) or not all(map(_is_int, out_indices)):
        raise TypeError(f'{name} must be stage numbers (ints), got {out_indices!r}.')
    stages = [index + num_stages if index < 0 else index for index in out_indices]
    if not all(0 <= index < num_stages for index in stages):
        raise ValueError(f'{name} {list(out_indices)} must name stages 0..{num_stages - 1} '
                         f'(or negatives from the end).')
    repeated = sorted({index for index in stages if stages.count(index) > 1})
    if repeated:
        raise ValueError(f'{name} {list(out_indices)} name stage(s) {repeated} more than '
                         f'once; name each stage once (the maps come in the order named).')
    return stages


def check_frozen_stages(frozen_stages, num_stages):
    if not _is_int(frozen_stages) or not -1 <= frozen_stages <= num_stages:
        raise ValueError(f'frozen_stages={frozen_stages!r} must be an int in -1..{num_stages}.')
