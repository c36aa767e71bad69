// CPU selective scan.
//
// linear_recurrence: h_t = a_t * h_{t-1} + b_t along the rows of (rows, L) float32 tensors, the
// token-by-token dependency that PyTorch has no single op for (used with autograd).
//
// selective_scan_forward: the whole scan of one (batch, channel) row in one pass, for inference.
// route_scan_forward: SS2D's routes or V2M's lines (a table of pixels) of a channels-last 2D map,
// walked in place a block of channels at a time.
// Tokens are processed in tiles: first the independent per-token work (softplus, exp, products)
// over a tile, vectorised (AVX2 softplus and exp from vector_math.h, or loops the compiler
// vectorises), then the recurrence over the tile in L1.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "vector_math.h"

namespace {

constexpr int64_t kTile = 256;

void check(const torch::Tensor& t, const char* name, int64_t dims) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, " must be float32");
  TORCH_CHECK(t.dim() == dims && t.is_contiguous(), name, " must be contiguous with ", dims,
              " dims");
}

// The selective scan's operands, as the forward and the backward take them: u, delta (batch, dim,
// L); A (dim, N); B, C (batch, G, N, L); D, delta_bias (dim,) or empty.
void check_scan_inputs(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                       const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
                       const torch::Tensor& delta_bias) {
  check(u, "u", 3);
  check(delta, "delta", 3);
  check(A, "A", 2);
  check(B, "B", 4);
  check(C, "C", 4);
  if (D.numel() > 0) check(D, "D", 1);
  if (delta_bias.numel() > 0) check(delta_bias, "delta_bias", 1);
}

// A tile's steps (softplus(delta + bias), or delta + bias) and drives (step * u) for its n_t
// tokens. With AVX2 a run of 16 tokens at a time, the tail through a zero-padded copy, so that
// the short rows and columns of a 2D scan (V2M's: 7 to 56 tokens) are vectorised too; st and dv
// must have room for n_t rounded up to 16.
void tile_steps(const float* dr, const float* ur, float bias, bool softplus, int64_t n_t,
                float* st, float* dv) {
#ifdef VMAMBA_AVX2
  const __m256 b = _mm256_set1_ps(bias);
  float tail_delta[16], tail_u[16];
  for (int64_t t = 0; t < n_t; t += 16) {
    const float *dt = dr + t, *ut = ur + t;
    if (t + 16 > n_t) {
      std::fill(tail_delta, tail_delta + 16, 0.f);
      std::fill(tail_u, tail_u + 16, 0.f);
      std::copy(dt, dt + (n_t - t), tail_delta);
      std::copy(ut, ut + (n_t - t), tail_u);
      dt = tail_delta;
      ut = tail_u;
    }
    __m256 s[2] = {_mm256_add_ps(_mm256_loadu_ps(dt), b),
                   _mm256_add_ps(_mm256_loadu_ps(dt + 8), b)};
    if (softplus) vmamba::softplus_avx2(s);
    for (int i = 0; i < 2; ++i) {
      _mm256_storeu_ps(st + t + 8 * i, s[i]);
      _mm256_storeu_ps(dv + t + 8 * i, _mm256_mul_ps(s[i], _mm256_loadu_ps(ut + 8 * i)));
    }
  }
#else
  for (int64_t t = 0; t < n_t; ++t) {
    float x = dr[t] + bias;
    if (softplus) x = x > 20.f ? x : std::log1p(std::exp(x));
    st[t] = x;
    dv[t] = x * ur[t];
  }
#endif
}

// The decays exp(step * a) of a tile's n_t tokens for one state (16 at a time with AVX2: the
// steps past n_t are finite, from tile_steps' padding or an earlier tile, and their decays unused).
void tile_decays(const float* st, float a, int64_t n_t, float* dc) {
#ifdef VMAMBA_AVX2
  const __m256 rate = _mm256_set1_ps(a);
  for (int64_t t = 0; t < n_t; t += 16) {
    __m256 x[2] = {_mm256_mul_ps(_mm256_loadu_ps(st + t), rate),
                   _mm256_mul_ps(_mm256_loadu_ps(st + t + 8), rate)};
    vmamba::exp_avx2(x);
    _mm256_storeu_ps(dc + t, x[0]);
    _mm256_storeu_ps(dc + t + 8, x[1]);
  }
#else
  for (int64_t t = 0; t < n_t; ++t) dc[t] = std::exp(st[t] * a);
#endif
}

}  // namespace

// reverse=true runs from the last token to the first (the adjoint recurrence of the backward).
torch::Tensor linear_recurrence(const torch::Tensor& a, const torch::Tensor& b, bool reverse) {
  check(a, "a", 2);
  check(b, "b", 2);
  TORCH_CHECK(a.sizes() == b.sizes(), "a and b must have the same shape");
  auto h = torch::empty_like(b);
  const int64_t rows = a.size(0), length = a.size(1);
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* ph = h.data_ptr<float>();
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* ar = pa + r * length;
      const float* br = pb + r * length;
      float* hr = ph + r * length;
      float state = 0.f;
      if (!reverse) {
        for (int64_t t = 0; t < length; ++t) {
          state = ar[t] * state + br[t];
          hr[t] = state;
        }
      } else {
        for (int64_t t = length - 1; t >= 0; --t) {
          state = ar[t] * state + br[t];
          hr[t] = state;
        }
      }
    }
  });
  return h;
}

