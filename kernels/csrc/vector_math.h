// Vector math of the CPU kernels (AVX2 + FMA): exp, log and softplus for the ranges the kernels
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
// two parts of ln 2 below back into one, or simplify e - ((e + 1) - 1) to 0. An empty asm makes a
// value opaque, so the steps around it are computed as written.
inline __m256 opaque(__m256 v) {
  __asm__("" : "+x"(v));
  return v;
}

// The Cephes polynomials, within 2 ulp.
inline __m256 exp_avx2(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)),
                    _mm256_set1_ps(-87.3365478515625f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln 2, with ln 2 in two parts so r keeps its low bits
  __m256 r = opaque(_mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x));
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  // times 2^n, built in the exponent bits
  const __m256i scale = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

// log of positive, normal x (here 1 + e^s, in [1, 1 + e^20]).
inline __m256 log_avx2(__m256 x) {
  const __m256i bits = _mm256_castps_si256(x);
  __m256 e = _mm256_cvtepi32_ps(
      _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126)));
  // mantissa m in [0.5, 1); below sqrt(1/2) it is doubled and the exponent lowered, so that
  // z = m - 1 stays in [-0.29, 0.41] where the polynomial holds
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
      _mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f000000)));
  const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_sub_ps(e, _mm256_and_ps(small, _mm256_set1_ps(1.f)));
  const __m256 z = _mm256_add_ps(_mm256_sub_ps(m, _mm256_set1_ps(1.f)), _mm256_and_ps(small, m));
  __m256 p = _mm256_set1_ps(7.0376836292e-2f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-1.1514610310e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.1676998740e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-1.2420140846e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.4249322787e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-1.6668057665e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.0000714765e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-2.4999993993e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(3.3333331174e-1f));
  const __m256 z2 = _mm256_mul_ps(z, z);
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, z2), z);
  y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
  y = opaque(_mm256_fnmadd_ps(z2, _mm256_set1_ps(0.5f), y));
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), opaque(_mm256_add_ps(z, y)));
}

// softplus(s) = log(1 + e^s) = max(s, 0) + log1p(t), t = e^-|s| in (0, 1]; and
// log1p(t) = 2 atanh(w), w = t / (2 + t) in (0, 1/3], whose odd series 2 (w + w^3/3 + w^5/5 + ...)
// is within 1.4e-8 (relative) after seven terms. No cancellation anywhere (very negative s gives
// t itself, large s gives s plus what rounds away), and no second logarithm or exponential.
inline __m256 softplus_avx2(__m256 s) {
  const __m256 one = _mm256_set1_ps(1.f), two = _mm256_set1_ps(2.f);
  const __m256 magnitude = _mm256_andnot_ps(_mm256_set1_ps(-0.f), s);
  const __m256 t = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), magnitude));
  const __m256 d = _mm256_add_ps(t, two);
  __m256 inverse = _mm256_rcp_ps(d);  // 12 bits; one Newton step gives float precision
  inverse = _mm256_fmadd_ps(inverse, _mm256_fnmadd_ps(d, inverse, one), inverse);
  const __m256 w = _mm256_mul_ps(t, inverse);
  const __m256 w2 = _mm256_mul_ps(w, w);
  __m256 series = _mm256_set1_ps(1.f / 13.f);
  series = _mm256_fmadd_ps(series, w2, _mm256_set1_ps(1.f / 11.f));
  series = _mm256_fmadd_ps(series, w2, _mm256_set1_ps(1.f / 9.f));
  series = _mm256_fmadd_ps(series, w2, _mm256_set1_ps(1.f / 7.f));
  series = _mm256_fmadd_ps(series, w2, _mm256_set1_ps(1.f / 5.f));
  series = _mm256_fmadd_ps(series, w2, _mm256_set1_ps(1.f / 3.f));
  series = _mm256_fmadd_ps(series, w2, one);
  return _mm256_fmadd_ps(_mm256_mul_ps(two, w), series,
                         _mm256_max_ps(s, _mm256_setzero_ps()));
}

}  // namespace vmamba

#endif
