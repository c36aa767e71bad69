// CPU 2D selective scan (2DMamba's recurrence): forward, and its backward in one pass per grid.
//
// Per channel and state, on an H x W grid in row-major token order, with a = exp(delta A) and
// x = delta B u:  g[i,j] = a g[i,j-1] + x (row pass),  h[i,j] = a h[i-1,j] + g (column pass),
// y = <C, h> + D u. Walking the tokens in order needs only two carries: the row state g of the
// current row, and the column states h[i-1, :] of the row above (W x N floats).
//
// selective_scan_2d_forward: one grid per (batch, channel).
// selective_scan_2d_backward: the closed form of selective_scan_2d_gradients (the test oracle in
// tests/kernels/oracles.py), one grid per (batch, channel): the forward's g and h recomputed into
// a per-thread workspace, then the grid walked backwards with the adjoint carries (see
// backward_grid).
// cross_selective_scan_2d_forward: SS2D's routes of a 2D map walked in place through a pixel table
// (as cross_selective_scan_forward of selective_scan_cpu.cpp), each route's steps forming a grid
// of its own width.
//
// As in the 1D kernel, tokens go in tiles: the independent per-token work (softplus, exp,
// products) over a whole tile in loops the compiler vectorises, then the recurrence over the tile.
// A tile spans grid rows (the column index just wraps), so narrow grids still get long
// vectorised loops. The backward keeps the whole grid instead (its L x N states fit a CPU's
// caches at VMamba's sizes): the column recurrences of a row are independent of each other, one
// vectorised loop per row, and the row recurrences, the only sequential work, run eight rows at a
// time so their dependency chains overlap.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t kTile = 256;

void check(const torch::Tensor& t, const char* name, int64_t dims) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dims && t.is_contiguous(), name, " must be contiguous with ", dims,
              " dims, got shape ", t.sizes());
}

void check_optional(const torch::Tensor& t, const char* name, int64_t size) {
  if (t.numel() == 0) return;  // absent
  check(t, name, 1);
  TORCH_CHECK(t.size(0) == size, name, " must have ", size, " entries, got ", t.size(0));
}

// One grid walk's inputs: rows of `length` floats indexed by pixel; B and C hold one such row
// per state.
struct GridScan {
  const float* delta;  // before bias and softplus
  const float* u;
  const float* B;
  const float* C;
  const float* A;  // (N,) of this channel
  float bias;
  float skip;
  float* y;  // the output of each token at its pixel (see kAccumulate)
};

// Scratch of one thread, reused across its channels.
struct Workspace {
  std::vector<float> step, value, drive, decay, row_state, column_state, total;
  Workspace(int64_t state, int64_t max_width)
      : step(kTile), value(kTile), drive(kTile), decay(kTile * state), row_state(state),
        column_state(max_width * state), total(kTile) {}
};

