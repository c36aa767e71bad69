// CPU selective scan.
//
// linear_recurrence: h_t = a_t * h_{t-1} + b_t along the rows of (rows, L) float32 tensors, the
// token-by-token dependency that PyTorch has no single op for (used with autograd).
//
// selective_scan_forward: the whole scan of one (batch, channel) row in one pass, for inference.
// cross_selective_scan_forward: the same, walking SS2D's routes (a table of pixels) of a 2D map in place.
// Tokens are processed in tiles: first the independent per-token work (softplus, exp, products)
// over a tile in loops the compiler vectorises, then the recurrence over the tile in L1.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

constexpr int64_t kTile = 256;

void check(const torch::Tensor& t, const char* name, int64_t dims) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, " must be float32");
  TORCH_CHECK(t.dim() == dims && t.is_contiguous(), name, " must be contiguous with ", dims,
              " dims");
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
  check(u, "u", 3);
  check(delta, "delta", 3);
  check(A, "A", 2);
  check(B, "B", 4);
  check(C, "C", 4);
  const int64_t batch = u.size(0), dim = u.size(1), length = u.size(2);
  const int64_t groups = B.size(1), state = A.size(1);
  const int64_t per_group = dim / groups;
  const bool has_d = D.numel() > 0, has_bias = delta_bias.numel() > 0;
  if (has_d) check(D, "D", 1);
  if (has_bias) check(delta_bias, "delta_bias", 1);
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
        for (int64_t t = 0; t < n_t; ++t) {
          float x = dr[t0 + t] + bias;
          if (delta_softplus) x = x > 20.f ? x : std::log1p(std::exp(x));
          st[t] = x;
          dv[t] = x * ur[t0 + t];
        }
        for (int64_t n = 0; n < state; ++n) {
          float* dc = decay.data() + n * kTile;
          const float a = Ad[n];
          for (int64_t t = 0; t < n_t; ++t) dc[t] = std::exp(st[t] * a);
        }
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

