"""Example inputs of the operations, one ``Examples`` per operation (its folder's ``cases.py``),
shared by the benchmark (tools/analysis_tools/bench_scan.py), the GPU backend check
(vmamba_mm/analysis/backend_check.py) and the tests.

Sizes by name: ``'smoke'`` tiny (the Triton interpreter on a CPU), ``'check'`` the GPU backend
check's cases (they cross a chunk boundary, use groups, leave odd maps; the sequential reference
still runs them in seconds on a CPU). The backend check compares one output tensor and its
gradients against the reference: an operation whose output it cannot compare that way gives
neither size (``add_layer_norm``'s pair of outputs: its Triton kernel has tests of its own) and
offers ``'small'`` for the tests.
"""
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence


@dataclass(frozen=True)
class Examples:
    operation: str
    # Size name -> shapes; what a shape holds is the operation's own (``label`` names it).
    shapes: Mapping[str, Sequence[tuple]]
    # make(shape, dtype=torch.float32, seed=0, **options) -> (tensors, kwargs): the inputs by
    # name, on the CPU, in ``dtype`` where the contract lets them be (float32 otherwise), then
    # the call's other keyword arguments; ``operation(*tensors.values(), **kwargs)`` runs it.
    make: Callable
    # label(shape) -> a short description of the shape ('b2 d64 L1000 N1 g4').
    label: Callable[[tuple], str]

    def cases(self, size):
        """[(label, shape)] of ``size`` (none when the operation gives no shapes of that size)."""
        return [(self.label(shape), shape) for shape in self.shapes.get(size, ())]


_EXAMPLES = {}  # operation -> Examples


def register_examples(examples):
    _EXAMPLES[examples.operation] = examples


def examples_of(operation):
    if operation not in _EXAMPLES:
        raise ValueError(f'No example inputs for {operation!r}; operations with examples: '
                         f'{sorted(_EXAMPLES)} (an operation folder registers them in its '
                         f'cases.py).')
    return _EXAMPLES[operation]


def operations_with_examples():
    return sorted(_EXAMPLES)