torch::Tensor selective_scan_forward(const torch::Tensor& u, const torch::Tensor& delta,
                                     const torch::Tensor& A, const torch::Tensor& B,
                                     const torch::Tensor& C, const torch::Tensor& D,
                                     const torch::Tensor& delta_bias, bool delta_softplus) {
  check_scan_inputs(u, delta, A, B, C, D, delta_bias);
  const int64_t batch = u.size(0), dim = u.size(1), length = u.size(2);
  const int64_t groups = B.size(1), state = A.size(1);
  const int64_t per_group = dim / groups;
  const bool has_d = D.numel() > 0, has_bias = delta_bias.numel() > 0;
  auto y = torch::empty_like(u);
  const float *pu = u.data_ptr<float>(), *pdelta = delta.data_ptr<float>();
  const float *pA = A.data_ptr<float>(), *pB = B.data_ptr<float>(), *pC = C.data_ptr<float>();
  const float* pD = has_d ? D.data_ptr<float>() : nullptr;
  const float* pbias = has_bias ? delta_bias.data_ptr<float>() : nullptr;
  float* py = y.data_ptr<float>();

  at::parallel_for(0, batch * dim, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> step(kTile), drive(kTile), decay(kTile * state), h(state);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / dim, d = row % dim, g = d / per_group;
      const float* ur = pu + row * length;
      const float* dr = pdelta + row * length;
      const float* Bg = pB + (b * groups + g) * state * length;
      const float* Cg = pC + (b * groups + g) * state * length;
      const float* Ad = pA + d * state;
      const float bias = has_bias ? pbias[d] : 0.f, skip = has_d ? pD[d] : 0.f;
      float* yr = py + row * length;
      std::fill(h.begin(), h.end(), 0.f);
      for (int64_t t0 = 0; t0 < length; t0 += kTile) {
        const int64_t n_t = std::min(kTile, length - t0);
        float* st = step.data();
        float* dv = drive.data();
        tile_steps(dr + t0, ur + t0, bias, delta_softplus, n_t, st, dv);
        for (int64_t n = 0; n < state; ++n) tile_decays(st, Ad[n], n_t, decay.data() + n * kTile);
        if (state == 1) {
          const float* Bt = Bg + t0;
          const float* Ct = Cg + t0;
          const float* dc = decay.data();
          float hs = h[0];
          for (int64_t t = 0; t < n_t; ++t) {
            hs = dc[t] * hs + dv[t] * Bt[t];
            yr[t0 + t] = hs * Ct[t] + skip * ur[t0 + t];
          }
          h[0] = hs;
        } else {
          for (int64_t t = 0; t < n_t; ++t) {
            float acc = 0.f;
            for (int64_t n = 0; n < state; ++n) {
              const float hn = decay[n * kTile + t] * h[n] + dv[t] * Bg[n * length + t0 + t];
              h[n] = hn;
              acc += hn * Cg[n * length + t0 + t];
            }
            yr[t0 + t] = acc + skip * ur[t0 + t];
          }
        }
      }
    }
  });
  return y;
}

// The gradients of selective_scan_forward, one pass per (batch, group): each channel of the group
// recomputes its steps, decays and states, then walks back with the adjoint state
// g_t = C_t dy_t + a_{t+1} g_{t+1} (tests/kernels/oracles.py has the same math in tensor ops,
// and its oracle). dB and dC sum over the group's channels in channel order, so the result does
// not depend on the thread count; nothing of size (batch, dim, N, L) is made.
//   u, delta, grad_y: (batch, dim, L); A: (dim, N); B, C: (batch, G, N, L); D, delta_bias: (dim,)
//   or empty. Returns du, ddelta, dA (dim, N), dB, dC, dD (dim,), ddelta_bias (dim,), float32
//   (dD and ddelta_bias zeros when absent).
std::vector<torch::Tensor> selective_scan_backward(
    const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
    const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
    const torch::Tensor& delta_bias, const torch::Tensor& grad_y, bool delta_softplus) {
  check_scan_inputs(u, delta, A, B, C, D, delta_bias);
  check(grad_y, "grad_y", 3);
  const int64_t batch = u.size(0), dim = u.size(1), length = u.size(2);
  const int64_t groups = B.size(1), state = A.size(1), per_group = dim / groups;
  const bool has_d = D.numel() > 0, has_bias = delta_bias.numel() > 0;
  auto du = torch::empty_like(u), ddelta = torch::empty_like(u);
  auto dB = torch::zeros_like(B), dC = torch::zeros_like(C);
  // per batch element, summed over the batch below: each (batch, group) unit owns its rows
  auto dA = torch::zeros({batch, dim, state}, u.options());
  auto dD = torch::zeros({batch, dim}, u.options()), dbias = torch::zeros({batch, dim}, u.options());
  const float *pu = u.data_ptr<float>(), *pdelta = delta.data_ptr<float>();
  const float *pA = A.data_ptr<float>(), *pB = B.data_ptr<float>(), *pC = C.data_ptr<float>();
  const float* pD = has_d ? D.data_ptr<float>() : nullptr;
  const float* pbias = has_bias ? delta_bias.data_ptr<float>() : nullptr;
  const float* pdy = grad_y.data_ptr<float>();
  float *pdu = du.data_ptr<float>(), *pddelta = ddelta.data_ptr<float>();
  float *pdA = dA.data_ptr<float>(), *pdB = dB.data_ptr<float>(), *pdC = dC.data_ptr<float>();
  float *pdD = dD.data_ptr<float>(), *pdbias = dbias.data_ptr<float>();

  at::parallel_for(0, batch * groups, 1, [&](int64_t begin, int64_t end) {
    // per channel: steps, their softplus slope, decays and states (time-major, N per token)
    std::vector<float> step(length), slope(length), decay(length * state), h(length * state);
    std::vector<float> g(state), dA_row(state);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / groups, grp = unit % groups;
      const float* Bg = pB + (b * groups + grp) * state * length;
      const float* Cg = pC + (b * groups + grp) * state * length;
      float* dBg = pdB + (b * groups + grp) * state * length;
      float* dCg = pdC + (b * groups + grp) * state * length;
      for (int64_t d = grp * per_group; d < (grp + 1) * per_group; ++d) {
        const int64_t row = b * dim + d;
        const float* ur = pu + row * length;
        const float* dr = pdelta + row * length;
        const float* dyr = pdy + row * length;
        const float* Ad = pA + d * state;
        const float bias = has_bias ? pbias[d] : 0.f, skip = has_d ? pD[d] : 0.f;
        for (int64_t t = 0; t < length; ++t) {  // vectorised: softplus and its slope
          const float raw = dr[t] + bias;
          if (delta_softplus) {
            step[t] = raw > 20.f ? raw : std::log1p(std::exp(raw));
            slope[t] = 1.f / (1.f + std::exp(-raw));
          } else {
            step[t] = raw;
            slope[t] = 1.f;
          }
        }
        for (int64_t n = 0; n < state; ++n) {
          const float a = Ad[n];
          float* dc = decay.data() + n * length;
          for (int64_t t = 0; t < length; ++t) dc[t] = std::exp(step[t] * a);
        }
        for (int64_t n = 0; n < state; ++n) {  // the forward states, state by state
          const float* dc = decay.data() + n * length;
          const float* Bn = Bg + n * length;
          float* hn = h.data() + n * length;
          float carry = 0.f;
          for (int64_t t = 0; t < length; ++t) {
            carry = dc[t] * carry + step[t] * ur[t] * Bn[t];
            hn[t] = carry;
          }
        }
        std::fill(dA_row.begin(), dA_row.end(), 0.f);
        float dD_acc = 0.f, dbias_acc = 0.f;
        std::fill(g.begin(), g.end(), 0.f);
        for (int64_t t = length - 1; t >= 0; --t) {
          const float dy = dyr[t], s = step[t], x = ur[t];
          float grad_step = 0.f, grad_u = dy * skip;
          for (int64_t n = 0; n < state; ++n) {
            const float* dc = decay.data() + n * length;
            const float next = t + 1 < length ? dc[t + 1] : 0.f;
            const float Bt = Bg[n * length + t], Ct = Cg[n * length + t];
            const float gn = next * g[n] + Ct * dy;
            g[n] = gn;
            const float h_prev = t > 0 ? h[n * length + t - 1] : 0.f;
            const float grad_log_decay = gn * h_prev * dc[t];
            grad_step += grad_log_decay * Ad[n] + gn * x * Bt;
            grad_u += gn * s * Bt;
            dBg[n * length + t] += gn * s * x;
            dCg[n * length + t] += h[n * length + t] * dy;
            dA_row[n] += grad_log_decay * s;
          }
          const float grad_raw = grad_step * slope[t];
          pdu[row * length + t] = grad_u;
          pddelta[row * length + t] = grad_raw;
          dD_acc += dy * x;
          dbias_acc += grad_raw;
        }
        for (int64_t n = 0; n < state; ++n) pdA[row * state + n] = dA_row[n];
        pdD[row] = dD_acc;
        pdbias[row] = dbias_acc;
      }
    }
  });
  return {du, ddelta, dA.sum(0), dB, dC, dD.sum(0), dbias.sum(0)};
}

