"""A C++/CUDA extension built on first use, whose failure is remembered and reported, not raised
at import: a backend whose kernel cannot be built is simply unavailable, with the reason."""
import hashlib
import os

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'csrc')


def headers_digest(headers):
    """A short digest of the csrc/ headers named, for the build flags."""
    digest = hashlib.sha256()
    for header in headers:
        with open(os.path.join(CSRC, header), 'rb') as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


class LazyExtension:

    def __init__(self, name, source, precheck=lambda: None, headers=(), **load_kwargs):
        """``precheck`` returns a reason not to try building (e.g. no GPU), or None. ``headers``:
        the csrc/ headers the source includes (torch rebuilds an extension when its sources or
        flags change, not its headers: their digest goes into the flags)."""
        self.name = name
        self.source = os.path.join(CSRC, source)
        self.precheck = precheck
        self.load_kwargs = dict(load_kwargs)
        if headers:
            flags = list(self.load_kwargs.get('extra_cflags', []))
            digest = headers_digest(headers)
            self.load_kwargs['extra_cflags'] = flags + [f'-DVMAMBA_HEADERS_DIGEST={digest}']
        self._module = None
        self._failure = None

    def load(self):
        """The compiled module; raises RuntimeError saying why when it cannot be had."""
        if self._module is None and self._failure is None:
            self._failure = self.precheck()
        if self._module is None and self._failure is None:
            try:
                from torch.utils import cpp_extension
                self._module = cpp_extension.load(name=self.name, sources=[self.source],
                                                  verbose=False, **self.load_kwargs)
            except Exception as exc:  # any build or import failure makes the backend unavailable
                self._failure = f'could not build {self.source}: {type(exc).__name__}: {exc}'
        if self._failure is not None:
            raise RuntimeError(self._failure)
        return self._module

    def unavailable_reason(self):
        try:
            self.load()
        except RuntimeError as exc:
            return str(exc).strip().splitlines()[0][:500]
        return None
