// Selective scan in CUDA C++: one thread per (batch, channel) row, the state in registers.
//
// A block is one warp of 32 channels of one group, so B and C (shared by a group) are read once
// per warp and the gradients of B and C (sums over the group's channels) reduce inside the warp
// with shuffles. Per-warp partial sums go to a (batch, groups, warps per group, N, L) buffer that
// the caller sums: no atomics, so the backward is deterministic. The forward stores the state
// every kCheckpoint tokens; the backward recomputes each stretch from there, walking the
// stretches in reverse with the adjoint recurrence dh_t = C_t dy_t + a_{t+1} dh_{t+1}.
#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

namespace {

constexpr int kWarp = 32;
constexpr int kCheckpoint = 16;

struct Shape {
  int batch, dim, length, groups, state, per_group, warps_per_group, num_checkpoints;
};

__device__ __forceinline__ float softplus(float x) { return x > 20.f ? x : log1pf(__expf(x)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Which channel this thread owns; false for the idle lanes past the end of a group.
__device__ __forceinline__ bool locate(const Shape& s, int& b, int& g, int& warp, int& d) {
  const int block = blockIdx.x;
  warp = block % s.warps_per_group;
  g = (block / s.warps_per_group) % s.groups;
  b = block / (s.warps_per_group * s.groups);
  const int in_group = warp * kWarp + threadIdx.x;
  d = g * s.per_group + in_group;
  return in_group < s.per_group;
}

template <typename T, int NP>
__global__ void scan_forward(const T* __restrict__ u, const T* __restrict__ delta,
                             const float* __restrict__ A, const T* __restrict__ B,
                             const T* __restrict__ C, const float* __restrict__ D,
                             const float* __restrict__ bias, float* __restrict__ y,
                             float* __restrict__ checkpoints, Shape s, bool delta_softplus) {
  int b, g, warp, d;
  const bool active = locate(s, b, g, warp, d);
  if (!active) return;
  const int64_t row = static_cast<int64_t>(b) * s.dim + d;
  const T* ur = u + row * s.length;
  const T* dr = delta + row * s.length;
  const T* Bg = B + (static_cast<int64_t>(b) * s.groups + g) * s.state * s.length;
  const T* Cg = C + (static_cast<int64_t>(b) * s.groups + g) * s.state * s.length;
  float a[NP], h[NP];
#pragma unroll
  for (int n = 0; n < NP; ++n) {
    a[n] = n < s.state ? A[d * s.state + n] : 0.f;
    h[n] = 0.f;
  }
  const float bias_d = bias ? bias[d] : 0.f, skip = D ? D[d] : 0.f;
  for (int t = 0; t < s.length; ++t) {
    if (t % kCheckpoint == 0) {
#pragma unroll
      for (int n = 0; n < NP; ++n)
        if (n < s.state) checkpoints[(row * s.state + n) * s.num_checkpoints + t / kCheckpoint] = h[n];
    }
    float step = static_cast<float>(dr[t]) + bias_d;
    if (delta_softplus) step = softplus(step);
    const float ut = static_cast<float>(ur[t]);
    float acc = 0.f;
#pragma unroll
    for (int n = 0; n < NP; ++n) {
      if (n < s.state) {
        h[n] = __expf(step * a[n]) * h[n] + step * ut * static_cast<float>(Bg[n * s.length + t]);
        acc += h[n] * static_cast<float>(Cg[n * s.length + t]);
      }
    }
    y[row * s.length + t] = acc + skip * ut;
  }
}

template <typename T, int NP>
__global__ void scan_backward(const T* __restrict__ u, const T* __restrict__ delta,
                              const float* __restrict__ A, const T* __restrict__ B,
                              const T* __restrict__ C, const float* __restrict__ D,
                              const float* __restrict__ bias, const float* __restrict__ dy,
                              const float* __restrict__ checkpoints, float* __restrict__ du,
                              float* __restrict__ ddelta, float* __restrict__ dA,
                              float* __restrict__ dB_part, float* __restrict__ dC_part,
                              float* __restrict__ dD, float* __restrict__ dbias, Shape s,
                              bool delta_softplus) {
  int b, g, warp, d;
  const bool active = locate(s, b, g, warp, d);
  // Idle lanes stay to take part in the warp reductions, with zero contributions.
  const int dd = active ? d : g * s.per_group;
  const int64_t row = static_cast<int64_t>(b) * s.dim + dd;
  const T* ur = u + row * s.length;
  const T* dr = delta + row * s.length;
  const float* dyr = dy + row * s.length;
  const int64_t group_base = (static_cast<int64_t>(b) * s.groups + g) * s.state * s.length;
  const T* Bg = B + group_base;
  const T* Cg = C + group_base;
  const int64_t part_base =
      ((static_cast<int64_t>(b) * s.groups + g) * s.warps_per_group + warp) * s.state * s.length;
  float a[NP], dh[NP], dA_acc[NP], hist[kCheckpoint][NP];
#pragma unroll
  for (int n = 0; n < NP; ++n) {
    a[n] = n < s.state ? A[dd * s.state + n] : 0.f;
    dh[n] = 0.f;
    dA_acc[n] = 0.f;
  }
  const float bias_d = bias ? bias[dd] : 0.f, skip = D ? D[dd] : 0.f;
  float dD_acc = 0.f, dbias_acc = 0.f;
  for (int c = s.num_checkpoints - 1; c >= 0; --c) {
    const int start = c * kCheckpoint;
    const int stop = min(start + kCheckpoint, s.length);
    // Recompute this stretch's states from its checkpoint.
    float h0[NP], h[NP];
#pragma unroll
    for (int n = 0; n < NP; ++n) {
      h0[n] = n < s.state ? checkpoints[(row * s.state + n) * s.num_checkpoints + c] : 0.f;
      h[n] = h0[n];
    }
    for (int t = start; t < stop; ++t) {
      float step = static_cast<float>(dr[t]) + bias_d;
      if (delta_softplus) step = softplus(step);
      const float ut = static_cast<float>(ur[t]);
#pragma unroll
      for (int n = 0; n < NP; ++n) {
        if (n < s.state)
          h[n] = __expf(step * a[n]) * h[n] + step * ut * static_cast<float>(Bg[n * s.length + t]);
        hist[t - start][n] = h[n];
      }
    }
    for (int t = stop - 1; t >= start; --t) {
      const float raw = static_cast<float>(dr[t]) + bias_d;
      const float step = delta_softplus ? softplus(raw) : raw;
      const float ut = static_cast<float>(ur[t]);
      const float gy = active ? dyr[t] : 0.f;
      float du_t = skip * gy, dstep = 0.f;
#pragma unroll
      for (int n = 0; n < NP; ++n) {
        if (n < s.state) {
          const float Bt = static_cast<float>(Bg[n * s.length + t]);
          const float Ct = static_cast<float>(Cg[n * s.length + t]);
          const float h_t = hist[t - start][n];
          const float h_prev = t > start ? hist[t - start - 1][n] : h0[n];
          const float decay = __expf(step * a[n]);
          dh[n] += Ct * gy;  // now the whole gradient reaching h_t
          du_t += dh[n] * step * Bt;
          dstep += dh[n] * (ut * Bt + h_prev * decay * a[n]);
          dA_acc[n] += dh[n] * h_prev * decay * step;
          const float dB_t = warp_sum(active ? dh[n] * step * ut : 0.f);
          const float dC_t = warp_sum(active ? h_t * gy : 0.f);
          if (threadIdx.x == 0) {
            dB_part[part_base + n * s.length + t] = dB_t;
            dC_part[part_base + n * s.length + t] = dC_t;
          }
          dh[n] *= decay;  // carried to h_{t-1}
        }
      }
      if (delta_softplus) dstep *= raw > 20.f ? 1.f : 1.f / (1.f + __expf(-raw));
      if (active) {
        du[row * s.length + t] = du_t;
        ddelta[row * s.length + t] = dstep;
      }
      dD_acc += gy * ut;
      dbias_acc += dstep;
    }
  }
  if (!active) return;
#pragma unroll
  for (int n = 0; n < NP; ++n)
    if (n < s.state) dA[row * s.state + n] = dA_acc[n];
  dD[row] = dD_acc;
  dbias[row] = dbias_acc;
}

Shape make_shape(const torch::Tensor& u, const torch::Tensor& B, const torch::Tensor& A) {
  Shape s;
  s.batch = u.size(0);
  s.dim = u.size(1);
  s.length = u.size(2);
  s.groups = B.size(1);
  s.state = A.size(1);
  s.per_group = s.dim / s.groups;
  s.warps_per_group = (s.per_group + kWarp - 1) / kWarp;
  s.num_checkpoints = std::max(1, (s.length + kCheckpoint - 1) / kCheckpoint);
  return s;
}

// Calls fn.template operator()<NP>() with NP the smallest supported power of two >= state.
template <typename Fn>
void with_state_bucket(int state, Fn&& fn) {
  TORCH_CHECK(state >= 1 && state <= 64, "selective_scan (cuda): d_state must be 1..64, got ",
              state);
  if (state <= 1) fn(std::integral_constant<int, 1>{});
  else if (state <= 4) fn(std::integral_constant<int, 4>{});
  else if (state <= 16) fn(std::integral_constant<int, 16>{});
  else fn(std::integral_constant<int, 64>{});
}

const float* optional_ptr(const std::optional<torch::Tensor>& t) {
  return t.has_value() ? t->data_ptr<float>() : nullptr;
}

}  // namespace

std::vector<torch::Tensor> forward(const torch::Tensor& u, const torch::Tensor& delta,
                                   const torch::Tensor& A, const torch::Tensor& B,
                                   const torch::Tensor& C, const std::optional<torch::Tensor>& D,
                                   const std::optional<torch::Tensor>& bias,
                                   bool delta_softplus) {
  const c10::cuda::CUDAGuard guard(u.device());
  const Shape s = make_shape(u, B, A);
  auto y = torch::empty({s.batch, s.dim, s.length}, u.options().dtype(torch::kFloat32));
  auto checkpoints =
      torch::empty({s.batch, s.dim, s.state, s.num_checkpoints}, y.options());
  const int blocks = s.batch * s.groups * s.warps_per_group;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, u.scalar_type(), "scan_forward", [&] {
    with_state_bucket(s.state, [&](auto np) {
      scan_forward<scalar_t, decltype(np)::value><<<blocks, kWarp, 0, stream>>>(
          u.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), A.data_ptr<float>(),
          B.data_ptr<scalar_t>(), C.data_ptr<scalar_t>(), optional_ptr(D), optional_ptr(bias),
          y.data_ptr<float>(), checkpoints.data_ptr<float>(), s, delta_softplus);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {y, checkpoints};
}

std::vector<torch::Tensor> backward(const torch::Tensor& u, const torch::Tensor& delta,
                                    const torch::Tensor& A, const torch::Tensor& B,
                                    const torch::Tensor& C, const std::optional<torch::Tensor>& D,
                                    const std::optional<torch::Tensor>& bias,
                                    const torch::Tensor& dy, const torch::Tensor& checkpoints,
                                    bool delta_softplus) {
  const c10::cuda::CUDAGuard guard(u.device());
  const Shape s = make_shape(u, B, A);
  auto f32 = u.options().dtype(torch::kFloat32);
  auto du = torch::empty({s.batch, s.dim, s.length}, f32);
  auto ddelta = torch::empty_like(du);
  auto dA = torch::empty({s.batch, s.dim, s.state}, f32);
  auto dB_part = torch::empty({s.batch, s.groups, s.warps_per_group, s.state, s.length}, f32);
  auto dC_part = torch::empty_like(dB_part);
  auto dD = torch::empty({s.batch, s.dim}, f32);
  auto dbias = torch::empty_like(dD);
  const int blocks = s.batch * s.groups * s.warps_per_group;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, u.scalar_type(), "scan_backward", [&] {
    with_state_bucket(s.state, [&](auto np) {
      scan_backward<scalar_t, decltype(np)::value><<<blocks, kWarp, 0, stream>>>(
          u.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), A.data_ptr<float>(),
          B.data_ptr<scalar_t>(), C.data_ptr<scalar_t>(), optional_ptr(D), optional_ptr(bias),
          dy.data_ptr<float>(), checkpoints.data_ptr<float>(), du.data_ptr<float>(),
          ddelta.data_ptr<float>(), dA.data_ptr<float>(), dB_part.data_ptr<float>(),
          dC_part.data_ptr<float>(), dD.data_ptr<float>(), dbias.data_ptr<float>(), s,
          delta_softplus);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {du, ddelta, dA.sum(0), dB_part.sum(2), dC_part.sum(2), dD.sum(0), dbias.sum(0)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "selective scan forward (CUDA)");
  m.def("backward", &backward, "selective scan backward (CUDA)");
}