// Routes over a channels-last map in one pass per block of channels, for inference: SS2D's four
// routes (each one sequence over the whole map, the outputs summed) and V2M's lines (each route
// cut into segments, one row or column each, that start from a zero state).
// Channels are independent recurrences, so a block of kLanes of them advances together in vector
// registers: every token read is a contiguous run of kLanes floats of x, delta and y, whichever
// order the route walks the pixels in, and the recurrence's latency is paid once per block, not
// once per channel. Summed routes are added into y in place, so neither the routes nor their
// merge are materialised. The routes are the rows of `pixels` (int64 (K, L): the pixel each
// route visits at each step), the tables of kernels/common/routes.py and v2m_scan's lines.
//   x: (batch, H, W, dim), read by every route, or (batch, H, W, K * dim) with x_per_route
//   (route k reads channels k * dim ...); delta: (K, batch, L, dim) before its bias, in pixel
//   order; projected: (batch, L, K, R + 2N), the per-route projections of each pixel (B at R, C
//   at R + N); A: (K * dim, N); D, delta_bias: (K * dim,) or empty; segment: the tokens of one
//   sequence (divides L; L for one sequence per route). Returns y: (batch, H, W, dim), the
//   routes summed, or (batch, H, W, K * dim) with y_per_route.
namespace {

constexpr int64_t kLanes = 16;  // channels per block: two AVX2 registers
constexpr int64_t kSteps = 32;  // tokens per tile of the AVX2 path

struct RouteScanArgs {
  const float *x, *delta, *projected, *A, *D, *bias;
  const int64_t* route_pixels;
  float* y;
  int64_t batch, dim, length, routes, state, width_of_projection, rank;
  bool softplus, x_per_route, y_per_route;
};

// Where one route of one (batch, channel block) reads and writes.
struct RouteView {
  const float *x, *delta, *projected, *A, *D, *bias;  // x, delta at the block's first channel
  const int64_t* pixel;
  float* y;
  int64_t dim, length, state, projection_stride;  // projection_stride: between two pixels
  int64_t x_stride, y_stride;                      // between two pixels of x, of y
  bool softplus;
  bool first;  // a summed route after the first adds to y, any other writes: no zeroing
};

RouteView route_view(const RouteScanArgs& a, int64_t b, int64_t d0, int64_t k) {
  const int64_t channel = k * a.dim + d0, plane = a.length * a.dim;
  const int64_t x_stride = a.x_per_route ? a.routes * a.dim : a.dim;
  const int64_t y_stride = a.y_per_route ? a.routes * a.dim : a.dim;
  return {a.x + b * a.length * x_stride + (a.x_per_route ? k * a.dim : 0) + d0,
          a.delta + (k * a.batch + b) * plane + d0,
          a.projected + (b * a.length * a.routes + k) * a.width_of_projection + a.rank,
          a.A + channel * a.state,
          a.D ? a.D + channel : nullptr,
          a.bias ? a.bias + channel : nullptr,
          a.route_pixels + k * a.length,
          a.y + b * a.length * y_stride + (a.y_per_route ? k * a.dim : 0) + d0,
          a.dim, a.length, a.state, a.routes * a.width_of_projection, x_stride, y_stride,
          a.softplus, k == 0 || a.y_per_route};
}

// The part of route `r` from step `start` on, `length` steps long.
RouteView segment_of(const RouteView& r, int64_t start, int64_t length) {
  RouteView part = r;
  part.pixel = r.pixel + start;
  part.length = length;
  return part;
}

// Any number of channels (the block at the end of an odd width), plain C++.
void scan_route_scalar(const RouteView& r, int64_t lanes, float* h) {
  const int64_t N = r.state;
  std::fill(h, h + N * lanes, 0.f);
  for (int64_t t = 0; t < r.length; ++t) {
    const int64_t p = r.pixel[t];
    const float* bc = r.projected + p * r.projection_stride;
    for (int64_t j = 0; j < lanes; ++j) {
      float s = r.delta[p * r.dim + j] + (r.bias ? r.bias[j] : 0.f);
      if (r.softplus) s = s > 20.f ? s : std::log1p(std::exp(s));
      const float u = r.x[p * r.x_stride + j];
      float out = r.D ? r.D[j] * u : 0.f;
      for (int64_t n = 0; n < N; ++n) {
        float& hn = h[n * lanes + j];
        hn = std::exp(s * r.A[j * N + n]) * hn + s * u * bc[n];
        out += hn * bc[N + n];
      }
      float& y = r.y[p * r.y_stride + j];
      y = r.first ? out : y + out;
    }
  }
}

#ifdef VMAMBA_AVX2
using vmamba::exp_avx2;
using vmamba::softplus_avx2;

// A route's output for 8 channels of a pixel: written by the first route, added by the others.
inline void put(float* y, __m256 value, bool first) {
  _mm256_storeu_ps(y, first ? value : _mm256_add_ps(_mm256_loadu_ps(y), value));
}

// Tokens per lockstep group of the per-token work: two tokens' four vectors at once.
constexpr int kGroup = 2;

// The steps (softplus of delta + bias) of G tokens, their 2 G vectors in lockstep.
template <int G>
void group_steps(const RouteView& r, const int64_t* pixel, __m256 bias0, __m256 bias1,
                 float* step) {
  __m256 s[2 * G];
  for (int g = 0; g < G; ++g) {
    const float* dl = r.delta + pixel[g] * r.dim;
    s[2 * g] = _mm256_add_ps(_mm256_loadu_ps(dl), bias0);
    s[2 * g + 1] = _mm256_add_ps(_mm256_loadu_ps(dl + 8), bias1);
  }
  if (r.softplus) softplus_avx2(s);
  for (int g = 0; g < G; ++g) {
    _mm256_storeu_ps(step + g * kLanes, s[2 * g]);
    _mm256_storeu_ps(step + g * kLanes + 8, s[2 * g + 1]);
  }
}

// The decays exp(step * A) of G tokens for one state.
template <int G>
void group_decays(const float* step, __m256 rate0, __m256 rate1, float* decay) {
  __m256 x[2 * G];
  for (int g = 0; g < G; ++g) {
    x[2 * g] = _mm256_mul_ps(_mm256_loadu_ps(step + g * kLanes), rate0);
    x[2 * g + 1] = _mm256_mul_ps(_mm256_loadu_ps(step + g * kLanes + 8), rate1);
  }
  exp_avx2(x);
  for (int g = 0; g < G; ++g) {
    _mm256_storeu_ps(decay + g * kLanes, x[2 * g]);
    _mm256_storeu_ps(decay + g * kLanes + 8, x[2 * g + 1]);
  }
}

// For the backward's recomputed forward, 16 lanes at a time: the steps softplus(raw) and their
// slopes sigmoid(raw) = e^(raw - softplus(raw)), and the decays e^(step * rate).
inline void steps_and_slopes_avx2(const float* raw, float* st, float* sl) {
  __m256 s[2] = {_mm256_loadu_ps(raw), _mm256_loadu_ps(raw + 8)};
  softplus_avx2(s);
  __m256 e[2] = {_mm256_sub_ps(_mm256_loadu_ps(raw), s[0]),
                 _mm256_sub_ps(_mm256_loadu_ps(raw + 8), s[1])};
  exp_avx2(e);
  _mm256_storeu_ps(st, s[0]);
  _mm256_storeu_ps(st + 8, s[1]);
  _mm256_storeu_ps(sl, e[0]);
  _mm256_storeu_ps(sl + 8, e[1]);
}

inline void decays_avx2(const float* st, const float* rate, float* dc) {
  __m256 v[2] = {_mm256_mul_ps(_mm256_loadu_ps(st), _mm256_loadu_ps(rate)),
                 _mm256_mul_ps(_mm256_loadu_ps(st + 8), _mm256_loadu_ps(rate + 8))};
  exp_avx2(v);
  _mm256_storeu_ps(dc, v[0]);
  _mm256_storeu_ps(dc + 8, v[1]);
}

// The sum of the 16 lanes of two vectors.
inline float lane_sum(__m256 a, __m256 b) {
  const __m256 s = _mm256_add_ps(a, b);
  __m128 v = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  v = _mm_add_ps(v, _mm_movehl_ps(v, v));
  v = _mm_add_ss(v, _mm_movehdup_ps(v));
  return _mm_cvtss_f32(v);
}

// What the backward's reverse walk of one route and one full block of kLanes channels reads and
// writes; pointers are at the block's first channel (x, dy, ddelta, dx) and at B (projections).
struct ReverseWalk {
  const int64_t* pixel;
  int64_t length, segment, state, dim, x_stride, y_stride, pixel_stride;
  const float *x, *dy, *projected, *step, *slope, *decay, *h, *rate, *skip;
  float *dprojected, *ddelta, *dx, *g, *dA, *dD, *dbias;
  bool writes_dx;
};

// The reverse walk of route_scan_backward (the adjoint recurrence and every gradient, the same
// math as its plain loop) with the block's 16 lanes in two vectors each.
void reverse_walk_avx2(const ReverseWalk& w) {
  const int64_t N = w.state;
  const __m256 zero = _mm256_setzero_ps();
  const __m256 skip0 = _mm256_loadu_ps(w.skip), skip1 = _mm256_loadu_ps(w.skip + 8);
  __m256 dD0 = zero, dD1 = zero, dbias0 = zero, dbias1 = zero;
  for (int64_t t = w.length - 1; t >= 0; --t) {
    if ((t + 1) % w.segment == 0) std::fill(w.g, w.g + N * kLanes, 0.f);  // a segment's end
    const bool has_prev = t % w.segment > 0;
    const int64_t p = w.pixel[t];
    const float* xp = w.x + p * w.x_stride;
    const float* dyp = w.dy + p * w.y_stride;
    const __m256 u0 = _mm256_loadu_ps(xp), u1 = _mm256_loadu_ps(xp + 8);
    const __m256 dy0 = _mm256_loadu_ps(dyp), dy1 = _mm256_loadu_ps(dyp + 8);
    const float* bc = w.projected + p * w.pixel_stride;
    float* dbc = w.dprojected + p * w.pixel_stride;
    const float* st = w.step + t * kLanes;
    const __m256 st0 = _mm256_loadu_ps(st), st1 = _mm256_loadu_ps(st + 8);
    __m256 du0 = _mm256_mul_ps(skip0, dy0), du1 = _mm256_mul_ps(skip1, dy1);
    __m256 dstep0 = zero, dstep1 = zero;
    for (int64_t n = 0; n < N; ++n) {
      float* gn = w.g + n * kLanes;
      float* dAn = w.dA + n * kLanes;
      const float* dc = w.decay + (t * N + n) * kLanes;
      const float* hn = w.h + (t * N + n) * kLanes;
      const float* rn = w.rate + n * kLanes;
      const __m256 Bn = _mm256_set1_ps(bc[n]), Cn = _mm256_set1_ps(bc[N + n]);
      const __m256 dc0 = _mm256_loadu_ps(dc), dc1 = _mm256_loadu_ps(dc + 8);
      // dh_t, and a_t h_{t-1}
      const __m256 g0 = _mm256_fmadd_ps(Cn, dy0, _mm256_loadu_ps(gn));
      const __m256 g1 = _mm256_fmadd_ps(Cn, dy1, _mm256_loadu_ps(gn + 8));
      __m256 prev0 = zero, prev1 = zero;
      if (has_prev) {
        const float* hp = hn - N * kLanes;
        prev0 = _mm256_mul_ps(dc0, _mm256_loadu_ps(hp));
        prev1 = _mm256_mul_ps(dc1, _mm256_loadu_ps(hp + 8));
      }
      const __m256 gs0 = _mm256_mul_ps(g0, st0), gs1 = _mm256_mul_ps(g1, st1);
      _mm256_storeu_ps(dAn, _mm256_fmadd_ps(gs0, prev0, _mm256_loadu_ps(dAn)));
      _mm256_storeu_ps(dAn + 8, _mm256_fmadd_ps(gs1, prev1, _mm256_loadu_ps(dAn + 8)));
      dstep0 = _mm256_fmadd_ps(g0, _mm256_fmadd_ps(prev0, _mm256_loadu_ps(rn),
                                                   _mm256_mul_ps(u0, Bn)), dstep0);
      dstep1 = _mm256_fmadd_ps(g1, _mm256_fmadd_ps(prev1, _mm256_loadu_ps(rn + 8),
                                                   _mm256_mul_ps(u1, Bn)), dstep1);
      du0 = _mm256_fmadd_ps(gs0, Bn, du0);
      du1 = _mm256_fmadd_ps(gs1, Bn, du1);
      dbc[n] += lane_sum(_mm256_mul_ps(gs0, u0), _mm256_mul_ps(gs1, u1));
      dbc[N + n] += lane_sum(_mm256_mul_ps(_mm256_loadu_ps(hn), dy0),
                             _mm256_mul_ps(_mm256_loadu_ps(hn + 8), dy1));
      _mm256_storeu_ps(gn, _mm256_mul_ps(dc0, g0));  // a_t dh_t, what token t - 1 receives
      _mm256_storeu_ps(gn + 8, _mm256_mul_ps(dc1, g1));
    }
    const float* sl = w.slope + t * kLanes;
    const __m256 draw0 = _mm256_mul_ps(dstep0, _mm256_loadu_ps(sl));
    const __m256 draw1 = _mm256_mul_ps(dstep1, _mm256_loadu_ps(sl + 8));
    float* ddp = w.ddelta + p * w.dim;
    _mm256_storeu_ps(ddp, draw0);
    _mm256_storeu_ps(ddp + 8, draw1);
    dbias0 = _mm256_add_ps(dbias0, draw0);
    dbias1 = _mm256_add_ps(dbias1, draw1);
    dD0 = _mm256_fmadd_ps(dy0, u0, dD0);
    dD1 = _mm256_fmadd_ps(dy1, u1, dD1);
    float* dxp = w.dx + p * w.x_stride;
    _mm256_storeu_ps(dxp, w.writes_dx ? du0 : _mm256_add_ps(_mm256_loadu_ps(dxp), du0));
    _mm256_storeu_ps(dxp + 8, w.writes_dx ? du1 : _mm256_add_ps(_mm256_loadu_ps(dxp + 8), du1));
  }
  _mm256_storeu_ps(w.dD, dD0);
  _mm256_storeu_ps(w.dD + 8, dD1);
  _mm256_storeu_ps(w.dbias, dbias0);
  _mm256_storeu_ps(w.dbias + 8, dbias1);
}

// A whole block of kLanes channels as two vectors, a tile of tokens at a time: first each
// stage of the per-token work (softplus, then decays) over the whole tile, then the recurrence.
// A stage's tokens are independent, so many of their polynomial chains are in flight together;
// token by token, one token's chain of exp, series and exp would be too long to overlap the next.
void scan_route_avx2(const RouteView& r, float* h, float* step, float* decay) {
  const int64_t N = r.state;
  std::fill(h, h + N * kLanes, 0.f);
  float rates[kLanes];  // A of one state, lane by lane
  const __m256 zero = _mm256_setzero_ps();
  const __m256 bias0 = r.bias ? _mm256_loadu_ps(r.bias) : zero;
  const __m256 bias1 = r.bias ? _mm256_loadu_ps(r.bias + 8) : zero;
  const __m256 skip0 = r.D ? _mm256_loadu_ps(r.D) : zero;
  const __m256 skip1 = r.D ? _mm256_loadu_ps(r.D + 8) : zero;
  for (int64_t t0 = 0; t0 < r.length; t0 += kSteps) {
    const int64_t n_t = std::min(kSteps, r.length - t0);
    const int64_t* pixel = r.pixel + t0;
    int64_t t = 0;
    for (; t + kGroup <= n_t; t += kGroup)
      group_steps<kGroup>(r, pixel + t, bias0, bias1, step + t * kLanes);
    for (; t < n_t; ++t) group_steps<1>(r, pixel + t, bias0, bias1, step + t * kLanes);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t j = 0; j < kLanes; ++j) rates[j] = r.A[j * N + n];
      const __m256 rate0 = _mm256_loadu_ps(rates), rate1 = _mm256_loadu_ps(rates + 8);
      float* dc = decay + n * kSteps * kLanes;
      for (t = 0; t + kGroup <= n_t; t += kGroup)
        group_decays<kGroup>(step + t * kLanes, rate0, rate1, dc + t * kLanes);
      for (; t < n_t; ++t) group_decays<1>(step + t * kLanes, rate0, rate1, dc + t * kLanes);
    }
    if (N == 1) {  // VMamba v2's N = 1: the state in two registers
      __m256 h0 = _mm256_loadu_ps(h), h1 = _mm256_loadu_ps(h + 8);
      for (int64_t t = 0; t < n_t; ++t) {
        const int64_t p = pixel[t];
        const float* xv = r.x + p * r.x_stride;
        float* yv = r.y + p * r.y_stride;
        const float* bc = r.projected + p * r.projection_stride;
        const __m256 bt = _mm256_set1_ps(bc[0]), ct = _mm256_set1_ps(bc[1]);
        const __m256 u0 = _mm256_loadu_ps(xv), u1 = _mm256_loadu_ps(xv + 8);
        const float* st = step + t * kLanes;
        const float* dc = decay + t * kLanes;
        h0 = _mm256_fmadd_ps(_mm256_loadu_ps(dc), h0,
                             _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(st), u0), bt));
        h1 = _mm256_fmadd_ps(_mm256_loadu_ps(dc + 8), h1,
                             _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(st + 8), u1), bt));
        put(yv, _mm256_fmadd_ps(h0, ct, _mm256_mul_ps(skip0, u0)), r.first);
        put(yv + 8, _mm256_fmadd_ps(h1, ct, _mm256_mul_ps(skip1, u1)), r.first);
      }
      _mm256_storeu_ps(h, h0);
      _mm256_storeu_ps(h + 8, h1);
      continue;
    }
    for (int64_t t = 0; t < n_t; ++t) {
      const int64_t p = pixel[t];
      const float* xv = r.x + p * r.x_stride;
      float* yv = r.y + p * r.y_stride;
      const float* bc = r.projected + p * r.projection_stride;
      const float* st = step + t * kLanes;
      const __m256 u0 = _mm256_loadu_ps(xv), u1 = _mm256_loadu_ps(xv + 8);
      const __m256 su0 = _mm256_mul_ps(_mm256_loadu_ps(st), u0);
      const __m256 su1 = _mm256_mul_ps(_mm256_loadu_ps(st + 8), u1);
      __m256 out0 = _mm256_mul_ps(skip0, u0), out1 = _mm256_mul_ps(skip1, u1);
      for (int64_t n = 0; n < N; ++n) {
        const __m256 bt = _mm256_set1_ps(bc[n]), ct = _mm256_set1_ps(bc[N + n]);
        const float* dc = decay + (n * kSteps + t) * kLanes;
        float* hn = h + n * kLanes;
        const __m256 h0 = _mm256_fmadd_ps(_mm256_loadu_ps(dc), _mm256_loadu_ps(hn),
                                          _mm256_mul_ps(su0, bt));
        const __m256 h1 = _mm256_fmadd_ps(_mm256_loadu_ps(dc + 8), _mm256_loadu_ps(hn + 8),
                                          _mm256_mul_ps(su1, bt));
        _mm256_storeu_ps(hn, h0);
        _mm256_storeu_ps(hn + 8, h1);
        out0 = _mm256_fmadd_ps(h0, ct, out0);
        out1 = _mm256_fmadd_ps(h1, ct, out1);
      }
      put(yv, out0, r.first);
      put(yv + 8, out1, r.first);
    }
  }
}
#endif

}  // namespace

