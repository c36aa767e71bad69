// CPU 2D selective scan (2DMamba's recurrence), forward only: the backward is the closed form of
// selective_scan_2d/gradients.py on the 1D extension's linear_recurrence.
//
// Per channel and state, on an H x W grid in row-major token order, with a = exp(delta A) and
// x = delta B u:  g[i,j] = a g[i,j-1] + x (row pass),  h[i,j] = a h[i-1,j] + g (column pass),
// y = <C, h> + D u. Walking the tokens in order needs only two carries: the row state g of the
// current row, and the column states h[i-1, :] of the row above (W x N floats).
//
// selective_scan_2d_forward: one grid per (batch, channel).
// cross_selective_scan_2d_forward: SS2D's routes of a 2D map walked in place through a pixel table
// (as cross_selective_scan_forward of selective_scan_cpu.cpp), each route's steps forming a grid
// of its own width.
//
// As in the 1D kernel, tokens go in tiles: the independent per-token work (softplus, exp,
// products) over a whole tile in loops the compiler vectorises, then the recurrence over the tile.
// A tile spans grid rows (the column index just wraps), so narrow grids still get long
// vectorised loops.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
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

}  // namespace

// u, delta: (batch, dim, H*W); A: (dim, N); B, C: (batch, G, N, H*W); D, delta_bias: (dim,) or
// empty. Returns float32 (batch, dim, H*W).
torch::Tensor selective_scan_2d_forward(const torch::Tensor& u, const torch::Tensor& delta,
                                        const torch::Tensor& A, const torch::Tensor& B,
                                        const torch::Tensor& C, const torch::Tensor& D,
                                        const torch::Tensor& delta_bias, bool delta_softplus,
                                        int64_t height, int64_t width) {
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
  const int64_t per_group = dim / groups;
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
  m.def("cross_selective_scan_2d_forward", &cross_selective_scan_2d_forward,
        "SS2D four-route 2D scan with cross-scan and cross-merge fused, no grad (CPU)");
}
