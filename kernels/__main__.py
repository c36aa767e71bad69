"""``python -m vmamba_kernels [operation ...]``: each operation's backends (every operation by
default) and whether each can run here.

Checking a compiled backend builds its kernel on first use (``make install`` runs this so the
C++ kernels are built ahead; cached by torch in ``$TORCH_EXTENSIONS_DIR``). Exits 0 whatever is
unavailable: a machine without a GPU or a compiler still runs on the ``torch`` backend.
"""
import argparse

import vmamba_kernels
from vmamba_kernels import dispatch


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m vmamba_kernels',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('operations', nargs='*', metavar='operation',
                        help=f'default: all ({", ".join(dispatch.operations())})')
    args = parser.parse_args(argv)
    print(f'vmamba_kernels from {vmamba_kernels.__path__[0]}')
    for operation in args.operations or dispatch.operations():
        print(f'{operation}:')
        for backend in dispatch.backends_of(operation):
            described = dispatch.describe(operation, backend)
            state = 'ready' if described.unavailable_reason is None else \
                f'unavailable: {described.unavailable_reason}'
            print(f"  {backend:9s} on {'/'.join(described.devices):8s} {state}")


if __name__ == '__main__':
    main()