// The operands of the route scan, as its forward and backward take them (see above).
void check_route_scan_inputs(const torch::Tensor& x, const torch::Tensor& delta,
                             const torch::Tensor& projected, const torch::Tensor& A,
                             const torch::Tensor& D, const torch::Tensor& delta_bias,
                             const torch::Tensor& pixels, int64_t segment, bool x_per_route) {
  check(x, "x", 4);
  check(delta, "delta", 4);
  check(projected, "projected", 4);
  check(A, "A", 2);
  const int64_t batch = x.size(0), length = x.size(1) * x.size(2);
  const int64_t routes = pixels.size(0), state = A.size(1), dim = delta.size(3);
  TORCH_CHECK(pixels.device().is_cpu() && pixels.scalar_type() == torch::kInt64 &&
                  pixels.dim() == 2 && pixels.size(1) == length && pixels.is_contiguous(),
              "pixels must be a contiguous int64 (routes, H*W) CPU tensor");
  TORCH_CHECK(x.size(3) == (x_per_route ? routes * dim : dim),
              "x must be (batch, H, W, dim), or (batch, H, W, routes * dim) with x_per_route");
  TORCH_CHECK(delta.size(0) == routes && delta.size(1) == batch && delta.size(2) == length,
              "delta must be (routes, batch, H*W, dim)");
  TORCH_CHECK(projected.size(0) == batch && projected.size(1) == length &&
                  projected.size(2) == routes && projected.size(3) >= 2 * state,
              "projected must be (batch, H*W, routes, R + 2N)");
  TORCH_CHECK(A.size(0) == routes * dim, "A must be (routes * dim, N)");
  TORCH_CHECK(routes >= 1, "pixels must hold at least one route (the first writes y)");
  TORCH_CHECK(segment >= 1 && length % segment == 0, "segment must divide H*W");
  if (D.numel() > 0) check(D, "D", 1);
  if (delta_bias.numel() > 0) check(delta_bias, "delta_bias", 1);
}