// The 2D scan of one grid of `length / width` rows; token t lives at pixel pixel_of(t) of the
// rows of `in`. pixel_of is the identity for a plain grid (the compiler then sees contiguous
// loads) and a table lookup for the routes of the fused kernel. kAccumulate: add to y (the routes
// of the fused kernel sum into one map) rather than write it.
template <bool kAccumulate, typename PixelOf>
void scan_grid(const GridScan& in, PixelOf pixel_of, int64_t length, int64_t width, int64_t state,
               bool delta_softplus, Workspace& ws) {
  // column_state[j * N + n]: h of state n in column j, for the row above the current token.
  std::fill(ws.column_state.begin(), ws.column_state.begin() + width * state, 0.f);
  std::fill(ws.row_state.begin(), ws.row_state.end(), 0.f);
  int64_t column = 0;
  for (int64_t t0 = 0; t0 < length; t0 += kTile) {
    const int64_t n_t = std::min(kTile, length - t0);
    float* st = ws.step.data();
    float* vl = ws.value.data();
    float* dv = ws.drive.data();
    for (int64_t t = 0; t < n_t; ++t) {
      const int64_t p = pixel_of(t0 + t);
      st[t] = in.delta[p];
      vl[t] = in.u[p];
    }
    for (int64_t t = 0; t < n_t; ++t) {
      float s = st[t] + in.bias;
      if (delta_softplus) s = s > 20.f ? s : std::log1p(std::exp(s));  // F.softplus's threshold
      st[t] = s;
      dv[t] = s * vl[t];
    }
    for (int64_t n = 0; n < state; ++n) {
      float* dc = ws.decay.data() + n * kTile;
      const float a = in.A[n];
      for (int64_t t = 0; t < n_t; ++t) dc[t] = std::exp(st[t] * a);
    }
    // The recurrence, one grid-row segment of the tile at a time: within a segment the column
    // just advances (no test per token); each grid row starts its row state from 0.
    float* hc = ws.column_state.data();
    for (int64_t t = 0; t < n_t;) {
      if (column == 0) std::fill(ws.row_state.begin(), ws.row_state.end(), 0.f);
      const int64_t segment_end = std::min(n_t, t + width - column);
      const int64_t to_column = column - t;  // token t of the segment is in column t + to_column
      if (state == 1) {  // VMamba v2's N = 1: the row state in a register
        const float* dc = ws.decay.data();
        float g = ws.row_state[0];
        for (; t < segment_end; ++t) {
          const int64_t p = pixel_of(t0 + t);
          g = dc[t] * g + dv[t] * in.B[p];
          const float h = dc[t] * hc[t + to_column] + g;
          hc[t + to_column] = h;
          const float out = h * in.C[p] + in.skip * vl[t];
          in.y[p] = kAccumulate ? in.y[p] + out : out;
        }
        ws.row_state[0] = g;
      } else {
        float* g = ws.row_state.data();
        for (; t < segment_end; ++t) {
          const int64_t p = pixel_of(t0 + t);
          float* hj = hc + (t + to_column) * state;
          float acc = 0.f;
          // The N states are independent chains: the inner loop over n keeps several in flight.
          for (int64_t n = 0; n < state; ++n) {
            const float a = ws.decay[n * kTile + t];
            g[n] = a * g[n] + dv[t] * in.B[n * length + p];
            const float h = a * hj[n] + g[n];
            hj[n] = h;
            acc += h * in.C[n * length + p];
          }
          const float out = acc + in.skip * vl[t];
          in.y[p] = kAccumulate ? in.y[p] + out : out;
        }
      }
      column = segment_end + to_column == width ? 0 : segment_end + to_column;
    }
  }
}

// One grid's backward: its forward inputs (GridScan, y unused), the output gradient, and where its
// gradients go. grad_B and grad_C take this channel's share of its group's dB and dC.
struct GridGrad {
  const float* grad_y;
  float* grad_u;
  float* grad_delta;  // with respect to delta before bias and softplus
  float* grad_B;      // (N, L), added to
  float* grad_C;      // (N, L), added to
  float* grad_A;      // (N,) of this (batch, channel)
  float* grad_skip;   // of this (batch, channel)
  float* grad_bias;   // of this (batch, channel)
};

// Scratch of one thread for the backward, reused across its channels: the forward recomputed over
// the whole grid (state-major: [n * L + t]), the adjoints of one state, per-token sums over
// states, and row buffers.
struct BackwardWorkspace {
  std::vector<float> step, slope, drive, decay, rows, columns, gamma, beta, grad_step, grad_u;
  std::vector<float> column_carry, grad_log_decay, zeros;  // one grid row each
  BackwardWorkspace(int64_t length, int64_t width, int64_t state)
      : step(length), slope(length), drive(length), decay(length * state), rows(length * state),
        columns(length * state), gamma(length), beta(length), grad_step(length), grad_u(length),
        column_carry(width), grad_log_decay(width), zeros(width) {}
};

// The row recurrences are the only sequential work, one chain per grid row and each a few cycles
// of latency per token; kRows rows at once (rows of `width` floats, one after another) keep that
// many independent chains in flight, which the compiler holds in registers.
constexpr int kRowsAtOnce = 8;

