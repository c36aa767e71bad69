// CPU kernels of Mamba2's SSD scan (kernels/ssd_scan/__init__.py has the contract).
//
// ssd_scan_forward: the recurrence S_t = exp(s_t A) S_{t-1} + s_t x_t B_t^T, y_t = S_t C_t + D x_t
// token by token, one pass per (batch, head). The chunked matrix form does Q times more work per
// token than this and, on a CPU, spends its time building (Q x Q) decay masks; the recurrence
// keeps one head's state (headdim x N, 8 KB for 32 x 64) in L1. The state is held transposed,
// (N, headdim), so a token's update and its output are vectorised over headdim with no horizontal
// sums: for each n, the row S[n, :] is decayed, driven by B_t[n] * (s_t x_t) and added into y_t
// with weight C_t[n]. Where headdim is a multiple of 8 (AVX2), the state goes through blocks of
// 32 tokens in register tiles, rescaled so that a token costs two FMAs per element
// (head_forward_blocked); otherwise token by token (token_update). It reads x, dt, B and C through
// their strides.
//
// ssd_scan_backward: the adjoint recurrence G_t = dy_t C_t^T + exp(s_{t+1} A) G_{t+1} (the
// gradient of the loss by S_t), from the last token back, with the forward states recomputed a
// segment at a time from checkpoints stored every kSegment tokens. One pass per (batch, group):
// the group's heads run one after another, so dB and dC (shared by the group's heads) are summed
// in a fixed order and the result does not depend on the thread count.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "vector_math.h"

namespace {

constexpr int64_t kSegment = 32;  // tokens between two checkpoints of the backward

void check(const torch::Tensor& t, const char* name, int64_t dims) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, " must be float32");
  TORCH_CHECK(t.dim() == dims && t.is_contiguous(), name, " must be contiguous with ", dims,
              " dims");
}

// An input the forward reads in place from a larger tensor (the mixer passes slices of one
// projection): any strides, but its last dim (if any) contiguous.
void check_strided(const torch::Tensor& t, const char* name, int64_t dims, bool rows) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, " must be float32");
  TORCH_CHECK(t.dim() == dims, name, " must have ", dims, " dims");
  TORCH_CHECK(!rows || t.size(dims - 1) <= 1 || t.stride(dims - 1) == 1, name,
              " must have a contiguous last dim");
}

// The operands as both kernels take them: x (batch, L, heads, P); dt (batch, L, heads);
// A (heads,); B, C (batch, L, G, N); D (heads,), (heads, P) or empty; dt_bias (heads,) or empty;
// initial_states (batch, heads, P, N) or empty. x, dt, B and C are read through their strides
// (rows of x, B and C contiguous); the outputs and gradients are contiguous.
struct Problem {
  const float *x, *dt, *A, *B, *C, *D, *bias, *initial;
  int64_t batch, length, heads, headdim, groups, state;
  int64_t x_stride[3], dt_stride[3], B_stride[3], C_stride[3];  // of (batch, L, heads / groups)
  bool d_per_channel, softplus;

  Problem(const torch::Tensor& x_, const torch::Tensor& dt_, const torch::Tensor& A_,
          const torch::Tensor& B_, const torch::Tensor& C_, const torch::Tensor& D_,
          const torch::Tensor& bias_, const torch::Tensor& initial_, bool softplus_) {
    check_strided(x_, "x", 4, true);
    check_strided(dt_, "dt", 3, false);
    check(A_, "A", 1);
    check_strided(B_, "B", 4, true);
    check_strided(C_, "C", 4, true);
    batch = x_.size(0), length = x_.size(1), heads = x_.size(2), headdim = x_.size(3);
    groups = B_.size(2), state = B_.size(3);
    TORCH_CHECK(groups > 0 && heads % groups == 0, "heads must be a multiple of groups");
    d_per_channel = D_.numel() > 0 && D_.dim() == 2;
    if (D_.numel() > 0) check(D_, "D", d_per_channel ? 2 : 1);
    if (bias_.numel() > 0) check(bias_, "dt_bias", 1);
    if (initial_.numel() > 0) check(initial_, "initial_states", 4);
    x = x_.data_ptr<float>(), dt = dt_.data_ptr<float>(), A = A_.data_ptr<float>();
    B = B_.data_ptr<float>(), C = C_.data_ptr<float>();
    D = D_.numel() > 0 ? D_.data_ptr<float>() : nullptr;
    bias = bias_.numel() > 0 ? bias_.data_ptr<float>() : nullptr;
    initial = initial_.numel() > 0 ? initial_.data_ptr<float>() : nullptr;
    softplus = softplus_;
    for (int i = 0; i < 3; ++i) {
      x_stride[i] = x_.stride(i), dt_stride[i] = dt_.stride(i);
      B_stride[i] = B_.stride(i), C_stride[i] = C_.stride(i);
    }
  }

