"""VSSM's architectures: the released ones by name, an arch dict's defaults, and
``resolve_arch``, which turns either into complete, checked settings.

Arch dicts use the official constructor's keyword names; ``mixer`` (ours) names the token mixer
of every block ('ss2d' by default; see ``vmamba_mm.models.mixers``), and the official keys
(``ssm_*``, ``forward_type``, ``scan_2d``) become that mixer's options
(``TokenMixer.options_from_arch``); a mixer dict's own options win over them.
"""
from ..mixers import parse_mixer_spec
from .arch_checks import check_arch_size, check_arch_values

# The nine released architectures, in the official constructor's keyword names.
_VANILLA = dict(ssm_d_state=16, ssm_ratio=2.0, ssm_conv_bias=True, forward_type='v0',
                mlp_ratio=0.0, downsample_version='v1', patchembed_version='v1', norm_layer='ln')
_V2 = dict(ssm_d_state=1, ssm_conv_bias=False, forward_type='v05_noz', mlp_ratio=4.0,
           downsample_version='v3', patchembed_version='v2', norm_layer='ln2d')
ARCH_SETTINGS = {
    'vanilla-tiny': dict(_VANILLA, depths=[2, 2, 9, 2], dims=96, drop_path_rate=0.2),
    'vanilla-small': dict(_VANILLA, depths=[2, 2, 27, 2], dims=96, drop_path_rate=0.3),
    'vanilla-base': dict(_VANILLA, depths=[2, 2, 27, 2], dims=128, drop_path_rate=0.6),
    'tiny-s2l5': dict(_V2, depths=[2, 2, 5, 2], dims=96, ssm_ratio=2.0, drop_path_rate=0.2),
    'small-s2l15': dict(_V2, depths=[2, 2, 15, 2], dims=96, ssm_ratio=2.0, drop_path_rate=0.3),
    'base-s2l15': dict(_V2, depths=[2, 2, 15, 2], dims=128, ssm_ratio=2.0, drop_path_rate=0.6),
    'tiny-s1l8': dict(_V2, depths=[2, 2, 8, 2], dims=96, ssm_ratio=1.0, drop_path_rate=0.2),
    'small-s1l20': dict(_V2, depths=[2, 2, 20, 2], dims=96, ssm_ratio=1.0, drop_path_rate=0.3),
    'base-s1l20': dict(_V2, depths=[2, 2, 20, 2], dims=128, ssm_ratio=1.0, drop_path_rate=0.5),
}
# 2DVMamba (2DMamba, CVPR 2025): VMamba's settings with the 2D scan on every route, nothing else
# changed, so the parameters (and checkpoint keys) are the VMamba ones.
ARCH_SETTINGS.update({
    '2dvmamba-tiny': dict(ARCH_SETTINGS['tiny-s1l8'], scan_2d=True),
    '2dvmamba-small': dict(ARCH_SETTINGS['small-s2l15'], scan_2d=True),
})
# V2M (arXiv 2410.10382) on VMamba's layouts, as the paper's V2M-S* (on VMamba-T) and V2M-B* (on
# VMamba-S): every block's SS2D replaced by the V2M mixer. The state size and delta rank are
# chosen so that parameters and GFLOPs (get_flops.py) come close to the paper's rows: v2m-tiny
# 30.2 M / 5.41 G against V2M-S*'s 30 M / 5.4 G, v2m-small 49.9 M / 9.64 G against V2M-B*'s
# 50 M / 9.6 G (with VMamba's d_state 1 and rank ceil(C / 16): 31.7 M / 5.23 G, 54.4 M / 9.64 G).
ARCH_SETTINGS.update({
    'v2m-tiny': dict(ARCH_SETTINGS['tiny-s1l8'], mixer='v2m', ssm_d_state=4, ssm_dt_rank=8),
    'v2m-small': dict(ARCH_SETTINGS['small-s2l15'], mixer='v2m', ssm_d_state=3, ssm_dt_rank=8),
})
# SSD (Mamba2's state space duality, VMamba's m0 forward type) on VMamba-T's and VMamba-S's
# layouts: every block's SS2D scanned by SSD with m0's state size 64 and heads of ssm_ratio * 16
# channels (dt_rank heads per route); ungated as tiny-s1l8 and small-s2l15. get_flops.py on
# configs/ssd/ssd-tiny_8xb128_in1k.py: 32.21 M parameters, 7.254 GFLOPs (VMamba-T: 30.249 M,
# 4.906 G); the scan is counted by the SSD rule (ssd_scan/flops.py) in its chunked form, the D
# skip aside.
ARCH_SETTINGS.update({
    f'ssd-{size}': dict(ARCH_SETTINGS[layout], forward_type='m0_noz', mixer='ssd',
                        ssm_d_state=64)
    for size, layout in (('tiny', 'tiny-s1l8'), ('small', 'small-s2l15'))
})
# What an arch dict gets for the keys it leaves out: the official VSSM constructor's defaults.
ARCH_DEFAULTS = dict(patch_size=4, ssm_d_state=16, ssm_ratio=2.0, ssm_dt_rank='auto', ssm_conv=3,
                     ssm_conv_bias=True, forward_type='v2', mlp_ratio=4.0,
                     downsample_version='v2', patchembed_version='v1', norm_layer='ln',
                     drop_path_rate=0.1, gated=None, scan_order=None, scan_2d=False,
                     mixer=None)