// g[i,j] = a[i,j] g[i,j-1] + drive[i,j] b[i,j], g = 0 left of column 0.
template <int kRows>
void row_states(int64_t width, const float* __restrict__ a, const float* __restrict__ drive,
                const float* __restrict__ b, float* __restrict__ g) {
  float carry[kRows] = {};
  for (int64_t j = 0; j < width; ++j) {
    for (int k = 0; k < kRows; ++k) {
      const int64_t t = k * width + j;
      carry[k] = a[t] * carry[k] + drive[t] * b[t];
      g[t] = carry[k];
    }
  }
}

// beta[i,j] = gamma[i,j] + a[i,j+1] beta[i,j+1], beta = gamma in the last column.
template <int kRows>
void row_adjoints(int64_t width, const float* __restrict__ a, const float* __restrict__ gamma,
                  float* __restrict__ beta) {
  float right[kRows] = {};  // a[i,j+1] beta[i,j+1]
  for (int64_t j = width - 1; j >= 0; --j) {
    for (int k = 0; k < kRows; ++k) {
      const int64_t t = k * width + j;
      beta[t] = gamma[t] + right[k];
      right[k] = a[t] * beta[t];
    }
  }
}

// `pass` over all `height` rows of a grid: kRowsAtOnce rows at a time, then the rest one by one.
template <typename Pass8, typename Pass1>
void over_rows(int64_t height, int64_t width, Pass8 pass8, Pass1 pass1) {
  int64_t i = 0;
  for (; i + kRowsAtOnce <= height; i += kRowsAtOnce) pass8(i * width);
  for (; i < height; ++i) pass1(i * width);
}

// The chain rule over one grid row of one state, from its adjoints gamma, beta and the forward's
// h of the row above (h_up) and g of the row (g, whose j-1 is the left neighbour). Separate
// restrict-qualified arguments let the compiler vectorise it (the pointers never overlap).
// Returns this row's share of dA.
float chain_rule_row(int64_t width, float a_scale, const float* __restrict__ gamma,
                     const float* __restrict__ beta, const float* __restrict__ h_up,
                     const float* __restrict__ g, const float* __restrict__ h,
                     const float* __restrict__ decay, const float* __restrict__ step,
                     const float* __restrict__ drive, const float* __restrict__ u,
                     const float* __restrict__ b, const float* __restrict__ dy,
                     float* __restrict__ grad_log_decay, float* __restrict__ grad_step,
                     float* __restrict__ grad_u, float* __restrict__ grad_b,
                     float* __restrict__ grad_c) {
  // dL/da a = (gamma h[i-1,j] + beta g[i,j-1]) a, with g = 0 left of column 0.
  for (int64_t j = 0; j < width; ++j) grad_log_decay[j] = gamma[j] * h_up[j];
  for (int64_t j = 1; j < width; ++j) grad_log_decay[j] += beta[j] * g[j - 1];
  float grad_a = 0.f;
  for (int64_t j = 0; j < width; ++j) {
    const float gld = grad_log_decay[j] * decay[j];
    grad_step[j] += gld * a_scale + beta[j] * u[j] * b[j];
    grad_u[j] += beta[j] * step[j] * b[j];
    grad_b[j] += beta[j] * drive[j];
    grad_c[j] += h[j] * dy[j];
    grad_a += gld * step[j];
  }
  return grad_a;
}