  int64_t group_of(int64_t head) const { return head / (heads / groups); }
  // the inputs of token t of (batch b, head h or group g), through their strides
  const float* x_row(int64_t b, int64_t t, int64_t h) const {
    return x + b * x_stride[0] + t * x_stride[1] + h * x_stride[2];
  }
  float dt_at(int64_t b, int64_t t, int64_t h) const {
    return dt[b * dt_stride[0] + t * dt_stride[1] + h * dt_stride[2]];
  }
  const float* B_row(int64_t b, int64_t t, int64_t g) const {
    return B + b * B_stride[0] + t * B_stride[1] + g * B_stride[2];
  }
  const float* C_row(int64_t b, int64_t t, int64_t g) const {
    return C + b * C_stride[0] + t * C_stride[1] + g * C_stride[2];
  }
  // offsets of token t of (batch b, head h) in y, dx (times headdim), ddt, and dB/dC (group g)
  int64_t token(int64_t b, int64_t t, int64_t h) const { return (b * length + t) * heads + h; }
  int64_t bc_row(int64_t b, int64_t t, int64_t g) const {
    return ((b * length + t) * groups + g) * state;
  }
  float skip(int64_t h, int64_t p) const {
    if (!D) return 0.f;
    return d_per_channel ? D[h * headdim + p] : D[h];
  }
};

// Steps s_t = dt'_t, decays exp(s_t A_h) and (for the backward) ds_t / d(dt_t) of one head.
void head_steps(const Problem& pr, int64_t b, int64_t h, float* step, float* decay,
                float* slope) {
  const float bias = pr.bias ? pr.bias[h] : 0.f, a = pr.A[h];
  for (int64_t t = 0; t < pr.length; ++t) step[t] = pr.dt_at(b, t, h) + bias;
  if (slope) {
    for (int64_t t = 0; t < pr.length; ++t)
      slope[t] = pr.softplus ? 1.f / (1.f + std::exp(-step[t])) : 1.f;
  }
  int64_t t = 0;
#ifdef VMAMBA_AVX2
  // eight tokens at a time: two scalar libm calls per token cost as much as a small state's scan
  const __m256 va = _mm256_set1_ps(a);
  for (; t + 8 <= pr.length; t += 8) {
    __m256 s[1] = {_mm256_loadu_ps(step + t)};
    if (pr.softplus) vmamba::softplus_avx2(s);
    _mm256_storeu_ps(step + t, s[0]);
    __m256 e[1] = {_mm256_mul_ps(s[0], va)};
    vmamba::exp_avx2(e);
    _mm256_storeu_ps(decay + t, e[0]);
  }
#endif
  for (; t < pr.length; ++t) {
    if (pr.softplus) step[t] = step[t] > 20.f ? step[t] : std::log1p(std::exp(step[t]));
    decay[t] = std::exp(step[t] * a);
  }
}

