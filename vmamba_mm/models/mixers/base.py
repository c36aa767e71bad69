"""The token-mixer protocol: what a VSS block, the arch checks and the analysis tools ask of the
module that mixes a block's tokens.

A mixer is an ``nn.Module`` subclass of ``TokenMixer`` registered in ``MIXERS`` under a name. A
VSS block builds it from a spec (a name, or a dict with ``type`` and the mixer's options) and
knows nothing of its insides. The base class owns the scan choice: the mixer's scan core is one
dispatch operation (``vmamba_kernels``), bound once per module (``dispatch.bind``), its backend
resolved once per device and logged; the methods here read it, override it, pin it for FLOP
counting, profile it, observe it and remove it (the scan-floor analysis). Analysis code uses
these methods only, never a mixer's private attributes.

A new mixer is one new file in this folder: a ``TokenMixer`` subclass decorated with
``@MIXERS.register('name')``, plus its import line in ``mixers/__init__.py``.
"""
import inspect
import math
import numbers
from typing import NamedTuple

import torch
import torch.nn as nn

from vmamba_kernels import dispatch

from ..layers import linear_layer


class MixerRegistry:
    """Mixer name -> ``TokenMixer`` subclass. Torch only (no mmengine), so ``create_model``
    and a bare ``VSSM`` build any registered mixer."""

    def __init__(self):
        self._classes = {}

    def register(self, name):
        def add(cls):
            if not (inspect.isclass(cls) and issubclass(cls, TokenMixer)):
                raise TypeError(f'MIXERS.register({name!r}) takes a TokenMixer subclass, got '
                                f'{cls!r}.')
            if name in self._classes and self._classes[name] is not cls:
                raise KeyError(f'A mixer named {name!r} is registered already '
                               f'({self._classes[name].__module__}.'
                               f'{self._classes[name].__qualname__}); choose another name.')
            self._classes[name] = cls
            cls.mixer_name = name
            return cls

        return add

    def get(self, name):
        if not isinstance(name, str):
            raise TypeError(f'A mixer is named by a str (one of {self.names()}), got {name!r}.')
        if name not in self._classes:
            raise ValueError(f'Unknown mixer {name!r}; registered mixers: {self.names()}.')
        return self._classes[name]

    def names(self):
        return sorted(self._classes)

    def __contains__(self, name):
        return name in self._classes


MIXERS = MixerRegistry()


class MixerSizes(NamedTuple):
    """What an arch-size estimate reads from a mixer's options (``TokenMixer.estimate_sizes``)."""
    inner: float  # the scanned width, expand_ratio x channels
    rank: float  # the delta projection's rank (SSD: heads per route)
    state: float  # the state size
    conv_weights: float  # the depthwise conv's weights per channel (0 without one)
    projections: float  # the in- and out-projections' weights (the gate's half included)


def parse_mixer_spec(spec):
    """A mixer spec (a name, or a dict with ``type`` and options) -> (class, options dict)."""
    if isinstance(spec, str):
        return MIXERS.get(spec), {}
    if not isinstance(spec, dict):
        raise TypeError(f"mixer must be a name (one of {MIXERS.names()}) or a dict with 'type' "
                        f'and the mixer\'s options, got {spec!r}.')
    if 'type' not in spec:
        raise KeyError(f"mixer dict {spec!r} has no 'type'; name one of {MIXERS.names()}.")
    options = {key: value for key, value in spec.items() if key != 'type'}
    cls = MIXERS.get(spec['type'])
    cls.check_option_names(options)
    cls.check_options(options)
    return cls, options


def build_mixer(spec, channels, *, channel_first, scan_backend=None):
    """The mixer ``spec`` names, for ``channels``-wide maps in the given layout."""
    cls, options = parse_mixer_spec(spec)
    return cls(channels, channel_first=channel_first, scan_backend=scan_backend, **options)


# The mixer options a VSSM arch's keys (official names) set, as (option, arch key), in the order
# SS2D takes them.
ARCH_OPTION_KEYS = (('state_size', 'ssm_d_state'), ('expand_ratio', 'ssm_ratio'),
                    ('dt_rank', 'ssm_dt_rank'), ('conv_size', 'ssm_conv'),
                    ('conv_bias', 'ssm_conv_bias'), ('gated', 'gated'),
                    ('scan_order', 'scan_order'), ('scan_2d', 'scan_2d'))


def depthwise_conv(width, conv_size, bias):
    """A ``width``-channel depthwise conv of odd ``conv_size`` keeping the map's size, or None
    for ``conv_size`` 1 or less (no conv)."""
    if conv_size <= 1:
        return None
    return nn.Conv2d(width, width, conv_size, padding=(conv_size - 1) // 2, groups=width,
                     bias=bias)


class _ObserverHandle:

    def __init__(self, observers, fn):
        self._observers, self._fn = observers, fn

    def remove(self):
        if self._fn in self._observers:
            self._observers.remove(self._fn)