// The gradients of one height x width grid, as tests/kernels/oracles.py computes them:
//   gamma = dL/dg: gamma[i,j] = C dy + a[i+1,j] gamma[i+1,j]   (reverse column pass)
//   beta = dL/dx:  beta[i,j] = gamma + a[i,j+1] beta[i,j+1]     (reverse row pass)
//   dL/da = gamma h[i-1,j] + beta g[i,j-1]
// The column passes (forward h, adjoint gamma) go a whole row at a time, vectorised across the
// columns; the row passes (forward g, adjoint beta) several rows at a time (row_states,
// row_adjoints); the chain rule a row at a time.
void backward_grid(const GridScan& in, const GridGrad& out, int64_t height, int64_t width,
                   int64_t state, bool delta_softplus, BackwardWorkspace& ws) {
  const int64_t length = height * width;
  float* __restrict__ step = ws.step.data();
  float* __restrict__ slope = ws.slope.data();  // dstep/draw: softplus' = sigmoid, or 1
  float* __restrict__ drive = ws.drive.data();  // step * u: x = drive * B
  const float* __restrict__ raw_delta = in.delta;
  const float* __restrict__ u = in.u;
  if (delta_softplus) {
    for (int64_t t = 0; t < length; ++t) {
      const float raw = raw_delta[t] + in.bias;
      const float e = std::exp(raw);
      // F.softplus's threshold; above it the step is raw and its slope 1 (e may be inf there).
      step[t] = raw > 20.f ? raw : std::log1p(e);
      slope[t] = raw > 20.f ? 1.f : e / (1.f + e);
    }
  } else {
    for (int64_t t = 0; t < length; ++t) step[t] = raw_delta[t] + in.bias;
  }
  for (int64_t t = 0; t < length; ++t) drive[t] = step[t] * u[t];
  // The forward again, keeping g (rows) and h (columns) of every token and state.
  for (int64_t n = 0; n < state; ++n) {
    float* __restrict__ a = ws.decay.data() + n * length;
    float* __restrict__ g = ws.rows.data() + n * length;
    float* __restrict__ h = ws.columns.data() + n * length;
    const float* __restrict__ b = in.B + n * length;
    const float an = in.A[n];
    for (int64_t t = 0; t < length; ++t) a[t] = std::exp(step[t] * an);
    over_rows(
        height, width,
        [&](int64_t r) { row_states<kRowsAtOnce>(width, a + r, drive + r, b + r, g + r); },
        [&](int64_t r) { row_states<1>(width, a + r, drive + r, b + r, g + r); });
    std::copy(g, g + width, h);
    for (int64_t r = width; r < length; r += width) {
      for (int64_t j = 0; j < width; ++j) h[r + j] = a[r + j] * h[r - width + j] + g[r + j];
    }
  }

  float* __restrict__ grad_step = ws.grad_step.data();  // dL/dstep, summed over states
  float* __restrict__ grad_u = ws.grad_u.data();        // dL/du through the drive, likewise
  std::fill(ws.grad_step.begin(), ws.grad_step.end(), 0.f);
  std::fill(ws.grad_u.begin(), ws.grad_u.end(), 0.f);
  const float* __restrict__ dy = out.grad_y;
  float* __restrict__ gamma = ws.gamma.data();
  float* __restrict__ beta = ws.beta.data();
  float* __restrict__ column_carry = ws.column_carry.data();  // a[i+1,j] gamma[i+1,j]
  for (int64_t n = 0; n < state; ++n) {
    const float* __restrict__ a = ws.decay.data() + n * length;
    const float* g = ws.rows.data() + n * length;
    const float* h = ws.columns.data() + n * length;
    const float* __restrict__ c = in.C + n * length;
    std::fill(column_carry, column_carry + width, 0.f);  // nothing below the last row
    for (int64_t r = length - width; r >= 0; r -= width) {
      for (int64_t j = 0; j < width; ++j) {
        gamma[r + j] = c[r + j] * dy[r + j] + column_carry[j];
        column_carry[j] = a[r + j] * gamma[r + j];
      }
    }
    over_rows(
        height, width,
        [&](int64_t r) { row_adjoints<kRowsAtOnce>(width, a + r, gamma + r, beta + r); },
        [&](int64_t r) { row_adjoints<1>(width, a + r, gamma + r, beta + r); });
    float grad_a = 0.f;
    for (int64_t r = 0; r < length; r += width) {
      grad_a += chain_rule_row(width, in.A[n], gamma + r, beta + r,
                               r > 0 ? h + r - width : ws.zeros.data(), g + r, h + r, a + r,
                               step + r, drive + r, u + r, in.B + n * length + r, dy + r,
                               ws.grad_log_decay.data(), grad_step + r, grad_u + r,
                               out.grad_B + n * length + r, out.grad_C + n * length + r);
    }
    out.grad_A[n] = grad_a;
  }

  float* __restrict__ grad_delta = out.grad_delta;
  float* __restrict__ grad_u_out = out.grad_u;
  if (delta_softplus) {
    for (int64_t t = 0; t < length; ++t) grad_delta[t] = grad_step[t] * slope[t];
  } else {
    std::copy(grad_step, grad_step + length, grad_delta);
  }
  float grad_skip = 0.f, grad_bias = 0.f;
  for (int64_t t = 0; t < length; ++t) {
    grad_u_out[t] = grad_u[t] + dy[t] * in.skip;
    grad_bias += grad_delta[t];
    grad_skip += dy[t] * u[t];
  }
  *out.grad_skip = grad_skip;
  *out.grad_bias = grad_bias;
}