// One token on a state S (N, P): S[n, :] = decay S[n, :] + B[n] drive[:], and, when y is given,
// y[:] += sum_n C[n] S[n, :] (y holds D x on entry).
#ifdef VMAMBA_AVX2
// K vectors of 8 channels in lockstep, and the y sums split between even and odd n: 2 K
// independent chains of FMAs keep the units busy where one chain of N would wait on each add.
template <int K, bool kOutput>
inline void token_block(float* S, int64_t P, int64_t N, float decay, const float* drive,
                        const float* Bt, const float* Ct, float* y) {
  __m256 even[K], odd[K], dr[K];
  const __m256 dec = _mm256_set1_ps(decay);
  for (int k = 0; k < K; ++k) {
    dr[k] = _mm256_loadu_ps(drive + 8 * k);
    even[k] = kOutput ? _mm256_loadu_ps(y + 8 * k) : _mm256_setzero_ps();
    odd[k] = _mm256_setzero_ps();
  }
  auto advance = [&](int64_t n, __m256(&acc)[K]) {
    const __m256 bn = _mm256_set1_ps(Bt[n]);
    float* row = S + n * P;
    const __m256 cn = kOutput ? _mm256_set1_ps(Ct[n]) : _mm256_setzero_ps();
    for (int k = 0; k < K; ++k) {
      const __m256 v =
          _mm256_fmadd_ps(bn, dr[k], _mm256_mul_ps(dec, _mm256_loadu_ps(row + 8 * k)));
      _mm256_storeu_ps(row + 8 * k, v);
      if (kOutput) acc[k] = _mm256_fmadd_ps(v, cn, acc[k]);
    }
  };
  int64_t n = 0;
  for (; n + 2 <= N; n += 2) {
    advance(n, even);
    advance(n + 1, odd);
  }
  if (n < N) advance(n, even);
  if (kOutput)
    for (int k = 0; k < K; ++k) _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(even[k], odd[k]));
}
#endif

template <bool kOutput>
void token_update(float* S, int64_t P, int64_t N, float decay, const float* drive, const float* Bt,
                  const float* Ct, float* y) {
  int64_t p0 = 0;
#ifdef VMAMBA_AVX2
  for (; p0 + 32 <= P; p0 += 32)
    token_block<4, kOutput>(S + p0, P, N, decay, drive + p0, Bt, Ct, kOutput ? y + p0 : nullptr);
  for (; p0 + 16 <= P; p0 += 16)
    token_block<2, kOutput>(S + p0, P, N, decay, drive + p0, Bt, Ct, kOutput ? y + p0 : nullptr);
  for (; p0 + 8 <= P; p0 += 8)
    token_block<1, kOutput>(S + p0, P, N, decay, drive + p0, Bt, Ct, kOutput ? y + p0 : nullptr);
#endif
  if (p0 == P) return;
  for (int64_t n = 0; n < N; ++n) {
    float* row = S + n * P;
    for (int64_t p = p0; p < P; ++p) {
      row[p] = decay * row[p] + Bt[n] * drive[p];
      if (kOutput) y[p] += Ct[n] * row[p];
    }
  }
}

#ifdef VMAMBA_AVX2
// The forward's fast path (headdim a multiple of 8). The state is cut into tiles of R rows (n) by
// 8 V channels (p) that stay in registers through a block of up to kTimeBlock tokens, so a token
// neither loads nor stores the state (the token-by-token update above does both for every element
// every token, which is what bounds it). Within a block the state is carried rescaled: with
// alpha_t the product of the block's decays up to token t, U_t = S_t / alpha_t obeys
// U_t = U_{t-1} + B_t[n] (s_t x_t / alpha_t), one FMA per element, and
// y_t = alpha_t (U_t C_t) + D x_t, one more: the decay multiply of every element is gone. A block ends before its decays multiply
// below e^-kMaxBlockDecay, so 1 / alpha_t stays far inside float range; a single token that
// decays more than that alone (alpha_t would underflow) takes the direct update.
constexpr int64_t kTimeBlock = 32;
constexpr float kMaxBlockDecay = 60.f;