torch::Tensor route_scan_forward(const torch::Tensor& x, const torch::Tensor& delta,
                                 const torch::Tensor& projected, const torch::Tensor& A,
                                 const torch::Tensor& D, const torch::Tensor& delta_bias,
                                 bool delta_softplus, const torch::Tensor& pixels,
                                 int64_t segment, bool x_per_route, bool y_per_route) {
  check_route_scan_inputs(x, delta, projected, A, D, delta_bias, pixels, segment, x_per_route);
  const int64_t batch = x.size(0), dim = delta.size(3), length = x.size(1) * x.size(2);
  const int64_t routes = pixels.size(0), state = A.size(1);
  const bool has_d = D.numel() > 0, has_bias = delta_bias.numel() > 0;
  auto y = torch::empty({batch, x.size(1), x.size(2), y_per_route ? routes * dim : dim},
                        x.options());
  RouteScanArgs args{x.data_ptr<float>(), delta.data_ptr<float>(), projected.data_ptr<float>(),
                     A.data_ptr<float>(), has_d ? D.data_ptr<float>() : nullptr,
                     has_bias ? delta_bias.data_ptr<float>() : nullptr,
                     pixels.data_ptr<int64_t>(), y.data_ptr<float>(), batch, dim, length, routes,
                     state, projected.size(3), projected.size(3) - 2 * state, delta_softplus,
                     x_per_route, y_per_route};
  const int64_t blocks = (dim + kLanes - 1) / kLanes;
  at::parallel_for(0, batch * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> h(state * kLanes), step(kSteps * kLanes), decay(state * kSteps * kLanes);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / blocks, d0 = (unit % blocks) * kLanes;
      const int64_t lanes = std::min(kLanes, dim - d0);
      for (int64_t k = 0; k < routes; ++k) {
        const RouteView route = route_view(args, b, d0, k);
        for (int64_t start = 0; start < length; start += segment) {
          const RouteView part = segment_of(route, start, segment);  // starts from h = 0
#ifdef VMAMBA_AVX2
          if (lanes == kLanes) {
            scan_route_avx2(part, h.data(), step.data(), decay.data());
            continue;
          }
#endif
          scan_route_scalar(part, lanes, h.data());
        }
      }
    }
  });
  return y;
}