// The checks of the plain 2D scan's inputs (see selective_scan_2d_forward); returns the channels
// per group of B and C.
int64_t check_scan_inputs(const torch::Tensor& u, const torch::Tensor& delta,
                          const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& C,
                          const torch::Tensor& D, const torch::Tensor& delta_bias, int64_t height,
                          int64_t width) {
  check(u, "u", 3);
  check(delta, "delta", 3);
  check(A, "A", 2);
  check(B, "B", 4);
  check(C, "C", 4);
  const int64_t batch = u.size(0), dim = u.size(1), length = u.size(2);
  const int64_t groups = B.size(1), state = A.size(1);
  TORCH_CHECK(height >= 1 && width >= 1 && height * width == length, "height * width = ", height,
              " * ", width, " must equal the sequence length L = ", length, " of u");
  TORCH_CHECK(delta.sizes() == u.sizes(), "delta must have u's shape ", u.sizes(), ", got ",
              delta.sizes());
  TORCH_CHECK(A.size(0) == dim, "A must be (dim, N) with dim = ", dim, ", got ", A.sizes());
  TORCH_CHECK(groups >= 1 && dim % groups == 0 && B.size(0) == batch && B.size(2) == state &&
                  B.size(3) == length,
              "B must be (batch, G, N, L) = (", batch, ", G, ", state, ", ", length,
              ") with G dividing dim, got ", B.sizes());
  TORCH_CHECK(C.sizes() == B.sizes(), "C must have B's shape ", B.sizes(), ", got ", C.sizes());
  check_optional(D, "D", dim);
  check_optional(delta_bias, "delta_bias", dim);
  return dim / groups;
}

}  // namespace

// u, delta: (batch, dim, H*W); A: (dim, N); B, C: (batch, G, N, H*W); D, delta_bias: (dim,) or
// empty. Returns float32 (batch, dim, H*W).
torch::Tensor selective_scan_2d_forward(const torch::Tensor& u, const torch::Tensor& delta,
                                        const torch::Tensor& A, const torch::Tensor& B,
                                        const torch::Tensor& C, const torch::Tensor& D,
                                        const torch::Tensor& delta_bias, bool delta_softplus,
                                        int64_t height, int64_t width) {
  const int64_t per_group = check_scan_inputs(u, delta, A, B, C, D, delta_bias, height, width);
  const int64_t batch = u.size(0), dim = u.size(1), length = u.size(2);
  const int64_t groups = B.size(1), state = A.size(1);
  const bool has_d = D.numel() > 0, has_bias = delta_bias.numel() > 0;
  auto y = torch::empty_like(u);
  const float *pu = u.data_ptr<float>(), *pdelta = delta.data_ptr<float>();
  const float *pA = A.data_ptr<float>(), *pB = B.data_ptr<float>(), *pC = C.data_ptr<float>();
  const float* pD = has_d ? D.data_ptr<float>() : nullptr;
  const float* pbias = has_bias ? delta_bias.data_ptr<float>() : nullptr;
  float* py = y.data_ptr<float>();

  at::parallel_for(0, batch * dim, 4, [&](int64_t begin, int64_t end) {
    Workspace ws(state, width);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / dim, d = row % dim, g = d / per_group;
      const GridScan in{pdelta + row * length,
                        pu + row * length,
                        pB + (b * groups + g) * state * length,
                        pC + (b * groups + g) * state * length,
                        pA + d * state,
                        has_bias ? pbias[d] : 0.f,
                        has_d ? pD[d] : 0.f,
                        py + row * length};
      scan_grid<false>(in, [](int64_t t) { return t; }, length, width, state, delta_softplus, ws);
    }
  });
  return y;
}