ARCH_KEYS = frozenset({'depths', 'dims', *ARCH_DEFAULTS})

# Official forward_type strings -> our options. The v* types compute the same function; they
# differ in the official code only in which kernel runs it and whether the SiLU(z) gate exists.
# m0 is SS2D's frame scanned by Mamba2's SSD: mixer 'ssd'. An arch without a mixer gets the
# forward_type's ('ss2d' for the v* types).
FORWARD_TYPES = {
    'v0': dict(gated=True, scan_order='cross'),
    'v2': dict(gated=True, scan_order='cross'),
    'v05': dict(gated=True, scan_order='cross'),
    'v05_noz': dict(gated=False, scan_order='cross'),
    'v3': dict(gated=True, scan_order='cross'),
    'v3_noz': dict(gated=False, scan_order='cross'),
    'v051d': dict(gated=True, scan_order='unidirectional'),
    'v051d_noz': dict(gated=False, scan_order='unidirectional'),
    'v052d': dict(gated=True, scan_order='bidirectional'),
    'v052d_noz': dict(gated=False, scan_order='bidirectional'),
    'm0': dict(gated=True, scan_order='cross', mixer='ssd'),
    'm0_noz': dict(gated=False, scan_order='cross', mixer='ssd'),
}
DEFAULT_MIXER = 'ss2d'
NORM_LAYOUTS = {'ln': False, 'ln2d': True}  # official norm_layer -> channel_first


def resolve_arch(arch):
    """An arch name or dict -> a complete settings dict, with every key checked.

    Raises KeyError (unknown or missing keys, unknown names), TypeError or ValueError naming the
    arch key whose value cannot work.
    """
    if isinstance(arch, str):
        if arch not in ARCH_SETTINGS:
            raise KeyError(f'Unknown VSSM arch {arch!r}; choose one of {sorted(ARCH_SETTINGS)} '
                           f'or pass a dict of settings.')
        arch = ARCH_SETTINGS[arch]
    elif not isinstance(arch, dict):
        raise TypeError(f'VSSM arch must be a name or a dict, got {type(arch).__name__}.')
    unknown = sorted((k for k in arch if k not in ARCH_KEYS), key=repr)
    if unknown:
        raise KeyError(f'Unknown VSSM arch key(s) {unknown}; allowed keys: {sorted(ARCH_KEYS)}.')
    missing = sorted({'depths', 'dims'} - set(arch))
    if missing:
        raise KeyError(f'VSSM arch dict lacks required key(s) {missing}.')
    settings = dict(ARCH_DEFAULTS)
    settings.update(arch)
    if not isinstance(settings['norm_layer'], str):
        raise TypeError(f"VSSM arch norm_layer must be 'ln' or 'ln2d', got "
                        f"{settings['norm_layer']!r}.")
    settings['norm_layer'] = settings['norm_layer'].lower()  # the official code says 'LN'
    if not isinstance(settings['forward_type'], str):
        raise TypeError(f"VSSM arch forward_type must be a str, got {settings['forward_type']!r}.")
    if settings['forward_type'] not in FORWARD_TYPES:
        raise ValueError(f"Unknown forward_type {settings['forward_type']!r}; supported: "
                         f'{sorted(FORWARD_TYPES)}.')
    if settings['norm_layer'] not in NORM_LAYOUTS:
        raise ValueError(f"Unknown norm_layer {settings['norm_layer']!r}; choose 'ln' or 'ln2d'.")
    check_arch_values(settings)
    implied = FORWARD_TYPES[settings['forward_type']]
    if 'mixer' in implied and settings['mixer'] is not None and \
            _mixer_name(settings['mixer']) != implied['mixer']:
        raise ValueError(f"VSSM arch forward_type {settings['forward_type']!r} is mixer "
                         f"{implied['mixer']!r}, but the arch's mixer is "
                         f"{_mixer_name(settings['mixer'])!r}; leave mixer out or change "
                         f'forward_type.')
    for option, value in dict(implied, mixer=implied.get('mixer', DEFAULT_MIXER)).items():
        if settings[option] is None:
            settings[option] = value
    settings['mixer'] = mixer_spec(settings)
    dims, depths = settings['dims'], settings['depths']
    settings['depths'] = [int(depth) for depth in depths]
    settings['dims'] = ([int(dims) * 2**i for i in range(len(depths))]
                        if not isinstance(dims, (list, tuple)) else [int(d) for d in dims])
    check_arch_size(settings)
    return settings


def mixer_spec(settings):
    """The blocks' mixer as a complete spec, ``dict(type=name, **options)``: the mixer's options
    from the arch's official keys, then those the arch's ``mixer`` dict gives (which win).

    Raises ValueError / KeyError / TypeError naming the mixer or the option.
    """
    cls, options = parse_mixer_spec(settings['mixer'])
    resolved = cls.options_from_arch(settings)
    resolved.update(options)
    return dict(type=cls.mixer_name, **resolved)



def _mixer_name(spec):
    """The registered name a mixer spec (a name or a dict, checked later) gives, as written."""
    return spec.get('type') if isinstance(spec, dict) else spec
