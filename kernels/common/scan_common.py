"""What the selective scans share: their input contract (``check_scan_inputs``), and the
prologue and epilogue of their backends."""
import torch
import torch.nn.functional as F


def biased_delta(delta, delta_bias):
    """float32 delta with the bias added: what softplus takes."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float().unsqueeze(-1)
    return delta


def prepare_delta(delta, delta_bias, delta_softplus):
    """float32 delta with the bias added and softplus applied, as the contract says."""
    delta = biased_delta(delta, delta_bias)
    return F.softplus(delta) if delta_softplus else delta


def add_skip(y, u, D, out_dtype):
    if D is not None:
        y = y + u.float() * D.float().unsqueeze(-1)
    return y.to(out_dtype)


def needs_grad(*tensors):
    """Whether autograd will want gradients through an op on these tensors (None allowed)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _shape_error(operation, name, tensor, expected):
    return ValueError(f'{operation}: {name} has shape {tuple(tensor.shape)}, expected '
                      f'{expected}.')


def with_group_dim(t):
    """B or C as (batch, G, N, L): the public functions also take (batch, N, L), one group."""
    return t.unsqueeze(1) if t.dim() == 3 else t


def check_scan_inputs(operation, u, delta, A, B, C, D, delta_bias):
    """Shapes and devices against the selective scan's contract; errors name ``operation`` and
    the input. B and C are (batch, G, N, L) here (``with_group_dim``)."""
    if u.dim() != 3:
        raise _shape_error(operation, 'u', u, '(batch, dim, L)')
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise _shape_error(operation, 'delta', delta, f'{tuple(u.shape)} like u')
    if A.dim() != 2 or A.shape[0] != dim:
        raise _shape_error(operation, 'A', A, f'({dim}, N)')
    state = A.shape[1]
    for name, t in (('B', B), ('C', C)):
        if t.dim() != 4 or t.shape[0] != batch or t.shape[2] != state or t.shape[3] != length:
            raise _shape_error(operation, name, t,
                               f'({batch}, G, {state}, {length}) or ({batch}, {state}, {length})')
        if dim % t.shape[1]:
            raise ValueError(f'{operation}: dim={dim} is not divisible by the {t.shape[1]} '
                             f'groups of {name}.')
    for name, t in (('D', D), ('delta_bias', delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            raise _shape_error(operation, name, t, f'({dim},)')
    for name, t in (('delta', delta), ('A', A), ('B', B), ('C', C), ('D', D),
                    ('delta_bias', delta_bias)):
        if t is not None and t.device != u.device:
            raise ValueError(f'{operation}: {name} is on {t.device} but u is on {u.device}.')


def check_grid(operation, length, height, width):
    """The grid of a 2D scan against its sequence length L (row-major tokens)."""
    for name, value in (('height', height), ('width', width)):
        if value is None:
            raise ValueError(f'{operation} needs the grid: pass height= and width= with '
                             f'height * width = L = {length} (the tokens in row-major order).')
        if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
            raise TypeError(f'{operation}: {name} must be an int, got {value!r}.')
        if value < 1:
            raise ValueError(f'{operation}: {name}={value} must be at least 1.')
    if height * width != length:
        raise ValueError(f'{operation}: height * width = {height} * {width} = '
                         f'{height * width} does not match the sequence length L = {length} of u; '
                         f'the tokens must be the H x W grid in row-major order.')