// The gradients of selective_scan_2d_forward for the output gradient grad_y (float32, u's shape):
// (du, ddelta, dA, dB, dC, dD, ddelta_bias), all float32; dD and ddelta_bias are zeros when D or
// delta_bias is absent. dB and dC sum over the channels of a group: the channels of a group go in
// chunks of kChannelsPerChunk, each chunk adding into its own (N, L) partial, and the partials are
// summed afterwards in a fixed order: no atomic adds, the same bits whatever the thread count.
std::vector<torch::Tensor> selective_scan_2d_backward(
    const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
    const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
    const torch::Tensor& delta_bias, const torch::Tensor& grad_y, bool delta_softplus,
    int64_t height, int64_t width) {
  const int64_t per_group = check_scan_inputs(u, delta, A, B, C, D, delta_bias, height, width);
  check(grad_y, "grad_y", 3);
  TORCH_CHECK(grad_y.sizes() == u.sizes(), "grad_y must have u's shape ", u.sizes(), ", got ",
              grad_y.sizes());
  const int64_t batch = u.size(0), dim = u.size(1), length = u.size(2);
  const int64_t groups = B.size(1), state = A.size(1);
  const bool has_d = D.numel() > 0, has_bias = delta_bias.numel() > 0;
  constexpr int64_t kChannelsPerChunk = 8;
  const int64_t chunks = (per_group + kChannelsPerChunk - 1) / kChannelsPerChunk;
  auto grad_u = torch::empty_like(u);
  auto grad_delta = torch::empty_like(u);
  auto grad_B_parts = torch::zeros({batch, groups, chunks, state, length}, u.options());
  auto grad_C_parts = torch::zeros({batch, groups, chunks, state, length}, u.options());
  auto grad_A_parts = torch::empty({batch, dim, state}, u.options());
  auto grad_D_parts = torch::empty({batch, dim}, u.options());
  auto grad_bias_parts = torch::empty({batch, dim}, u.options());
  const float *pu = u.data_ptr<float>(), *pdelta = delta.data_ptr<float>();
  const float *pA = A.data_ptr<float>(), *pB = B.data_ptr<float>(), *pC = C.data_ptr<float>();
  const float* pD = has_d ? D.data_ptr<float>() : nullptr;
  const float* pbias = has_bias ? delta_bias.data_ptr<float>() : nullptr;
  const float* pdy = grad_y.data_ptr<float>();
  float *pdu = grad_u.data_ptr<float>(), *pddelta = grad_delta.data_ptr<float>();
  float *pdB = grad_B_parts.data_ptr<float>(), *pdC = grad_C_parts.data_ptr<float>();
  float *pdA = grad_A_parts.data_ptr<float>(), *pdD = grad_D_parts.data_ptr<float>();
  float* pdbias = grad_bias_parts.data_ptr<float>();

  // Units are handed out one at a time rather than split evenly up front: on a busy machine a
  // descheduled thread would otherwise hold back its whole share. Each unit writes only its own
  // outputs, so the order they are taken in does not change the result.
  const int64_t units = batch * groups * chunks;
  std::atomic<int64_t> next_unit{0};
  at::parallel_for(0, std::min<int64_t>(units, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    BackwardWorkspace ws(length, width, state);
    for (int64_t unit = next_unit++; unit < units; unit = next_unit++) {
      const int64_t b = unit / (groups * chunks), g = unit / chunks % groups, k = unit % chunks;
      const int64_t first = g * per_group + k * kChannelsPerChunk;
      const int64_t last = std::min(first + kChannelsPerChunk, (g + 1) * per_group);
      for (int64_t d = first; d < last; ++d) {
        const int64_t row = b * dim + d;
        const int64_t group_offset = (b * groups + g) * state * length;
        const GridScan in{pdelta + row * length,
                          pu + row * length,
                          pB + group_offset,
                          pC + group_offset,
                          pA + d * state,
                          has_bias ? pbias[d] : 0.f,
                          has_d ? pD[d] : 0.f,
                          nullptr};  // no output: the backward only recomputes the states
        const GridGrad grads{pdy + row * length,
                             pdu + row * length,
                             pddelta + row * length,
                             pdB + unit * state * length,  // this chunk's partial
                             pdC + unit * state * length,
                             pdA + row * state,
                             pdD + row,
                             pdbias + row};
        backward_grid(in, grads, height, width, state, delta_softplus, ws);
      }
    }
  });
  // Fixed-order reductions over the chunks of a group and over the batch.
  auto grad_B = chunks == 1 ? grad_B_parts.squeeze(2) : grad_B_parts.sum(2);
  auto grad_C = chunks == 1 ? grad_C_parts.squeeze(2) : grad_C_parts.sum(2);
  auto grad_D = has_d ? grad_D_parts.sum(0) : torch::zeros({dim}, u.options());
  auto grad_bias = has_bias ? grad_bias_parts.sum(0) : torch::zeros({dim}, u.options());
  return {grad_u, grad_delta, grad_A_parts.sum(0), grad_B, grad_C, grad_D, grad_bias};
}

