// Depthwise k x k convolution ('same' zero padding, stride 1) with its bias and SiLU, on a
// channels-last map, for inference: SS2D's conv and activation in one pass over the map. Each
// output pixel's channels are summed over the taps in vector registers (a tap of a pixel is a
// contiguous run of channels); then the SiLU of the row, four vectors in lockstep. Rows are
// shared between threads, so it scales with them (oneDNN's depthwise conv hardly does at batch 1).
//   x: (batch, H, W, C) float32 contiguous; weight: (C, 1, k, k); bias: (C,) or empty.
// Returns SiLU(conv(x)) as (batch, H, W, C).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "vector_math.h"

namespace {

// Output pixel (b, h, w), every channel, before the SiLU.
void convolve_pixel(const float* x, const float* taps, const float* bias, float* out,
                    int64_t b, int64_t h, int64_t w, int64_t height, int64_t width,
                    int64_t channels, int64_t size) {
  const int64_t pad = size / 2;
  const int64_t i_first = std::max<int64_t>(0, pad - h), i_last = std::min(size, height + pad - h);
  const int64_t j_first = std::max<int64_t>(0, pad - w), j_last = std::min(size, width + pad - w);
  int64_t c0 = 0;
#ifdef VMAMBA_AVX2
  // 32 channels in four registers: four independent chains of FMAs, where one chain of k * k
  // dependent FMAs would leave the FMA units waiting on its latency
  constexpr int kChains = 4;
  for (; c0 + 8 * kChains <= channels; c0 += 8 * kChains) {
    __m256 acc[kChains];
    for (int v = 0; v < kChains; ++v) acc[v] = _mm256_loadu_ps(bias + c0 + 8 * v);
    for (int64_t i = i_first; i < i_last; ++i) {
      const float* in = x + ((b * height + h + i - pad) * width + w - pad) * channels + c0;
      const float* tap = taps + i * size * channels + c0;
      for (int64_t j = j_first; j < j_last; ++j)
        for (int v = 0; v < kChains; ++v)
          acc[v] = _mm256_fmadd_ps(_mm256_loadu_ps(in + j * channels + 8 * v),
                                   _mm256_loadu_ps(tap + j * channels + 8 * v), acc[v]);
    }
    for (int v = 0; v < kChains; ++v) _mm256_storeu_ps(out + c0 + 8 * v, acc[v]);
  }
  for (; c0 + 8 <= channels; c0 += 8) {  // eight channels summed in one register
    __m256 acc = _mm256_loadu_ps(bias + c0);
    for (int64_t i = i_first; i < i_last; ++i) {
      const float* in = x + ((b * height + h + i - pad) * width + w - pad) * channels + c0;
      const float* tap = taps + i * size * channels + c0;
      for (int64_t j = j_first; j < j_last; ++j)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(in + j * channels),
                              _mm256_loadu_ps(tap + j * channels), acc);
    }
    _mm256_storeu_ps(out + c0, acc);
  }
#endif
  for (int64_t c = c0; c < channels; ++c) {
    float acc = bias[c];
    for (int64_t i = i_first; i < i_last; ++i)
      for (int64_t j = j_first; j < j_last; ++j)
        acc += x[((b * height + h + i - pad) * width + w + j - pad) * channels + c] *
               taps[(i * size + j) * channels + c];
    out[c] = acc;
  }
}

void silu_in_place(float* v, int64_t n) {
  int64_t i = 0;
#ifdef VMAMBA_AVX2
  constexpr int kVectors = 4;
  for (; i + 8 * kVectors <= n; i += 8 * kVectors) {
    __m256 x[kVectors];
    for (int k = 0; k < kVectors; ++k) x[k] = _mm256_loadu_ps(v + i + 8 * k);
    vmamba::silu_avx2(x);
    for (int k = 0; k < kVectors; ++k) _mm256_storeu_ps(v + i + 8 * k, x[k]);
  }
#endif
  for (; i < n; ++i) v[i] = v[i] / (1.f + std::exp(-v[i]));
}

}  // namespace

torch::Tensor depthwise_conv_silu_forward(const torch::Tensor& x, const torch::Tensor& weight,
                                          const torch::Tensor& bias) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.dim() == 4 &&
                  x.is_contiguous(),
              "x must be a contiguous float32 (batch, H, W, C) CPU tensor");
  const int64_t batch = x.size(0), height = x.size(1), width = x.size(2), channels = x.size(3);
  TORCH_CHECK(weight.scalar_type() == torch::kFloat32 && weight.dim() == 4 &&
                  weight.size(0) == channels && weight.size(1) == 1 &&
                  weight.size(2) == weight.size(3) && weight.size(2) % 2 == 1,
              "weight must be a float32 (C, 1, k, k) depthwise kernel with odd k");
  const bool has_bias = bias.numel() > 0;
  TORCH_CHECK(!has_bias || (bias.scalar_type() == torch::kFloat32 && bias.numel() == channels),
              "bias must be float32 (C,) or empty");
  const int64_t size = weight.size(2);
  // (k * k, C): each tap's weights over the channels, contiguous like a pixel of x.
  const auto taps = weight.reshape({channels, size * size}).t().contiguous();
  const auto bias_c = has_bias ? bias.contiguous() : torch::zeros({channels}, x.options());
  auto y = torch::empty_like(x);
  const float* px = x.data_ptr<float>();
  const float* ptaps = taps.data_ptr<float>();
  const float* pbias = bias_c.data_ptr<float>();
  float* py = y.data_ptr<float>();
  at::parallel_for(0, batch * height, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      float* out_row = py + row * width * channels;
      for (int64_t w = 0; w < width; ++w)
        convolve_pixel(px, ptaps, pbias, out_row + w * channels, row / height, row % height, w,
                       height, width, channels, size);
      silu_in_place(out_row, width * channels);
    }
  });
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("depthwise_conv_silu_forward", &depthwise_conv_silu_forward,
        "depthwise conv + bias + SiLU on a channels-last map, no grad (CPU)");
}