// The route-wise scan of SS2D in one pass per channel, for inference: reads u and the per-route
// projections in pixel order, walks each route through them and sums the routes' outputs back in
// place, so neither the routes nor their merge are materialised. delta is formed here from its
// low-rank projection (dt_low: rank R per route) one channel at a time, in L1. The routes are
// the rows of `pixels` (int64 (K, L): the pixel each route visits at each step), the table of
// vmamba_kernels/routes.py, so the geometry has one definition.
//   x: (batch, dim, H, W); dt_low: (batch, K, R, L); dt_weight: (K, dim, R); A: (K * dim, N);
//   B, C: (batch, K, N, L); D, delta_bias: (K * dim,) or empty. Returns (batch, dim, L).
torch::Tensor cross_selective_scan_forward(const torch::Tensor& x, const torch::Tensor& dt_low,
                                           const torch::Tensor& dt_weight,
                                           const torch::Tensor& A, const torch::Tensor& B,
                                           const torch::Tensor& C, const torch::Tensor& D,
                                           const torch::Tensor& delta_bias, bool delta_softplus,
                                           const torch::Tensor& pixels) {
  check(x, "x", 4);
  check(dt_low, "dt_low", 4);
  check(dt_weight, "dt_weight", 3);
  check(A, "A", 2);
  check(B, "B", 4);
  check(C, "C", 4);
  const int64_t batch = x.size(0), dim = x.size(1), height = x.size(2), width = x.size(3);
  const int64_t length = height * width, routes = pixels.size(0), rank = dt_low.size(2);
  const int64_t state = A.size(1);
  TORCH_CHECK(pixels.device().is_cpu() && pixels.scalar_type() == torch::kInt64 &&
                  pixels.dim() == 2 && pixels.size(1) == length && pixels.is_contiguous(),
              "pixels must be a contiguous int64 (routes, H*W) CPU tensor");
  TORCH_CHECK(dt_low.size(1) == routes && dt_low.size(3) == length,
              "dt_low must be (batch, routes, R, H*W)");
  TORCH_CHECK(dt_weight.size(0) == routes && dt_weight.size(1) == dim && dt_weight.size(2) == rank,
              "dt_weight must be (routes, dim, R)");
  TORCH_CHECK(A.size(0) == routes * dim, "A must be (routes * dim, N)");
  TORCH_CHECK(B.size(1) == routes && B.size(3) == length && C.sizes() == B.sizes(),
              "B and C must be (batch, routes, N, H*W)");
  const bool has_d = D.numel() > 0, has_bias = delta_bias.numel() > 0;
  if (has_d) check(D, "D", 1);
  if (has_bias) check(delta_bias, "delta_bias", 1);
  auto y = torch::zeros({batch, dim, length}, x.options());
  const float *px = x.data_ptr<float>(), *plow = dt_low.data_ptr<float>();
  const float* pw = dt_weight.data_ptr<float>();
  const float *pA = A.data_ptr<float>(), *pB = B.data_ptr<float>(), *pC = C.data_ptr<float>();
  const float* pD = has_d ? D.data_ptr<float>() : nullptr;
  const float* pbias = has_bias ? delta_bias.data_ptr<float>() : nullptr;
  float* py = y.data_ptr<float>();
  const int64_t* route_pixels = pixels.data_ptr<int64_t>();

  at::parallel_for(0, batch * dim, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> step(kTile), value(kTile), drive(kTile), decay(kTile * state), h(state);
    std::vector<float> delta_row(length);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / dim, d = row % dim;
      const float* ur = px + row * length;
      float* yr = py + row * length;
      for (int64_t k = 0; k < routes; ++k) {
        const int64_t channel = k * dim + d;
        // delta of this channel and route, in pixel order: sum_r W[k, d, r] * dt_low[b, k, r].
        float* dr = delta_row.data();
        const float* wk = pw + (k * dim + d) * rank;
        const float* lowk = plow + (b * routes + k) * rank * length;
        std::fill(delta_row.begin(), delta_row.end(), 0.f);
        for (int64_t r = 0; r < rank; ++r) {
          const float w = wk[r];
          const float* lr = lowk + r * length;
          for (int64_t p = 0; p < length; ++p) dr[p] += w * lr[p];
        }
        const float* Bk = pB + (b * routes + k) * state * length;
        const float* Ck = pC + (b * routes + k) * state * length;
        const float* Ad = pA + channel * state;
        const float bias = has_bias ? pbias[channel] : 0.f, skip = has_d ? pD[channel] : 0.f;
        std::fill(h.begin(), h.end(), 0.f);
        for (int64_t t0 = 0; t0 < length; t0 += kTile) {
          const int64_t n_t = std::min(kTile, length - t0);
          const int64_t* pixel = route_pixels + k * length + t0;
          for (int64_t t = 0; t < n_t; ++t) {
            const int64_t p = pixel[t];
            step[t] = dr[p];
            value[t] = ur[p];
          }
          float* st = step.data();
          float* dv = drive.data();
          const float* vl = value.data();
          for (int64_t t = 0; t < n_t; ++t) {
            float s = st[t] + bias;
            if (delta_softplus) s = s > 20.f ? s : std::log1p(std::exp(s));
            st[t] = s;
            dv[t] = s * vl[t];
          }
          for (int64_t n = 0; n < state; ++n) {
            float* dc = decay.data() + n * kTile;
            const float a = Ad[n];
            for (int64_t t = 0; t < n_t; ++t) dc[t] = std::exp(st[t] * a);
          }
          if (state == 1) {  // VMamba v2's N = 1: keep the state in a register
            const float* dc = decay.data();
            float hs = h[0];
            for (int64_t t = 0; t < n_t; ++t) {
              const int64_t p = pixel[t];
              hs = dc[t] * hs + dv[t] * Bk[p];
              yr[p] += hs * Ck[p] + skip * vl[t];
            }
            h[0] = hs;
            continue;
          }
          for (int64_t t = 0; t < n_t; ++t) {
            const int64_t p = pixel[t];
            float acc = 0.f;
            for (int64_t n = 0; n < state; ++n) {
              const float hn = decay[n * kTile + t] * h[n] + dv[t] * Bk[n * length + p];
              h[n] = hn;
              acc += hn * Ck[n * length + p];
            }
            yr[p] += acc + skip * vl[t];
          }
        }
      }
    }
  });
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear_recurrence", &linear_recurrence, "h_t = a_t h_{t-1} + b_t over rows (CPU)");
  m.def("selective_scan_forward", &selective_scan_forward, "fused selective scan, no grad (CPU)");
  m.def("cross_selective_scan_forward", &cross_selective_scan_forward,
        "SS2D four-route scan with cross-scan and cross-merge fused, no grad (CPU)");
}