// kRescaled: U += B[n] drive (drive already divided by alpha), y += C[n] U. Otherwise the direct
// update S = decay S + B[n] drive, y += C[n] S (only for a block of one token: decay is its own).
template <int V, int R, bool kRescaled>
inline void tile_through_block(float* S, int64_t P, int64_t tokens, float decay,
                               const float* drive, const float* B, const float* C,
                               int64_t b_step, int64_t c_step, float* y) {
  __m256 s[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) s[r][v] = _mm256_loadu_ps(S + r * P + 8 * v);
  const __m256 dec = _mm256_set1_ps(decay);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* Bt = B + t * b_step;
    const float* Ct = C + t * c_step;
    __m256 d[V], acc[V];
    for (int v = 0; v < V; ++v) {
      d[v] = _mm256_loadu_ps(drive + t * P + 8 * v);
      acc[v] = _mm256_loadu_ps(y + t * P + 8 * v);
    }
    for (int r = 0; r < R; ++r) {
      const __m256 bn = _mm256_set1_ps(Bt[r]), cn = _mm256_set1_ps(Ct[r]);
      for (int v = 0; v < V; ++v) {
        s[r][v] = _mm256_fmadd_ps(bn, d[v], kRescaled ? s[r][v] : _mm256_mul_ps(dec, s[r][v]));
        acc[v] = _mm256_fmadd_ps(cn, s[r][v], acc[v]);
      }
    }
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(y + t * P + 8 * v, acc[v]);
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(S + r * P + 8 * v, s[r][v]);
}

template <int R, bool kRescaled>
inline void rows_through_block(float* S, int64_t P, int64_t tokens, float decay,
                               const float* drive, const float* B, const float* C,
                               int64_t b_step, int64_t c_step, float* y) {
  int64_t p0 = 0;
  for (; p0 + 16 <= P; p0 += 16)
    tile_through_block<2, R, kRescaled>(S + p0, P, tokens, decay, drive + p0, B, C, b_step,
                                        c_step, y + p0);
  for (; p0 + 8 <= P; p0 += 8)
    tile_through_block<1, R, kRescaled>(S + p0, P, tokens, decay, drive + p0, B, C, b_step,
                                        c_step, y + p0);
}

// b_step, c_step: the distance between two tokens' rows of B and of C.
template <bool kRescaled>
void block_through_state(float* S, int64_t N, int64_t P, int64_t tokens, float decay,
                         const float* drive, const float* B, const float* C, int64_t b_step,
                         int64_t c_step, float* y) {
  int64_t n = 0;
  for (; n + 4 <= N; n += 4)
    rows_through_block<4, kRescaled>(S + n * P, P, tokens, decay, drive, B + n, C + n, b_step,
                                     c_step, y);
  for (; n < N; ++n)
    rows_through_block<1, kRescaled>(S + n * P, P, tokens, decay, drive, B + n, C + n, b_step,
                                     c_step, y);
}

// One (batch, head) of the forward, a block of tokens at a time: S (N, P) in and out; drive,
// y_block (kTimeBlock, P), alpha (kTimeBlock) and skip (P) are scratch.
void head_forward_blocked(const Problem& pr, int64_t b, int64_t h, const float* step,
                          const float* decay, float* S, float* drive, float* y_block,
                          float* alpha, float* skip, float* y) {
  const int64_t P = pr.headdim, N = pr.state, L = pr.length, g = pr.group_of(h);
  const int64_t b_step = pr.B_stride[1], c_step = pr.C_stride[1];
  const float a = pr.A[h];
  for (int64_t p = 0; p < P; ++p) skip[p] = pr.skip(h, p);
  for (int64_t t0 = 0; t0 < L;) {
    // the block: tokens while the summed log decay stays above -kMaxBlockDecay (at least one)
    int64_t tokens = 0;
    float log_alpha = 0.f, running = 1.f;
    while (tokens < kTimeBlock && t0 + tokens < L) {
      const float next = log_alpha + step[t0 + tokens] * a;
      if (tokens > 0 && next < -kMaxBlockDecay) break;
      log_alpha = next;
      running *= decay[t0 + tokens];  // a product of at most kTimeBlock decays: no exp per token
      alpha[tokens++] = running;
    }
    const bool rescaled = log_alpha >= -kMaxBlockDecay;
    for (int64_t t = 0; t < tokens; ++t) {
      const float* xt = pr.x_row(b, t0 + t, h);
      const float to_drive = rescaled ? step[t0 + t] / alpha[t] : step[t0 + t];
      float* dr = drive + t * P;
      for (int64_t p = 0; p < P; ++p) dr[p] = to_drive * xt[p];
    }
    std::fill(y_block, y_block + tokens * P, 0.f);
    const float* B = pr.B_row(b, t0, g);
    const float* C = pr.C_row(b, t0, g);
    if (rescaled) {
      block_through_state<true>(S, N, P, tokens, 1.f, drive, B, C, b_step, c_step, y_block);
      const float last = alpha[tokens - 1];
      for (int64_t i = 0; i < N * P; ++i) S[i] *= last;  // back from U to S
    } else {
      block_through_state<false>(S, N, P, tokens, decay[t0], drive, B, C, b_step, c_step,
                                 y_block);
    }
    for (int64_t t = 0; t < tokens; ++t) {
      const float* xt = pr.x_row(b, t0 + t, h);
      const float* yb = y_block + t * P;
      float* yt = y + pr.token(b, t0 + t, h) * P;
      const float scale = rescaled ? alpha[t] : 1.f;
      for (int64_t p = 0; p < P; ++p) yt[p] = scale * yb[p] + skip[p] * xt[p];
    }
    t0 += tokens;
  }
}
#endif