class TokenMixer(nn.Module):
    """Base of every token mixer.

    A subclass passes its scan core's dispatch operation to ``__init__``, calls ``run_scan(x)``
    where its forward scans, and implements:

    - ``scan(x)``: the scan core (through ``self.scan_kernel``, the bound operation);
    - ``skip_term(x)``: what the scan core returns without its recurrence (its direct term), of
      the same shape, layout and dtype: the stand-in ``remove_scan`` puts in its place;
    - the classmethods ``options_from_arch(settings)`` (its options from a VSSM arch's
      settings, official key names; ``shared_options_from_arch`` gives those of the ``ssm_*``
      keys, ``gated``, ``scan_order`` and ``scan_2d``) and
      ``parameter_estimate(channels, options)`` (the arch size check's count).

    Args (keyword-only, given by the block): ``channel_first``: the layout of the maps the
    mixer receives and returns; ``scan_backend``: the backend name for its operations (None:
    the automatic choice per device).
    """

    mixer_name = None  # set by MIXERS.register

    def __init__(self, scan_operation, *, channel_first, scan_backend=None):
        super().__init__()
        self.channel_first = channel_first
        self.scan_kernel = dispatch.bind(scan_operation, scan_backend)
        self.scan_removed = False
        self.scan_profile_range = None
        self._scan_observers = []

    def build_frame_layers(self, channels, inner, *, conv_size, conv_bias, gated, scan_backend):
        """SS2D's frame before the scan, which the mixers share (official names): ``in_proj``
        from ``channels`` to ``inner`` (twice that when ``gated``: the gate's half), ``act``
        (SiLU), the depthwise ``conv2d`` (None without one) and ``conv_kernel``, the bound
        operation that runs that conv and its SiLU as one. A mixer calls it before making its
        other parameters: a seeded build draws in_proj's, then conv2d's initial values first."""
        # On the CPU the depthwise conv and its SiLU run as one operation.
        self.conv_kernel = dispatch.bind('depthwise_conv_silu', scan_backend)
        self.in_proj = linear_layer(channels, inner * (2 if gated else 1), False,
                                    self.channel_first)
        self.act = nn.SiLU()
        self.conv2d = depthwise_conv(inner, conv_size, conv_bias)

    # ------------------------------------------------------------ built from an arch
    @classmethod
    def options_from_arch(cls, settings):
        """This mixer's options from a resolved VSSM arch (its official keys); {} by default."""
        return {}

    @classmethod
    def shared_options_from_arch(cls, settings, *, without_scan_2d='has no 2D scan'):
        """For ``options_from_arch``: the options of ``ARCH_OPTION_KEYS`` this mixer takes,
        from the arch's keys. A mixer without a ``scan_2d`` option refuses scan_2d=True (a
        ValueError), ``without_scan_2d`` saying what it scans instead."""
        taken = cls.option_names()
        if settings['scan_2d'] and 'scan_2d' not in taken:
            raise ValueError("VSSM arch scan_2d=True selects 2DMamba's scan inside mixer 'ss2d'; "
                             f'mixer {cls.mixer_name!r} {without_scan_2d}: leave scan_2d False.')
        return {option: settings[key] for option, key in ARCH_OPTION_KEYS if option in taken}

    @classmethod
    def option_names(cls):
        """The options a mixer dict may give: the constructor's keyword arguments but those the
        block supplies."""
        parameters = inspect.signature(cls.__init__).parameters
        return sorted(name for name, p in parameters.items()
                      if name not in ('self', 'channels', 'channel_first', 'scan_backend') and
                      p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))

    @classmethod
    def check_option_names(cls, options):
        unknown = sorted(set(options) - set(cls.option_names()), key=repr)
        if unknown:
            raise KeyError(f'Unknown option(s) {unknown} for mixer {cls.mixer_name!r}; it takes '
                           f'{cls.option_names()}.')

    @classmethod
    def check_options(cls, options):
        """Types and ranges of the options a mixer dict gives, before anything is built; raise
        TypeError / ValueError naming the mixer and the option."""

    @classmethod
    def check_shared_options(cls, options, *, positive_ints=('state_size', 'dt_rank'),
                             flags=('conv_bias', 'gated'), scan_orders=None):
        """The checks of the options the mixers share, for ``check_options``: positive ints
        (``dt_rank`` may also be 'auto'), ``expand_ratio``, ``conv_size``, the bool ``flags`` and
        ``scan_order`` (one of ``scan_orders`` when given). Raises TypeError (a value of the
        wrong type) or ValueError (out of range) naming the mixer and the option."""
        def refuse(name, wanted, type_ok):
            raise (ValueError if type_ok else TypeError)(
                f'mixer {cls.mixer_name!r} option {name} must be {wanted}, got '
                f'{options[name]!r}.')

        def is_int(value):
            return isinstance(value, numbers.Integral) and not isinstance(value, bool)

        for name in positive_ints:
            if name not in options or (name == 'dt_rank' and options[name] == 'auto'):
                continue
            if not (is_int(options[name]) and options[name] >= 1):
                refuse(name, 'an int >= 1' + (" or 'auto'" if name == 'dt_rank' else ''),
                       is_int(options[name]))
        if 'expand_ratio' in options:
            ratio = options['expand_ratio']
            is_real = isinstance(ratio, numbers.Real) and not isinstance(ratio, bool)
            if not (is_real and 0 < ratio < math.inf):
                refuse('expand_ratio', 'a finite number above 0', is_real)
        if 'conv_size' in options:
            size = options['conv_size']
            if not is_int(size) or (size > 1 and size % 2 == 0):
                refuse('conv_size', 'an odd int (below 2: no conv)', is_int(size))
        for name in flags:
            if name in options and not isinstance(options[name], bool):
                refuse(name, 'True or False', False)
        if scan_orders is not None and 'scan_order' in options and \
                options['scan_order'] not in scan_orders:
            refuse('scan_order', f'one of {list(scan_orders)}',
                   isinstance(options['scan_order'], str))

    @classmethod
    def parameter_estimate(cls, channels, options):
        """About how many parameters one mixer of ``channels`` has (a float), for the arch size
        check that runs before anything is built."""
        raise NotImplementedError(f'mixer {cls.mixer_name!r} gives no parameter_estimate.')

    @staticmethod
    def estimate_sizes(channels, options, *, expand_ratio, state_size, gated):
        """``MixerSizes`` of a mixer of ``channels`` from its options, the keyword arguments
        standing in for the options the mixer's own defaults fill (the Δ rank is 'auto',
        ceil(channels / 16), and the conv 3x3 unless given)."""
        inner = options.get('expand_ratio', expand_ratio) * channels
        dt_rank = options.get('dt_rank', 'auto')
        conv_size = options.get('conv_size', 3)
        return MixerSizes(
            inner=inner,
            rank=math.ceil(channels / 16) if dt_rank == 'auto' else float(dt_rank),
            state=float(options.get('state_size', state_size)),
            conv_weights=float(conv_size)**2 if conv_size > 1 else 0.0,
            projections=channels * inner * (3 if options.get('gated', gated) else 2))

    # ------------------------------------------------------------ the scan choice
    @property
    def scan_operation(self):
        """The dispatch operation of this mixer's scan core."""
        return self.scan_kernel.operation

    @property
    def scan_backend(self):
        """The backend name asked for (None: automatic), as given or by ``set_scan_backend``."""
        return self.scan_kernel.requested

    def bound_operations(self):
        """Every dispatch operation this mixer calls, bound to its backend choice."""
        return [value for value in vars(self).values()
                if isinstance(value, dispatch.BoundOperation)]

    def scan_backends(self):
        """Device type -> the scan core's backend name, for the devices it ran on so far."""
        return self.scan_kernel.resolved()

    def set_scan_backend(self, name):
        """Choose every operation's backend again from ``name`` (None: automatic) at the next
        call."""
        for bound in self.bound_operations():
            bound.override(name)

    def scan_backend_pinned(self, device_type, backend):
        """Within the block the scan core runs ``backend`` on ``device_type``, unchecked (the
        FLOP counter's counting kernel); the earlier choice comes back after."""
        return self.scan_kernel.pinned(device_type, backend)

    # ------------------------------------------------------------ the scan
    def scan(self, x):
        raise NotImplementedError(f'{type(self).__name__} does not implement scan().')

    def skip_term(self, x):
        raise NotImplementedError(f'{type(self).__name__} does not implement skip_term().')

    def remove_scan(self):
        """From now on the scan core returns its skip term only (for timing: the model no longer
        computes its function)."""
        self.scan_removed = True

    def profile_scan(self, range_name):
        """Run the scan core inside ``torch.profiler.record_function(range_name)`` (None: off),
        so a profile can tell the scan's work from the rest."""
        self.scan_profile_range = range_name

    def observe_scan(self, fn):
        """Call ``fn(scan_input, scan_output)`` after every scan; returns a handle whose
        ``remove()`` stops it."""
        self._scan_observers.append(fn)
        return _ObserverHandle(self._scan_observers, fn)

    def run_scan(self, x):
        """The scan core as the forward calls it: removed, profiled and observed as asked."""
        if self.scan_removed:
            y = self.skip_term(x)
        elif self.scan_profile_range is not None:
            with torch.profiler.record_function(self.scan_profile_range):
                y = self.scan(x)
        else:
            y = self.scan(x)
        for observer in self._scan_observers:
            observer(x, y)
        return y

    # ------------------------------------------------------------ implicit attention
    def supports_scan_attention(self):
        """Whether ``route_scan_inputs`` can give what the scan-attention analysis needs."""
        return False

    def route_scan_inputs(self, mixer_input):
        raise NotImplementedError(
            f'mixer {self.mixer_name!r} does not expose its scan inputs per route; the scan '
            f'attention analysis covers mixers whose supports_scan_attention() is True.')