// cross_selective_scan_forward of selective_scan_cpu.cpp with the 2D scan on every route: route
// k visits pixel pixels[k, t] at step t, and its steps form a grid of widths[k] columns (step t
// is row t / widths[k], column t % widths[k]). delta is formed per channel and route from its
// low rank projection, in L1; the routes' outputs are summed in place.
//   x: (batch, dim, H, W); dt_low: (batch, K, R, L); dt_weight: (K, dim, R); A: (K * dim, N);
//   B, C: (batch, K, N, L) in pixel order; D, delta_bias: (K * dim,) or empty;
//   pixels: int64 (K, L); widths: int64 (K,). Returns float32 (batch, dim, L).
torch::Tensor cross_selective_scan_2d_forward(
    const torch::Tensor& x, const torch::Tensor& dt_low, const torch::Tensor& dt_weight,
    const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
    const torch::Tensor& delta_bias, bool delta_softplus, const torch::Tensor& pixels,
    const torch::Tensor& widths) {
  check(x, "x", 4);
  check(dt_low, "dt_low", 4);
  check(dt_weight, "dt_weight", 3);
  check(A, "A", 2);
  check(B, "B", 4);
  check(C, "C", 4);
  const int64_t batch = x.size(0), dim = x.size(1), length = x.size(2) * x.size(3);
  const int64_t routes = pixels.size(0), rank = dt_low.size(2), state = A.size(1);
  TORCH_CHECK(pixels.device().is_cpu() && pixels.scalar_type() == torch::kInt64 &&
                  pixels.dim() == 2 && pixels.size(1) == length && pixels.is_contiguous(),
              "pixels must be a contiguous int64 (routes, H*W) CPU tensor, got ",
              pixels.scalar_type(), " ", pixels.sizes());
  TORCH_CHECK(widths.device().is_cpu() && widths.scalar_type() == torch::kInt64 &&
                  widths.dim() == 1 && widths.size(0) == routes && widths.is_contiguous(),
              "widths must be a contiguous int64 (routes,) CPU tensor with routes = ", routes,
              ", got ", widths.scalar_type(), " ", widths.sizes());
  TORCH_CHECK(dt_low.size(0) == batch && dt_low.size(1) == routes && dt_low.size(3) == length,
              "dt_low must be (batch, routes, R, H*W), got ", dt_low.sizes());
  TORCH_CHECK(dt_weight.size(0) == routes && dt_weight.size(1) == dim && dt_weight.size(2) == rank,
              "dt_weight must be (routes, dim, R), got ", dt_weight.sizes());
  TORCH_CHECK(A.size(0) == routes * dim, "A must be (routes * dim, N), got ", A.sizes());
  TORCH_CHECK(B.size(0) == batch && B.size(1) == routes && B.size(2) == state &&
                  B.size(3) == length && C.sizes() == B.sizes(),
              "B and C must be (batch, routes, N, H*W), got ", B.sizes(), " and ", C.sizes());
  check_optional(D, "D", routes * dim);
  check_optional(delta_bias, "delta_bias", routes * dim);
  const int64_t* route_widths = widths.data_ptr<int64_t>();
  int64_t max_width = 1;
  for (int64_t k = 0; k < routes; ++k) {
    TORCH_CHECK(route_widths[k] >= 1 && length % route_widths[k] == 0, "widths[", k, "] = ",
                route_widths[k], " must be a positive divisor of H*W = ", length);
    max_width = std::max(max_width, route_widths[k]);
  }
  const int64_t* route_pixels = pixels.data_ptr<int64_t>();
  for (int64_t i = 0; i < routes * length; ++i) {  // the kernel reads and writes at these pixels
    TORCH_CHECK(route_pixels[i] >= 0 && route_pixels[i] < length, "pixels[", i / length, ", ",
                i % length, "] = ", route_pixels[i], " is outside the map of H*W = ", length);
  }
  const bool has_d = D.numel() > 0, has_bias = delta_bias.numel() > 0;
  auto y = torch::zeros({batch, dim, length}, x.options());
  const float *px = x.data_ptr<float>(), *plow = dt_low.data_ptr<float>();
  const float* pw = dt_weight.data_ptr<float>();
  const float *pA = A.data_ptr<float>(), *pB = B.data_ptr<float>(), *pC = C.data_ptr<float>();
  const float* pD = has_d ? D.data_ptr<float>() : nullptr;
  const float* pbias = has_bias ? delta_bias.data_ptr<float>() : nullptr;
  float* py = y.data_ptr<float>();

  at::parallel_for(0, batch * dim, 4, [&](int64_t begin, int64_t end) {
    Workspace ws(state, max_width);
    std::vector<float> delta_row(length);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / dim, d = row % dim;
      for (int64_t k = 0; k < routes; ++k) {
        const int64_t channel = k * dim + d;
        // delta of this channel and route, in pixel order: sum_r W[k, d, r] * dt_low[b, k, r].
        float* dr = delta_row.data();
        const float* wk = pw + channel * rank;
        const float* lowk = plow + (b * routes + k) * rank * length;
        std::fill(delta_row.begin(), delta_row.end(), 0.f);
        for (int64_t r = 0; r < rank; ++r) {
          const float w = wk[r];
          const float* lr = lowk + r * length;
          for (int64_t p = 0; p < length; ++p) dr[p] += w * lr[p];
        }
        const GridScan in{dr,
                          px + row * length,
                          pB + (b * routes + k) * state * length,
                          pC + (b * routes + k) * state * length,
                          pA + channel * state,
                          has_bias ? pbias[channel] : 0.f,
                          has_d ? pD[channel] : 0.f,
                          py + row * length};
        const int64_t* steps = route_pixels + k * length;
        scan_grid<true>(in, [steps](int64_t t) { return steps[t]; }, length, route_widths[k], state,
                  delta_softplus, ws);
      }
    }
  });
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("selective_scan_2d_forward", &selective_scan_2d_forward,
        "2D selective scan of 2DMamba, no grad (CPU)");
  m.def("selective_scan_2d_backward", &selective_scan_2d_backward,
        "gradients of the 2D selective scan, recomputing its forward (CPU)");
  m.def("cross_selective_scan_2d_forward", &cross_selective_scan_2d_forward,
        "SS2D four-route 2D scan with cross-scan and cross-merge fused, no grad (CPU)");
}