// S (N, P) from initial_states (P, N) of (b, h), or zeros.
void load_initial(const Problem& pr, int64_t b, int64_t h, float* S) {
  const int64_t P = pr.headdim, N = pr.state;
  if (!pr.initial) {
    std::fill(S, S + N * P, 0.f);
    return;
  }
  const float* src = pr.initial + (b * pr.heads + h) * P * N;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t n = 0; n < N; ++n) S[n * P + p] = src[p * N + n];
}

}  // namespace

// Returns y (batch, L, heads, P) and the final states (batch, heads, P, N), float32.
std::vector<torch::Tensor> ssd_scan_forward(const torch::Tensor& x, const torch::Tensor& dt,
                                            const torch::Tensor& A, const torch::Tensor& B,
                                            const torch::Tensor& C, const torch::Tensor& D,
                                            const torch::Tensor& dt_bias,
                                            const torch::Tensor& initial_states, bool softplus) {
  const Problem pr(x, dt, A, B, C, D, dt_bias, initial_states, softplus);
  const int64_t P = pr.headdim, N = pr.state, L = pr.length;
  auto y = torch::empty(x.sizes(), x.options());
  auto final_states = torch::empty({pr.batch, pr.heads, P, N}, x.options());
  float* py = y.data_ptr<float>();
  float* pfinal = final_states.data_ptr<float>();

  at::parallel_for(0, pr.batch * pr.heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> step(L), decay(L), S(N * P), drive(P);
#ifdef VMAMBA_AVX2
    std::vector<float> drive_block(kTimeBlock * P), y_block(kTimeBlock * P), alpha(kTimeBlock),
        skip(P);
#endif
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / pr.heads, h = unit % pr.heads, g = pr.group_of(h);
      int64_t tokens_done = 0;  // tokens the blocked path has run
      head_steps(pr, b, h, step.data(), decay.data(), nullptr);
      load_initial(pr, b, h, S.data());
#ifdef VMAMBA_AVX2
      if (P % 8 == 0) {
        head_forward_blocked(pr, b, h, step.data(), decay.data(), S.data(), drive_block.data(),
                             y_block.data(), alpha.data(), skip.data(), py);
        tokens_done = L;
      }
#endif
      for (int64_t t = tokens_done; t < L; ++t) {
        const int64_t at = pr.token(b, t, h);
        const float* xt = pr.x_row(b, t, h);
        float* yt = py + at * P;
        for (int64_t p = 0; p < P; ++p) {
          drive[p] = step[t] * xt[p];
          yt[p] = pr.skip(h, p) * xt[p];
        }
        token_update<true>(S.data(), P, N, decay[t], drive.data(), pr.B_row(b, t, g),
                           pr.C_row(b, t, g), yt);
      }
      float* out = pfinal + unit * P * N;
      for (int64_t p = 0; p < P; ++p)
        for (int64_t n = 0; n < N; ++n) out[p * N + n] = S[n * P + p];
    }
  });
  return {y, final_states};
}