// The gradients of route_scan_forward, for training: one pass per image (so the B and C
// gradients of its pixels, summed over channels, have one writer: no atomics, and the same sum
// order at any thread count). Per block of kLanes channels and route, the forward is recomputed
// into thread-local buffers (steps, softplus slopes, decays, states for every token of the route),
// then walked in reverse with the adjoint dh_t = C_t dy_t + a_{t+1} dh_{t+1} (zero past a
// segment's end). A shared map's gradient is summed over routes in place; nothing of shape
// (routes, batch, dim, L) is made but ddelta (and dx with x_per_route), which the delta
// projection's own backward needs. With AVX2 a full block's 16 lanes are two vectors (softplus
// and exp from vector_math.h, the reverse walk in reverse_walk_avx2); a block at the end of an
// odd width runs plain loops over its lanes.
//   x, delta, projected, A, D, delta_bias, pixels, segment, x_per_route, y_per_route: as the
//   forward; grad_y: y's shape. Returns dx (x's shape), ddelta (K, batch, L, dim) (of delta
//   before its bias), dprojected (batch, L, K, R + 2N) (zeros in the R low-rank columns: delta
//   carries those),
//   dA (batch, K * dim, N), dD and ddelta_bias (batch, K * dim), per image (the caller sums).
std::vector<torch::Tensor> route_scan_backward(
    const torch::Tensor& x, const torch::Tensor& delta, const torch::Tensor& projected,
    const torch::Tensor& A, const torch::Tensor& D, const torch::Tensor& delta_bias,
    bool delta_softplus, const torch::Tensor& pixels, int64_t segment, bool x_per_route,
    bool y_per_route, const torch::Tensor& grad_y) {
  check_route_scan_inputs(x, delta, projected, A, D, delta_bias, pixels, segment, x_per_route);
  check(grad_y, "grad_y", 4);
  const int64_t batch = x.size(0), dim = delta.size(3), length = x.size(1) * x.size(2);
  TORCH_CHECK(grad_y.size(0) == batch && grad_y.size(1) == x.size(1) &&
                  grad_y.size(2) == x.size(2) &&
                  grad_y.size(3) == (y_per_route ? pixels.size(0) * dim : dim),
              "grad_y must have the forward output's shape");
  const int64_t routes = pixels.size(0), state = A.size(1), width = projected.size(3);
  const int64_t rank = width - 2 * state;
  const bool has_d = D.numel() > 0, has_bias = delta_bias.numel() > 0;
  auto dx = torch::empty_like(x), ddelta = torch::empty_like(delta);
  auto dprojected = torch::zeros_like(projected);
  auto dA = torch::zeros({batch, routes * dim, state}, x.options());
  auto dD = torch::zeros({batch, routes * dim}, x.options());
  auto dbias = torch::zeros({batch, routes * dim}, x.options());
  const float *px = x.data_ptr<float>(), *pdelta = delta.data_ptr<float>();
  const float *pproj = projected.data_ptr<float>(), *pA = A.data_ptr<float>();
  const float* pD = has_d ? D.data_ptr<float>() : nullptr;
  const float* pbias = has_bias ? delta_bias.data_ptr<float>() : nullptr;
  const float* pdy = grad_y.data_ptr<float>();
  const int64_t* ppix = pixels.data_ptr<int64_t>();
  float *pdx = dx.data_ptr<float>(), *pddelta = ddelta.data_ptr<float>();
  float *pdproj = dprojected.data_ptr<float>(), *pdA = dA.data_ptr<float>();
  float *pdD = dD.data_ptr<float>(), *pdbias = dbias.data_ptr<float>();
  const int64_t plane = length * dim, pixel_stride = routes * width;
  // x and grad_y: per pixel, their channels; per image, their planes
  const int64_t x_stride = x.size(3), y_stride = grad_y.size(3);
  const int64_t x_plane = length * x_stride, y_plane = length * y_stride;
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    // per token of a route, kLanes lanes: step, slope, and per state the decay and the state
    std::vector<float> step(length * kLanes), slope(length * kLanes);
    std::vector<float> decay(length * state * kLanes), h(length * state * kLanes);
    std::vector<float> g(state * kLanes), dA_acc(state * kLanes), rate(state * kLanes);
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t d0 = 0; d0 < dim; d0 += kLanes) {
        const int64_t lanes = std::min(kLanes, dim - d0);
        for (int64_t k = 0; k < routes; ++k) {
          const int64_t* pixel = ppix + k * length;
          const int64_t channel = k * dim + d0;
          const float* proj = pproj + (b * length * routes + k) * width;  // + p * pixel_stride
          float* dproj = pdproj + (b * length * routes + k) * width;
          const float* dl = pdelta + (k * batch + b) * plane + d0;
          float* ddl = pddelta + (k * batch + b) * plane + d0;
          // this route's channels of x (and dx) and of grad_y at pixel 0
          const int64_t x_at = b * x_plane + (x_per_route ? k * dim : 0) + d0;
          const int64_t y_at = b * y_plane + (y_per_route ? k * dim : 0) + d0;
          const bool writes_dx = k == 0 || x_per_route;  // else adds to an earlier route's
          float bias[kLanes] = {}, skip[kLanes] = {};
          for (int64_t j = 0; j < lanes; ++j) {
            bias[j] = pbias ? pbias[channel + j] : 0.f;
            skip[j] = pD ? pD[channel + j] : 0.f;
            for (int64_t n = 0; n < state; ++n) rate[n * kLanes + j] = pA[(channel + j) * state + n];
          }
          for (int64_t j = lanes; j < kLanes; ++j)
            for (int64_t n = 0; n < state; ++n) rate[n * kLanes + j] = 0.f;
          // forward, recomputed: steps and slopes, then decays and states
          for (int64_t t = 0; t < length; ++t) {
            const float* dt = dl + pixel[t] * dim;
            float* st = step.data() + t * kLanes;
            float* sl = slope.data() + t * kLanes;
            float raw[kLanes] = {};
            for (int64_t j = 0; j < lanes; ++j) raw[j] = dt[j] + bias[j];
#ifdef VMAMBA_AVX2
            if (delta_softplus) {
              steps_and_slopes_avx2(raw, st, sl);
              continue;
            }
#endif
            for (int64_t j = 0; j < kLanes; ++j) {
              if (delta_softplus) {
                st[j] = raw[j] > 20.f ? raw[j] : std::log1p(std::exp(raw[j]));
                sl[j] = 1.f / (1.f + std::exp(-raw[j]));
              } else {
                st[j] = raw[j];
                sl[j] = 1.f;
              }
            }
          }
          for (int64_t t = 0; t < length; ++t) {
            const int64_t p = pixel[t];
            const float* u = px + x_at + p * x_stride;
            const float* bc = proj + p * pixel_stride + rank;
            const float* st = step.data() + t * kLanes;
            for (int64_t n = 0; n < state; ++n) {
              float* dc = decay.data() + (t * state + n) * kLanes;
              float* hn = h.data() + (t * state + n) * kLanes;
              const float* hp =
                  t % segment > 0 ? h.data() + ((t - 1) * state + n) * kLanes : nullptr;
              const float* rn = rate.data() + n * kLanes;
              float su[kLanes] = {};
              for (int64_t j = 0; j < lanes; ++j) su[j] = st[j] * u[j];
#ifdef VMAMBA_AVX2
              decays_avx2(st, rn, dc);
#else
              for (int64_t j = 0; j < kLanes; ++j) dc[j] = std::exp(st[j] * rn[j]);
#endif
              for (int64_t j = 0; j < kLanes; ++j)
                hn[j] = (hp ? dc[j] * hp[j] : 0.f) + su[j] * bc[n];
            }
          }
          // reverse walk
          std::fill(g.begin(), g.end(), 0.f);
          std::fill(dA_acc.begin(), dA_acc.end(), 0.f);
          float dD_acc[kLanes] = {}, dbias_acc[kLanes] = {};
          bool vectorised = false;
#ifdef VMAMBA_AVX2
          vectorised = lanes == kLanes;
          if (vectorised) {
            reverse_walk_avx2({pixel, length, segment, state, dim, x_stride, y_stride,
                               pixel_stride, px + x_at, pdy + y_at, proj + rank, step.data(),
                               slope.data(), decay.data(), h.data(), rate.data(), skip,
                               dproj + rank, ddl, pdx + x_at, g.data(), dA_acc.data(), dD_acc,
                               dbias_acc, writes_dx});
          }
#endif
          if (!vectorised) {  // a block at the end of an odd width, or no AVX2
            for (int64_t t = length - 1; t >= 0; --t) {
              if ((t + 1) % segment == 0) std::fill(g.begin(), g.end(), 0.f);  // a segment's end
              const int64_t p = pixel[t];
              float u[kLanes] = {}, dy[kLanes] = {};
              for (int64_t j = 0; j < lanes; ++j) {
                u[j] = px[x_at + p * x_stride + j];
                dy[j] = pdy[y_at + p * y_stride + j];
              }
              const float* bc = proj + p * pixel_stride + rank;
              float* dbc = dproj + p * pixel_stride + rank;
              const float* st = step.data() + t * kLanes;
              float du[kLanes], dstep[kLanes] = {};
              for (int64_t j = 0; j < kLanes; ++j) du[j] = skip[j] * dy[j];
              for (int64_t n = 0; n < state; ++n) {
                float* gn = g.data() + n * kLanes;
                const float* dc = decay.data() + (t * state + n) * kLanes;
                const float* hn = h.data() + (t * state + n) * kLanes;
                const float* hp =
                    t % segment > 0 ? h.data() + ((t - 1) * state + n) * kLanes : nullptr;
                const float* rn = rate.data() + n * kLanes;
                float* dAn = dA_acc.data() + n * kLanes;
                const float Bn = bc[n], Cn = bc[state + n];
                float dB = 0.f, dC = 0.f;
                for (int64_t j = 0; j < kLanes; ++j) {
                  const float gj = gn[j] + Cn * dy[j];  // dh_t
                  const float decayed_prev = hp ? dc[j] * hp[j] : 0.f;  // a_t h_{t-1}
                  dAn[j] += gj * decayed_prev * st[j];
                  dstep[j] += gj * (decayed_prev * rn[j] + u[j] * Bn);
                  du[j] += gj * st[j] * Bn;
                  dB += gj * st[j] * u[j];
                  dC += hn[j] * dy[j];
                  gn[j] = dc[j] * gj;  // a_t dh_t, what token t - 1 receives
                }
                dbc[n] += dB;
                dbc[state + n] += dC;
              }
              float* dxp = pdx + x_at + p * x_stride;
              float* ddp = ddl + p * dim;
              const float* sl = slope.data() + t * kLanes;
              for (int64_t j = 0; j < lanes; ++j) {
                const float draw = dstep[j] * sl[j];
                ddp[j] = draw;
                dbias_acc[j] += draw;
                dD_acc[j] += dy[j] * u[j];
                dxp[j] = writes_dx ? du[j] : dxp[j] + du[j];
              }
            }
          }
          for (int64_t j = 0; j < lanes; ++j) {
            const int64_t row = b * routes * dim + channel + j;
            for (int64_t n = 0; n < state; ++n) pdA[row * state + n] = dA_acc[n * kLanes + j];
            pdD[row] = dD_acc[j];
            pdbias[row] = dbias_acc[j];
          }
        }
      }
    }
  });
  return {dx, ddelta, dprojected, dA, dD, dbias};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear_recurrence", &linear_recurrence, "h_t = a_t h_{t-1} + b_t over rows (CPU)");
  m.def("selective_scan_forward", &selective_scan_forward, "fused selective scan, no grad (CPU)");
  m.def("selective_scan_backward", &selective_scan_backward,
        "gradients of the selective scan, recomputing its forward (CPU)");
  m.def("route_scan_backward", &route_scan_backward,
        "gradients of the route scan, recomputing its forward per image (CPU)");
  m.def("route_scan_forward", &route_scan_forward,
        "SS2D's routes or V2M's lines scanned in place on a channels-last map, no grad (CPU)");
}
