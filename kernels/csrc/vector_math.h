// Vector math of the CPU kernels (AVX2 + FMA): exp, softplus and SiLU for the ranges the kernels
// need, a few instructions each (glibc's vector calls cost several times more, and the scan makes
// three per element). Included by the kernels' sources; the lazy build tracks it
// (lazy_extension.py), so an edit here rebuilds them.
#pragma once

#if defined(__AVX2__) && defined(__FMA__)
#define VMAMBA_AVX2 1
#include <immintrin.h>

namespace vmamba {

// The kernels are built with -ffast-math (for the vectorised libm calls of their plain loops),
// which lets the compiler regroup float arithmetic, even written as intrinsics: it would merge the
// two parts of ln 2 below back into one. An empty asm makes a value opaque, so the steps around it
// are computed as written.
inline __m256 opaque(__m256 v) {
  __asm__("" : "+x"(v));
  return v;
}

// Each function works on K vectors in lockstep, step by step: the steps of one vector form a long
// dependent chain, and K independent chains interleaved keep the FP units busy where one chain
// (or K chains one after another, as out-of-order execution would see them) leaves them waiting.

// e^x in place: the Cephes polynomial, within 2 ulp; x clamped to [-87.3, 88.4].
template <int K>
inline void exp_avx2(__m256 (&x)[K]) {
  __m256 n[K], r[K], p[K];
  for (int i = 0; i < K; ++i) {
    x[i] = _mm256_max_ps(_mm256_min_ps(x[i], _mm256_set1_ps(88.3762626647949f)),
                         _mm256_set1_ps(-87.3365478515625f));
    n[i] = _mm256_round_ps(_mm256_mul_ps(x[i], _mm256_set1_ps(1.44269504088896341f)),
                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  // r = x - n ln 2, with ln 2 in two parts so r keeps its low bits
  for (int i = 0; i < K; ++i)
    r[i] = opaque(_mm256_fnmadd_ps(n[i], _mm256_set1_ps(0.693359375f), x[i]));
  for (int i = 0; i < K; ++i) r[i] = _mm256_fnmadd_ps(n[i], _mm256_set1_ps(-2.12194440e-4f), r[i]);
  constexpr float kCoefficients[] = {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f,
                                     1.6666665459e-1f, 5.0000001201e-1f};
  for (int i = 0; i < K; ++i) p[i] = _mm256_set1_ps(1.9875691500e-4f);
  for (const float c : kCoefficients)
    for (int i = 0; i < K; ++i) p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(c));
  for (int i = 0; i < K; ++i) {
    p[i] = _mm256_fmadd_ps(p[i], _mm256_mul_ps(r[i], r[i]),
                           _mm256_add_ps(r[i], _mm256_set1_ps(1.f)));
    // times 2^n, built in the exponent bits
    const __m256i scale = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n[i]), _mm256_set1_epi32(127)), 23);
    x[i] = _mm256_mul_ps(p[i], _mm256_castsi256_ps(scale));
  }
}

// softplus(s) = log(1 + e^s) in place, as max(s, 0) + log1p(t), t = e^-|s| in (0, 1]; and
// log1p(t) = 2 atanh(w), w = t / (2 + t) in (0, 1/3], whose odd series 2 (w + w^3/3 + w^5/5 + ...)
// is within 1.4e-8 (relative) after seven terms. No cancellation anywhere (very negative s gives
// t itself, large s gives s plus what rounds away), and no logarithm.
template <int K>
inline void softplus_avx2(__m256 (&s)[K]) {
  const __m256 one = _mm256_set1_ps(1.f), two = _mm256_set1_ps(2.f);
  __m256 t[K], w[K], w2[K], series[K];
  for (int i = 0; i < K; ++i)
    t[i] = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_andnot_ps(_mm256_set1_ps(-0.f), s[i]));
  exp_avx2(t);
  for (int i = 0; i < K; ++i) {
    const __m256 d = _mm256_add_ps(t[i], two);
    __m256 inverse = _mm256_rcp_ps(d);  // 12 bits; one Newton step gives float precision
    inverse = _mm256_fmadd_ps(inverse, _mm256_fnmadd_ps(d, inverse, one), inverse);
    w[i] = _mm256_mul_ps(t[i], inverse);
    w2[i] = _mm256_mul_ps(w[i], w[i]);
    series[i] = _mm256_set1_ps(1.f / 13.f);
  }
  constexpr float kTerms[] = {1.f / 11.f, 1.f / 9.f, 1.f / 7.f, 1.f / 5.f, 1.f / 3.f, 1.f};
  for (const float c : kTerms)
    for (int i = 0; i < K; ++i) series[i] = _mm256_fmadd_ps(series[i], w2[i], _mm256_set1_ps(c));
  for (int i = 0; i < K; ++i)
    s[i] = _mm256_fmadd_ps(_mm256_mul_ps(two, w[i]), series[i],
                           _mm256_max_ps(s[i], _mm256_setzero_ps()));
}

// SiLU(x) = x / (1 + e^-x) in place; the reciprocal's 12 bits refined by one Newton step.
template <int K>
inline void silu_avx2(__m256 (&x)[K]) {
  const __m256 one = _mm256_set1_ps(1.f);
  __m256 e[K];
  for (int i = 0; i < K; ++i) e[i] = _mm256_sub_ps(_mm256_setzero_ps(), x[i]);
  exp_avx2(e);
  for (int i = 0; i < K; ++i) {
    const __m256 d = _mm256_add_ps(one, e[i]);
    __m256 inverse = _mm256_rcp_ps(d);
    inverse = _mm256_fmadd_ps(inverse, _mm256_fnmadd_ps(d, inverse, one), inverse);
    x[i] = _mm256_mul_ps(x[i], inverse);
  }
}

}  // namespace vmamba

#endif