// The gradients of ssd_scan_forward for grad_y (batch, L, heads, P) and grad_final (batch, heads,
// P, N; empty: zero). Per token, with G_t the adjoint state and a_t = exp(s_t A):
//   dC_t[n] += sum_p dy_t[p] S_t[p, n]           dB_t[n] += sum_p G_t[p, n] s_t x_t[p]
//   dx_t[p]  = s_t sum_n G_t[p, n] B_t[n] + D dy_t[p]
//   ds_t     = sum_p x_t[p] (G_t B_t)[p] + A a_t q_t,  q_t = sum_{p,n} G_t[p, n] S_{t-1}[p, n]
//   dA      += s_t a_t q_t;  d(dt_t) = ds_t softplus'(dt_t + bias);  d initial = a_0 G_0.
// Returns dx, ddt, dA, dB, dC, dD (D's shape; zeros when absent), ddt_bias (heads,) and
// dinitial_states (batch, heads, P, N), float32.
std::vector<torch::Tensor> ssd_scan_backward(
    const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& B,
    const torch::Tensor& C, const torch::Tensor& D, const torch::Tensor& dt_bias,
    const torch::Tensor& initial_states, const torch::Tensor& grad_y,
    const torch::Tensor& grad_final, bool softplus) {
  const Problem pr(x, dt, A, B, C, D, dt_bias, initial_states, softplus);
  check(grad_y, "grad_y", 4);
  if (grad_final.numel() > 0) check(grad_final, "grad_final", 4);
  const int64_t P = pr.headdim, N = pr.state, L = pr.length, H = pr.heads;
  const int64_t per_group = H / pr.groups;
  auto dx = torch::empty(x.sizes(), x.options()), ddt = torch::empty(dt.sizes(), dt.options());
  auto dB = torch::zeros(B.sizes(), B.options()), dC = torch::zeros(C.sizes(), C.options());
  // per (batch, head), summed over the batch at the end
  auto dA = torch::zeros({pr.batch, H}, x.options());
  auto dD = torch::zeros({pr.batch, H, P}, x.options());
  auto dbias = torch::zeros({pr.batch, H}, x.options());
  auto dinitial = torch::empty({pr.batch, H, P, N}, x.options());
  const float* pdy = grad_y.data_ptr<float>();
  const float* pdfinal = grad_final.numel() > 0 ? grad_final.data_ptr<float>() : nullptr;
  float *pdx = dx.data_ptr<float>(), *pddt = ddt.data_ptr<float>();
  float *pdB = dB.data_ptr<float>(), *pdC = dC.data_ptr<float>(), *pdA = dA.data_ptr<float>();
  float *pdD = dD.data_ptr<float>(), *pdbias = dbias.data_ptr<float>();
  float* pdinitial = dinitial.data_ptr<float>();
  const int64_t segments = (L + kSegment - 1) / kSegment;

  at::parallel_for(0, pr.batch * pr.groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> step(L), decay(L), slope(L), drive(P), gb(P);
    // checkpoints[k]: S before token k * kSegment; states[i]: S after token t0 + i of a segment
    std::vector<float> checkpoints(std::max<int64_t>(segments, 1) * N * P), states(kSegment * N * P);
    std::vector<float> S(N * P), G(N * P);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / pr.groups, g = unit % pr.groups;
      for (int64_t h = g * per_group; h < (g + 1) * per_group; ++h) {
        const int64_t bh = b * H + h;
        const float a_h = pr.A[h];
        head_steps(pr, b, h, step.data(), decay.data(), slope.data());
        load_initial(pr, b, h, S.data());
        for (int64_t t = 0; t < L; ++t) {  // the forward again, keeping checkpoints
          if (t % kSegment == 0) std::copy(S.begin(), S.end(), checkpoints.begin() + (t / kSegment) * N * P);
          const float* xt = pr.x_row(b, t, h);
          for (int64_t p = 0; p < P; ++p) drive[p] = step[t] * xt[p];
          token_update<false>(S.data(), P, N, decay[t], drive.data(), pr.B_row(b, t, g),
                              nullptr, nullptr);
        }
        if (pdfinal) {
          const float* src = pdfinal + bh * P * N;
          for (int64_t p = 0; p < P; ++p)
            for (int64_t n = 0; n < N; ++n) G[n * P + p] = src[p * N + n];
        } else {
          std::fill(G.begin(), G.end(), 0.f);
        }
        float dA_acc = 0.f, dbias_acc = 0.f;
        float* dD_row = pdD + bh * P;
        for (int64_t k = segments - 1; k >= 0; --k) {
          const int64_t t0 = k * kSegment, t1 = std::min(L, t0 + kSegment);
          const float* entry = checkpoints.data() + k * N * P;
          std::copy(entry, entry + N * P, S.begin());
          for (int64_t t = t0; t < t1; ++t) {
            const float* xt = pr.x_row(b, t, h);
            for (int64_t p = 0; p < P; ++p) drive[p] = step[t] * xt[p];
            token_update<false>(S.data(), P, N, decay[t], drive.data(), pr.B_row(b, t, g),
                                nullptr, nullptr);
            std::copy(S.begin(), S.end(), states.begin() + (t - t0) * N * P);
          }
          for (int64_t t = t1 - 1; t >= t0; --t) {
            const int64_t at = pr.token(b, t, h);
            const float* xt = pr.x_row(b, t, h);
            const float* dyt = pdy + at * P;
            const float* Bt = pr.B_row(b, t, g);
            const float* Ct = pr.C_row(b, t, g);
            float* dBt = pdB + pr.bc_row(b, t, g);
            float* dCt = pdC + pr.bc_row(b, t, g);
            const float* St = states.data() + (t - t0) * N * P;
            const float* Sprev = t > t0 ? St - N * P : entry;
            const float s = step[t], a = decay[t];
            for (int64_t p = 0; p < P; ++p) {
              drive[p] = s * xt[p];
              gb[p] = 0.f;
            }
            float q = 0.f;
            for (int64_t n = 0; n < N; ++n) {
              float* Gn = G.data() + n * P;
              const float* Sn = St + n * P;
              const float* Pn = Sprev + n * P;
              const float bn = Bt[n], cn = Ct[n];
              float dc = 0.f, db = 0.f;
              for (int64_t p = 0; p < P; ++p) {
                const float gv = Gn[p] + cn * dyt[p];
                dc += dyt[p] * Sn[p];
                db += gv * drive[p];
                gb[p] += gv * bn;
                q += gv * Pn[p];
                Gn[p] = gv * a;  // a_t G_t: the carry into token t - 1
              }
              dCt[n] += dc;
              dBt[n] += db;
            }
            float ds = a_h * a * q;
            float* dxt = pdx + at * P;
            for (int64_t p = 0; p < P; ++p) {
              ds += xt[p] * gb[p];
              dxt[p] = s * gb[p] + pr.skip(h, p) * dyt[p];
              dD_row[p] += dyt[p] * xt[p];
            }
            dA_acc += s * a * q;
            const float draw = ds * slope[t];
            pddt[at] = draw;
            dbias_acc += draw;
          }
        }
        pdA[bh] = dA_acc;
        pdbias[bh] = dbias_acc;
        float* out = pdinitial + bh * P * N;
        for (int64_t p = 0; p < P; ++p)
          for (int64_t n = 0; n < N; ++n) out[p * N + n] = G[n * P + p];
      }
    }
  });
  torch::Tensor dD_out = torch::zeros_like(D);
  if (D.numel() > 0) dD_out = pr.d_per_channel ? dD.sum(0) : dD.sum({0, 2});
  return {dx, ddt, dA.sum(0), dB, dC, dD_out, dbias.sum(0), dinitial};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ssd_scan_forward", &ssd_scan_forward, "SSD scan, one pass per (batch, head) (CPU)");
  m.def("ssd_scan_backward", &ssd_scan_backward,
        "gradients of the SSD scan, one pass per (batch, group) (CPU)");
}
