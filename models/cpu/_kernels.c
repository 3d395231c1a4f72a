/* CPU kernels for float32 transformer inference that numpy has no fast path for.
 *
 * - linear_f16: y = x @ w.T + b with w stored as IEEE half (fp16) and everything computed in float32.
 *   Whisper's published checkpoints are fp16: their float32 copies are exact, so reading the half words
 *   and widening them (F16C) gives the same products as the float32 weights while moving half the bytes.
 *   A decode step is memory-bound (tiny.en reads 113 MB of weights per token in float32), so this halves
 *   its floor. The few rows of a step (beams, batched requests) are computed from one read of each
 *   weight block: OpenBLAS's sgemm re-packs the whole weight for a 5-row product (3.5x one row here).
 * - softmax_rows: a numerically stable softmax over the rows of a float32 matrix, in place, with a
 *   vectorised exp (numpy's float32 exp ran at ~1.9 ns/element here, with separate max/sub/sum passes).
 * - gelu: exact-erf GELU, A&S 7.1.26 erfc (|error| <= 7.5e-8 of 0.5*erfc), in place.
 * - layer_norm: LayerNorm over the last axis (numpy takes ~50 us for a 384-wide row through its ufuncs).
 *
 * Every kernel has an AVX2/FMA/F16C path chosen at run time (`__builtin_cpu_supports`) and a portable C
 * path; `use_simd(False)` forces the portable one (tests compare both against numpy). Work is split over
 * OpenMP threads where asked (`threads`), and the GIL is released while it runs.
 */
#include "_ext.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HK_X86 1
#define HK_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define HK_X86 0
#endif

static int hk_simd = 0; /* set at import when the CPU has AVX2 + FMA + F16C */

/* ---------------------------------------------------------------- scalar helpers ---- */

/* exp(x) for float32: Cody-Waite reduction to r in [-ln2/2, ln2/2], Cephes' degree-6 polynomial,
 * then scaling by 2^n through the exponent bits. Relative error ~1e-7; exp(x) = 0 below -87.3. */
static const float EXP_HI = 88.3762626647949f, EXP_LO = -87.3365478515625f;
static const float LOG2E = 1.44269504088896341f, LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f;
static const float EP0 = 1.9875691500e-4f, EP1 = 1.3981999507e-3f, EP2 = 8.3334519073e-3f;
static const float EP3 = 4.1665795894e-2f, EP4 = 1.6666665459e-1f, EP5 = 5.0000001201e-1f;

static inline float exp_scalar(float x) {
    if (!(x >= EXP_LO)) return 0.0f; /* also -inf and NaN-free inputs below range */
    if (x > EXP_HI) x = EXP_HI;
    float n = floorf(x * LOG2E + 0.5f);
    float r = x - n * LN2_HI - n * LN2_LO;
    float p = ((((EP0 * r + EP1) * r + EP2) * r + EP3) * r + EP4) * r + EP5;
    float y = p * r * r + r + 1.0f;
    int32_t bits;
    memcpy(&bits, &y, 4);
    bits += (int32_t)n << 23;
    memcpy(&y, &bits, 4);
    return y;
}

/* IEEE half → float, exactly (subnormals, infinities and NaN included). */
static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0x1fu) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            mant <<= 1;
        } while (!(mant & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* A&S 7.1.26 with ½ folded in: 0.5*erfc(z) ≈ t·P(t)·exp(-z²), t = 1/(1 + p·z), for GELU's z = |x|/√2. */
static const float AS_K = 0.3275911f * 0.70710678118654752f;
static const float AS_C1 = 0.5f * 0.254829592f, AS_C2 = 0.5f * -0.284496736f, AS_C3 = 0.5f * 1.421413741f;
static const float AS_C4 = 0.5f * -1.453152027f, AS_C5 = 0.5f * 1.061405429f;

static inline float gelu_scalar(float x) {
    float a = fabsf(x);
    float t = 1.0f / (1.0f + AS_K * a);
    float p = t * (AS_C1 + t * (AS_C2 + t * (AS_C3 + t * (AS_C4 + t * AS_C5))));
    return fmaxf(x, 0.0f) - a * p * exp_scalar(-0.5f * a * a);
}

/* ------------------------------------------------------------------ portable paths ---- */

static void linear_f16_generic(const float *x, const uint16_t *w, const float *bias, float *out, Py_ssize_t m,
                               Py_ssize_t n, Py_ssize_t k, int threads) {
    (void)threads;
    float *row = (float *)malloc((size_t)k * sizeof(float));
    if (!row) return;
    for (Py_ssize_t j = 0; j < n; j++) {
        const uint16_t *wj = w + (size_t)j * k;
        for (Py_ssize_t i = 0; i < k; i++) row[i] = half_to_float(wj[i]);
        for (Py_ssize_t r = 0; r < m; r++) {
            const float *xr = x + (size_t)r * k;
            float acc = 0.0f;
            for (Py_ssize_t i = 0; i < k; i++) acc += xr[i] * row[i];
            out[(size_t)r * n + j] = acc + (bias ? bias[j] : 0.0f);
        }
    }
    free(row);
}

static void softmax_row_generic(float *s, Py_ssize_t c) {
    float mx = -INFINITY;
    double sum = 0.0; /* one running sum: double keeps it as exact as the vector path's eight lanes */
    for (Py_ssize_t i = 0; i < c; i++) mx = s[i] > mx ? s[i] : mx;
    if (mx == -INFINITY) mx = 0.0f; /* a fully masked row: all zeros below, no NaN */
    for (Py_ssize_t i = 0; i < c; i++) {
        s[i] = exp_scalar(s[i] - mx);
        sum += s[i];
    }
    float inv = sum > 0.0 ? (float)(1.0 / sum) : 0.0f;
    for (Py_ssize_t i = 0; i < c; i++) s[i] *= inv;
}

static void layer_norm_row_generic(const float *x, const float *w, const float *b, float *y, Py_ssize_t c,
                                   float eps) {
    double total = 0.0, sq = 0.0;
    for (Py_ssize_t i = 0; i < c; i++) total += x[i];
    float mean = (float)(total / (double)c);
    for (Py_ssize_t i = 0; i < c; i++) sq += (double)(x[i] - mean) * (x[i] - mean);
    float rstd = (float)(1.0 / sqrt(sq / (double)c + eps));
    for (Py_ssize_t i = 0; i < c; i++) y[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

/* One group (a head) of single-query attention: rows of q against keys [start, end). `s` holds
 * rows × end floats. */
static void attend_group_generic(const float *q, const float *k, const float *v, float *o, Py_ssize_t rows,
                                 Py_ssize_t dh, Py_ssize_t start, Py_ssize_t end, float scale, float *s) {
    for (Py_ssize_t i = 0; i < rows; i++) {
        const float *qi = q + (size_t)i * dh;
        float *si = s + (size_t)i * end;
        for (Py_ssize_t t = start; t < end; t++) {
            float acc = 0.0f;
            for (Py_ssize_t c = 0; c < dh; c++) acc += qi[c] * k[(size_t)t * dh + c];
            si[t] = acc * scale;
        }
        softmax_row_generic(si + start, end - start);
        float *oi = o + (size_t)i * dh;
        for (Py_ssize_t c = 0; c < dh; c++) oi[c] = 0.0f;
        for (Py_ssize_t t = start; t < end; t++)
            for (Py_ssize_t c = 0; c < dh; c++) oi[c] += si[t] * v[(size_t)t * dh + c];
    }
}

/* ---------------------------------------------------------------------- AVX2 paths ---- */
#if HK_X86

HK_AVX2 static inline __m256 exp_avx2(__m256 x) {
    const __m256 lo = _mm256_set1_ps(EXP_LO);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ); /* also -inf */
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(EXP_HI));
    __m256 n = _mm256_round_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5f)),
                               _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(EP0), r, _mm256_set1_ps(EP1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EP2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EP3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EP4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EP5));
    __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    y = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), e));
    return _mm256_andnot_ps(under, y);
}

/* Eight accumulators → one vector of their eight sums. */
HK_AVX2 static inline __m256 hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                                   __m256 a6, __m256 a7) {
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

HK_AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

HK_AVX2 static inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

HK_AVX2 static inline void store_group(float *dst, __m256 sums, const float *bias, Py_ssize_t j0, int rows) {
    if (bias) {
        if (rows == 8) {
            sums = _mm256_add_ps(sums, _mm256_loadu_ps(bias + j0));
        } else {
            float b[8] = {0};
            memcpy(b, bias + j0, (size_t)rows * sizeof(float));
            sums = _mm256_add_ps(sums, _mm256_loadu_ps(b));
        }
    }
    if (rows == 8) {
        _mm256_storeu_ps(dst, sums);
    } else {
        float t[8];
        _mm256_storeu_ps(t, sums);
        memcpy(dst, t, (size_t)rows * sizeof(float));
    }
}

/* Output columns in groups of 8 weight rows, split over threads. One input row: the half words are
 * widened in registers as they stream in. Several rows: the group is widened once into an L1/L2 scratch
 * and every input row is multiplied against it, so the weights are read from memory once per call. */
HK_AVX2 static void linear_f16_avx2(const float *x, const uint16_t *w, const float *bias, float *out,
                                    Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, int threads) {
    Py_ssize_t groups = (n + 7) / 8;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *scratch = m > 1 ? (float *)aligned_alloc(32, (size_t)8 * k * sizeof(float)) : NULL;
#pragma omp for schedule(dynamic, 16)
        for (Py_ssize_t g = 0; g < groups; g++) {
            Py_ssize_t j0 = g * 8;
            int rows = (int)(n - j0 < 8 ? n - j0 : 8);
            const uint16_t *wr[8];
            for (int r = 0; r < 8; r++) wr[r] = w + (size_t)(j0 + (r < rows ? r : rows - 1)) * k;
            if (m == 1 || scratch == NULL) {
                for (Py_ssize_t i = 0; i < m; i++) {
                    const float *xr = x + (size_t)i * k;
                    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
                           a7 = a0;
                    /* the next group's 8 rows (8·K halves, contiguous) requested while this one runs */
                    const char *next = (const char *)(w + (size_t)(j0 + 8 < n ? j0 + 8 : j0) * k);
                    for (Py_ssize_t c = 0; c < k; c += 8) {
                        _mm_prefetch(next + 16 * c, _MM_HINT_T0);
                        _mm_prefetch(next + 16 * c + 64, _MM_HINT_T0);
                        __m256 xv = _mm256_loadu_ps(xr + c);
#define HK_W(r) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wr[r] + c)))
                        a0 = _mm256_fmadd_ps(HK_W(0), xv, a0);
                        a1 = _mm256_fmadd_ps(HK_W(1), xv, a1);
                        a2 = _mm256_fmadd_ps(HK_W(2), xv, a2);
                        a3 = _mm256_fmadd_ps(HK_W(3), xv, a3);
                        a4 = _mm256_fmadd_ps(HK_W(4), xv, a4);
                        a5 = _mm256_fmadd_ps(HK_W(5), xv, a5);
                        a6 = _mm256_fmadd_ps(HK_W(6), xv, a6);
                        a7 = _mm256_fmadd_ps(HK_W(7), xv, a7);
#undef HK_W
                    }
                    store_group(out + (size_t)i * n + j0, hsum8(a0, a1, a2, a3, a4, a5, a6, a7), bias, j0, rows);
                }
                continue;
            }
            const char *next = (const char *)(w + (size_t)(j0 + 8 < n ? j0 + 8 : j0) * k);
            for (int r = 0; r < 8; r++)
                for (Py_ssize_t c = 0; c < k; c += 8) {
                    if ((c & 31) == 0) _mm_prefetch(next + 2 * ((size_t)r * k + c), _MM_HINT_T0);
                    _mm256_store_ps(scratch + (size_t)r * k + c,
                                    _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wr[r] + c))));
                }
            for (Py_ssize_t i = 0; i < m; i++) {
                const float *xr = x + (size_t)i * k;
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
                for (Py_ssize_t c = 0; c < k; c += 8) {
                    __m256 xv = _mm256_loadu_ps(xr + c);
#define HK_S(r) _mm256_load_ps(scratch + (size_t)(r) * k + c)
                    a0 = _mm256_fmadd_ps(HK_S(0), xv, a0);
                    a1 = _mm256_fmadd_ps(HK_S(1), xv, a1);
                    a2 = _mm256_fmadd_ps(HK_S(2), xv, a2);
                    a3 = _mm256_fmadd_ps(HK_S(3), xv, a3);
                    a4 = _mm256_fmadd_ps(HK_S(4), xv, a4);
                    a5 = _mm256_fmadd_ps(HK_S(5), xv, a5);
                    a6 = _mm256_fmadd_ps(HK_S(6), xv, a6);
                    a7 = _mm256_fmadd_ps(HK_S(7), xv, a7);
#undef HK_S
                }
                store_group(out + (size_t)i * n + j0, hsum8(a0, a1, a2, a3, a4, a5, a6, a7), bias, j0, rows);
            }
        }
        free(scratch);
    }
}

HK_AVX2 static void softmax_row_avx2(float *s, Py_ssize_t c) {
    Py_ssize_t v = c & ~(Py_ssize_t)7, i;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (i = 0; i < v; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + i));
    float mx = hmax(mv);
    for (; i < c; i++) mx = s[i] > mx ? s[i] : mx;
    if (mx == -INFINITY) mx = 0.0f;
    __m256 m8 = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    for (i = 0; i < v; i += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + i), m8));
        _mm256_storeu_ps(s + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum(acc);
    for (; i < c; i++) {
        s[i] = exp_scalar(s[i] - mx);
        sum += s[i];
    }
    __m256 inv = _mm256_set1_ps(sum > 0.0f ? 1.0f / sum : 0.0f);
    for (i = 0; i < v; i += 8) _mm256_storeu_ps(s + i, _mm256_mul_ps(_mm256_loadu_ps(s + i), inv));
    for (; i < c; i++) s[i] *= sum > 0.0f ? 1.0f / sum : 0.0f;
}

HK_AVX2 static void gelu_avx2(float *x, Py_ssize_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    Py_ssize_t v = n & ~(Py_ssize_t)7, i;
    for (i = 0; i < v; i += 8) {
        __m256 xs = _mm256_loadu_ps(x + i);
        __m256 a = _mm256_andnot_ps(sign, xs);
        __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(AS_K), a, one));
        __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(AS_C5), t, _mm256_set1_ps(AS_C4));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(AS_C3));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(AS_C2));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(AS_C1));
        p = _mm256_mul_ps(p, t);
        __m256 e = exp_avx2(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(a, a)));
        _mm256_storeu_ps(x + i, _mm256_fnmadd_ps(_mm256_mul_ps(a, p), e, _mm256_max_ps(xs, zero)));
    }
    for (; i < n; i++) x[i] = gelu_scalar(x[i]);
}

HK_AVX2 static void layer_norm_row_avx2(const float *x, const float *w, const float *b, float *y, Py_ssize_t c,
                                        float eps) {
    Py_ssize_t v = c & ~(Py_ssize_t)7, i;
    __m256 acc = _mm256_setzero_ps();
    for (i = 0; i < v; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
    float mean = hsum(acc);
    for (; i < c; i++) mean += x[i];
    mean /= (float)c;
    __m256 m8 = _mm256_set1_ps(mean);
    acc = _mm256_setzero_ps();
    for (i = 0; i < v; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), m8);
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    float var = hsum(acc);
    for (; i < c; i++) var += (x[i] - mean) * (x[i] - mean);
    float rstd = 1.0f / sqrtf(var / (float)c + eps);
    __m256 r8 = _mm256_set1_ps(rstd);
    for (i = 0; i < v; i += 8) {
        __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m8), r8);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
    }
    for (; i < c; i++) y[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

/* Every row is scored against a block of eight keys while the block is in L1, and every value row is
 * added into all rows' outputs at once: a head's keys and values are read once for all its rows (beams
 * of one audio), not once per row. `s` holds rows × end floats. */
HK_AVX2 static void attend_group_avx2(const float *q, const float *k, const float *v, float *o, Py_ssize_t rows,
                                      Py_ssize_t dh, Py_ssize_t start, Py_ssize_t end, float scale, float *s) {
    const __m256 sc = _mm256_set1_ps(scale);
    Py_ssize_t t = start;
    for (; t + 8 <= end; t += 8) { /* eight keys at a time: eight dot products, one reduction */
        const float *kt = k + (size_t)t * dh;
        for (Py_ssize_t i = 0; i < rows; i++) {
            const float *qi = q + (size_t)i * dh;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            for (Py_ssize_t c = 0; c < dh; c += 8) {
                __m256 qv = _mm256_loadu_ps(qi + c);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(kt + c), qv, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(kt + dh + c), qv, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(kt + 2 * dh + c), qv, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(kt + 3 * dh + c), qv, a3);
                a4 = _mm256_fmadd_ps(_mm256_loadu_ps(kt + 4 * dh + c), qv, a4);
                a5 = _mm256_fmadd_ps(_mm256_loadu_ps(kt + 5 * dh + c), qv, a5);
                a6 = _mm256_fmadd_ps(_mm256_loadu_ps(kt + 6 * dh + c), qv, a6);
                a7 = _mm256_fmadd_ps(_mm256_loadu_ps(kt + 7 * dh + c), qv, a7);
            }
            _mm256_storeu_ps(s + (size_t)i * end + t, _mm256_mul_ps(hsum8(a0, a1, a2, a3, a4, a5, a6, a7), sc));
        }
    }
    for (; t < end; t++)
        for (Py_ssize_t i = 0; i < rows; i++) {
            __m256 a = _mm256_setzero_ps();
            for (Py_ssize_t c = 0; c < dh; c += 8)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(k + (size_t)t * dh + c), _mm256_loadu_ps(q + (size_t)i * dh + c), a);
            s[(size_t)i * end + t] = hsum(a) * scale;
        }
    for (Py_ssize_t i = 0; i < rows; i++) {
        softmax_row_avx2(s + (size_t)i * end + start, end - start);
        for (Py_ssize_t c = 0; c < dh; c += 8) _mm256_storeu_ps(o + (size_t)i * dh + c, _mm256_setzero_ps());
    }
    for (t = start; t < end; t++) {
        const float *vt = v + (size_t)t * dh;
        for (Py_ssize_t i = 0; i < rows; i++) {
            __m256 p = _mm256_set1_ps(s[(size_t)i * end + t]);
            float *oi = o + (size_t)i * dh;
            for (Py_ssize_t c = 0; c < dh; c += 8)
                _mm256_storeu_ps(oi + c, _mm256_fmadd_ps(p, _mm256_loadu_ps(vt + c), _mm256_loadu_ps(oi + c)));
        }
    }
}

/* Σ exp(x[i] - mx) in double (eight float lanes per block of 1024, then added in double). */
HK_AVX2 static double exp_sum_avx2(const float *x, Py_ssize_t n, float mx) {
    __m256 m8 = _mm256_set1_ps(mx);
    double total = 0.0;
    Py_ssize_t i = 0;
    while (i + 8 <= n) {
        __m256 acc = _mm256_setzero_ps();
        Py_ssize_t stop = i + 1024 < n ? i + 1024 : n;
        for (; i + 8 <= stop; i += 8) acc = _mm256_add_ps(acc, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), m8)));
        total += hsum(acc);
    }
    for (; i < n; i++) total += exp_scalar(x[i] - mx);
    return total;
}

#endif /* HK_X86 */

/* ----------------------------------------------------------------- Python bindings ---- */

/* A C-contiguous buffer of `itemsize`-byte items (writable if asked), viewed as [rows, cols] with the
 * last axis as cols. */
static int get_matrix(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable, const char *what,
                      Py_ssize_t *rows, Py_ssize_t *cols) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != itemsize || view->ndim < 1) {
        PyErr_Format(PyExc_TypeError, "%s: need a C-contiguous array of %zd-byte items", what, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    *cols = view->shape[view->ndim - 1];
    *rows = *cols ? view->len / itemsize / *cols : 0;
    return 0;
}

PyDoc_STRVAR(linear_f16_doc, "linear_f16(x, w, bias, out, threads)\n\n"
                             "out[M, N] = x[M, K] @ w[N, K].T + bias[N] (bias may be None); x, bias, out "
                             "float32, w float16; all C-contiguous; K a multiple of 8.");

static PyObject *py_linear_f16(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "linear_f16(x, w, bias, out, threads)");
        return NULL;
    }
    int threads = threads_arg((int)PyLong_AsLong(args[4]));
    if (PyErr_Occurred()) return NULL;
    Py_buffer xb, wb, bb, ob;
    Py_ssize_t m, k, n, wk, om, on, bn = 0, bk;
    int have_bias = args[2] != Py_None;
    if (get_matrix(args[0], &xb, 4, 0, "x", &m, &k) < 0) return NULL;
    if (get_matrix(args[1], &wb, 2, 0, "w", &n, &wk) < 0) goto fail_x;
    if (have_bias && get_matrix(args[2], &bb, 4, 0, "bias", &bk, &bn) < 0) goto fail_w;
    if (get_matrix(args[3], &ob, 4, 1, "out", &om, &on) < 0) goto fail_b;
    if (wk != k || om != m || on != n || (have_bias && bn * bk != n) || k % 8 != 0) {
        PyErr_Format(PyExc_ValueError, "linear_f16: shapes x[%zd,%zd] w[%zd,%zd] out[%zd,%zd] (K %% 8 == 0)", m, k,
                     n, wk, om, on);
        goto fail_o;
    }
    {
        const float *x = xb.buf, *bias = have_bias ? bb.buf : NULL;
        const uint16_t *w = wb.buf;
        float *out = ob.buf;
        Py_BEGIN_ALLOW_THREADS
#if HK_X86
        if (hk_simd)
            linear_f16_avx2(x, w, bias, out, m, n, k, threads);
        else
#endif
            linear_f16_generic(x, w, bias, out, m, n, k, threads);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&ob);
    if (have_bias) PyBuffer_Release(&bb);
    PyBuffer_Release(&wb);
    PyBuffer_Release(&xb);
    Py_RETURN_NONE;
fail_o:
    PyBuffer_Release(&ob);
fail_b:
    if (have_bias) PyBuffer_Release(&bb);
fail_w:
    PyBuffer_Release(&wb);
fail_x:
    PyBuffer_Release(&xb);
    return NULL;
}

/* A C-contiguous float32 buffer of exactly three dimensions. */
static int get_3d(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    return ext_buffer(obj, view, writable, 3, NULL, "float32", "attend", what);
}

PyDoc_STRVAR(attend_doc, "attend(q, k, v, out, scale, start, end, threads)\n\n"
                         "Softmax attention of few query rows per group over cached keys: q and out [G, R, Dh], "
                         "k and v [G, T, Dh] (T >= end), float32, C-contiguous; group g attends to keys "
                         "[start[g], end) (start: int64 [G], or None for 0).");

static PyObject *py_attend(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "attend(q, k, v, out, scale, start, end, threads)");
        return NULL;
    }
    float scale = (float)PyFloat_AsDouble(args[4]);
    Py_ssize_t end = PyLong_AsSsize_t(args[6]);
    int threads = threads_arg((int)PyLong_AsLong(args[7]));
    if (PyErr_Occurred()) return NULL;
    Py_buffer qb, kb, vb, ob, sb;
    int have_start = args[5] != Py_None;
    PyObject *result = NULL;
    if (get_3d(args[0], &qb, 0, "q") < 0) return NULL;
    if (get_3d(args[1], &kb, 0, "k") < 0) goto fail_q;
    if (get_3d(args[2], &vb, 0, "v") < 0) goto fail_k;
    if (get_3d(args[3], &ob, 1, "out") < 0) goto fail_v;
    if (have_start && PyObject_GetBuffer(args[5], &sb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto fail_o;
    {
        Py_ssize_t g = qb.shape[0], r = qb.shape[1], dh = qb.shape[2], cap = kb.shape[1];
        int same = kb.shape[0] == g && kb.shape[2] == dh && vb.shape[0] == g && vb.shape[1] == cap &&
                   vb.shape[2] == dh && ob.shape[0] == g && ob.shape[1] == r && ob.shape[2] == dh;
        if (!same || end < 1 || end > cap || (have_start && (sb.itemsize != 8 || sb.len != 8 * g))) {
            PyErr_SetString(PyExc_ValueError, "attend: shapes do not match (or end outside the keys)");
            goto fail_s;
        }
        const int64_t *start = have_start ? (const int64_t *)sb.buf : NULL;
        for (Py_ssize_t i = 0; start && i < g; i++)
            if (start[i] < 0 || start[i] >= end) {
                PyErr_SetString(PyExc_ValueError, "attend: start outside [0, end)");
                goto fail_s;
            }
        const float *q = qb.buf, *k = kb.buf, *v = vb.buf;
        float *o = ob.buf;
        int simd = hk_simd && dh % 8 == 0, failed = 0;
        Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(threads) if (threads > 1 && g > 1)
        {
            float *scratch = (float *)malloc(((size_t)r * end + 8) * sizeof(float));
            if (!scratch) failed = 1;
#pragma omp for schedule(static)
            for (Py_ssize_t j = 0; j < g; j++) {
                if (!scratch) continue;
                Py_ssize_t from = start ? (Py_ssize_t)start[j] : 0;
                const float *kj = k + (size_t)j * cap * dh, *vj = v + (size_t)j * cap * dh;
#if HK_X86
                if (simd)
                    attend_group_avx2(q + (size_t)j * r * dh, kj, vj, o + (size_t)j * r * dh, r, dh, from, end,
                                      scale, scratch);
                else
#endif
                    attend_group_generic(q + (size_t)j * r * dh, kj, vj, o + (size_t)j * r * dh, r, dh, from, end,
                                         scale, scratch);
            }
            free(scratch);
        }
        Py_END_ALLOW_THREADS
        (void)simd;
        if (failed) {
            PyErr_NoMemory();
            goto fail_s;
        }
    }
    Py_INCREF(Py_None);
    result = Py_None;
fail_s:
    if (have_start) PyBuffer_Release(&sb);
fail_o:
    PyBuffer_Release(&ob);
fail_v:
    PyBuffer_Release(&vb);
fail_k:
    PyBuffer_Release(&kb);
fail_q:
    PyBuffer_Release(&qb);
    return result;
}

PyDoc_STRVAR(select_doc, "log_softmax_top(x, k, index, logprob)\n\n"
                         "For each row of float32 x [R, V]: the k largest entries' indices (int64 index [R, k], "
                         "largest first, ties to the lower index) and their log-probabilities under the row's "
                         "softmax (float32 logprob [R, k]). -inf entries are never taken while a finite one is left.");

/* The running top-k of one row: entry i goes in if the list is not full or it beats the k-th. */
static inline void top_insert(float xi, Py_ssize_t i, Py_ssize_t k, float *best, int64_t *index, Py_ssize_t *n) {
    Py_ssize_t j = *n < k ? (*n)++ : k - 1;
    while (j > 0 && best[j - 1] < xi) {
        best[j] = best[j - 1];
        index[j] = index[j - 1];
        j--;
    }
    best[j] = xi;
    index[j] = i;
}

#if HK_X86
/* Eight entries per compare against the k-th best; only those above it are inserted (a few per row). */
HK_AVX2 static float top_scan_avx2(const float *x, Py_ssize_t v, Py_ssize_t k, float *best, int64_t *index,
                                   Py_ssize_t *n) {
    float mx = -INFINITY;
    Py_ssize_t i = 0;
    for (; i < v && *n < k; i++) {
        mx = x[i] > mx ? x[i] : mx;
        top_insert(x[i], i, k, best, index, n);
    }
    __m256 mv = _mm256_set1_ps(-INFINITY), floor8 = _mm256_set1_ps(best[k - 1]);
    for (; i + 8 <= v; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        mv = _mm256_max_ps(mv, xv);
        int hits = _mm256_movemask_ps(_mm256_cmp_ps(xv, floor8, _CMP_GT_OQ));
        if (!hits) continue;
        for (int b = 0; b < 8; b++)
            if (x[i + b] > best[k - 1]) top_insert(x[i + b], i + b, k, best, index, n);
        floor8 = _mm256_set1_ps(best[k - 1]);
    }
    float m8 = hmax(mv);
    mx = m8 > mx ? m8 : mx;
    for (; i < v; i++) {
        mx = x[i] > mx ? x[i] : mx;
        if (x[i] > best[k - 1]) top_insert(x[i], i, k, best, index, n);
    }
    return mx;
}
#endif

/* One row: its top k (largest first, ties to the lower index) and the row's log-sum-exp. */
static void select_row(const float *x, Py_ssize_t v, Py_ssize_t k, int64_t *index, float *logprob, int simd) {
    float best[64];
    Py_ssize_t n = 0;
    float mx = -INFINITY;
#if HK_X86
    if (simd) {
        mx = top_scan_avx2(x, v, k, best, index, &n);
    } else
#endif
        for (Py_ssize_t i = 0; i < v; i++) {
            mx = x[i] > mx ? x[i] : mx;
            if (n < k || x[i] > best[k - 1]) top_insert(x[i], i, k, best, index, &n);
        }
    double sum = 0.0;
    if (mx != -INFINITY) {
#if HK_X86
        if (simd) {
            sum = exp_sum_avx2(x, v, mx);
        } else
#endif
            for (Py_ssize_t i = 0; i < v; i++) sum += exp_scalar(x[i] - mx);
    }
    float lse = mx == -INFINITY ? 0.0f : mx + (float)log(sum);
    for (Py_ssize_t j = 0; j < k; j++) logprob[j] = j < n ? best[j] - lse : -INFINITY;
}

static PyObject *py_log_softmax_top(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "log_softmax_top(x, k, index, logprob)");
        return NULL;
    }
    Py_ssize_t k = PyLong_AsSsize_t(args[1]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer xb, ib, lb;
    Py_ssize_t rows, v, ir, ic, lr, lc;
    PyObject *result = NULL;
    if (get_matrix(args[0], &xb, 4, 0, "x", &rows, &v) < 0) return NULL;
    if (get_matrix(args[2], &ib, 8, 1, "index", &ir, &ic) < 0) goto fail_x;
    if (get_matrix(args[3], &lb, 4, 1, "logprob", &lr, &lc) < 0) goto fail_i;
    if (k < 1 || k > 64 || k > v || ir != rows || ic != k || lr != rows || lc != k) {
        PyErr_SetString(PyExc_ValueError, "log_softmax_top: need 1 <= k <= min(64, V) and [R, k] outputs");
        goto fail_l;
    }
    {
        const float *x = xb.buf;
        int64_t *index = ib.buf;
        float *logprob = lb.buf;
        int simd = hk_simd;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < rows; r++)
            select_row(x + (size_t)r * v, v, k, index + (size_t)r * k, logprob + (size_t)r * k, simd);
        Py_END_ALLOW_THREADS
    }
    Py_INCREF(Py_None);
    result = Py_None;
fail_l:
    PyBuffer_Release(&lb);
fail_i:
    PyBuffer_Release(&ib);
fail_x:
    PyBuffer_Release(&xb);
    return result;
}

PyDoc_STRVAR(softmax_rows_doc, "softmax_rows(s, threads)\n\nSoftmax over the last axis of a C-contiguous float32 "
                               "array, in place (a row of -inf becomes zeros).");

static PyObject *py_softmax_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "softmax_rows(s, threads)");
        return NULL;
    }
    int threads = threads_arg((int)PyLong_AsLong(args[1]));
    if (PyErr_Occurred()) return NULL;
    Py_buffer sb;
    Py_ssize_t rows, cols;
    if (get_matrix(args[0], &sb, 4, 1, "s", &rows, &cols) < 0) return NULL;
    float *s = sb.buf;
    int simd = hk_simd;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) if (threads > 1 && rows > 1) schedule(static)
    for (Py_ssize_t r = 0; r < rows; r++) {
#if HK_X86
        if (simd)
            softmax_row_avx2(s + (size_t)r * cols, cols);
        else
#endif
            softmax_row_generic(s + (size_t)r * cols, cols);
    }
    Py_END_ALLOW_THREADS
    (void)simd;
    PyBuffer_Release(&sb);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(gelu_doc, "gelu(x, threads)\n\nExact-erf GELU of a C-contiguous float32 array, in place.");

static PyObject *py_gelu(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "gelu(x, threads)");
        return NULL;
    }
    int threads = threads_arg((int)PyLong_AsLong(args[1]));
    if (PyErr_Occurred()) return NULL;
    Py_buffer xb;
    Py_ssize_t rows, cols;
    if (get_matrix(args[0], &xb, 4, 1, "x", &rows, &cols) < 0) return NULL;
    float *x = xb.buf;
    Py_ssize_t n = rows * cols, block = 16384, blocks = (n + block - 1) / block;
    int simd = hk_simd;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) if (threads > 1 && blocks > 1) schedule(static)
    for (Py_ssize_t g = 0; g < blocks; g++) {
        Py_ssize_t s0 = g * block, len = n - s0 < block ? n - s0 : block;
#if HK_X86
        if (simd)
            gelu_avx2(x + s0, len);
        else
#endif
            for (Py_ssize_t i = 0; i < len; i++) x[s0 + i] = gelu_scalar(x[s0 + i]);
    }
    Py_END_ALLOW_THREADS
    (void)simd;
    PyBuffer_Release(&xb);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(layer_norm_doc, "layer_norm(x, weight, bias, eps, out)\n\nLayerNorm over the last axis: x and out "
                             "[..., C], weight and bias [C], float32, C-contiguous (out may be x).");

static PyObject *py_layer_norm(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "layer_norm(x, weight, bias, eps, out)");
        return NULL;
    }
    float eps = (float)PyFloat_AsDouble(args[3]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer xb, wb, bb, ob;
    Py_ssize_t rows, cols, wr, wc, br, bc, orows, ocols;
    if (get_matrix(args[0], &xb, 4, 0, "x", &rows, &cols) < 0) return NULL;
    if (get_matrix(args[1], &wb, 4, 0, "weight", &wr, &wc) < 0) goto fail_x;
    if (get_matrix(args[2], &bb, 4, 0, "bias", &br, &bc) < 0) goto fail_w;
    if (get_matrix(args[4], &ob, 4, 1, "out", &orows, &ocols) < 0) goto fail_b;
    if (wr * wc != cols || br * bc != cols || orows != rows || ocols != cols) {
        PyErr_SetString(PyExc_ValueError, "layer_norm: shapes do not match");
        goto fail_o;
    }
    {
        const float *x = xb.buf, *w = wb.buf, *b = bb.buf;
        float *y = ob.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < rows; r++) {
#if HK_X86
            if (hk_simd)
                layer_norm_row_avx2(x + (size_t)r * cols, w, b, y + (size_t)r * cols, cols, eps);
            else
#endif
                layer_norm_row_generic(x + (size_t)r * cols, w, b, y + (size_t)r * cols, cols, eps);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&ob);
    PyBuffer_Release(&bb);
    PyBuffer_Release(&wb);
    PyBuffer_Release(&xb);
    Py_RETURN_NONE;
fail_o:
    PyBuffer_Release(&ob);
fail_b:
    PyBuffer_Release(&bb);
fail_w:
    PyBuffer_Release(&wb);
fail_x:
    PyBuffer_Release(&xb);
    return NULL;
}

static PyObject *py_use_simd(PyObject *self, PyObject *arg) {
    (void)self;
    int want = PyObject_IsTrue(arg);
    if (want < 0) return NULL;
    int before = hk_simd;
#if HK_X86
    __builtin_cpu_init();
    hk_simd = want && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              __builtin_cpu_supports("f16c");
#else
    hk_simd = 0;
#endif
    return PyBool_FromLong(before);
}

static PyObject *py_simd(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyBool_FromLong(hk_simd);
}

static PyMethodDef methods[] = {
    {"linear_f16", (PyCFunction)(void (*)(void))py_linear_f16, METH_FASTCALL, linear_f16_doc},
    {"attend", (PyCFunction)(void (*)(void))py_attend, METH_FASTCALL, attend_doc},
    {"log_softmax_top", (PyCFunction)(void (*)(void))py_log_softmax_top, METH_FASTCALL, select_doc},
    {"softmax_rows", (PyCFunction)(void (*)(void))py_softmax_rows, METH_FASTCALL, softmax_rows_doc},
    {"gelu", (PyCFunction)(void (*)(void))py_gelu, METH_FASTCALL, gelu_doc},
    {"layer_norm", (PyCFunction)(void (*)(void))py_layer_norm, METH_FASTCALL, layer_norm_doc},
    {"use_simd", py_use_simd, METH_O, "use_simd(flag) -> previous: the AVX2 paths where the CPU has them."},
    {"simd", py_simd, METH_NOARGS, "simd() -> whether the AVX2/FMA/F16C paths are in use."},
    EXT_MAX_THREADS_METHOD,
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "CPU kernels for float32 inference (see the C source).", -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL) return NULL;
    PyObject *on = py_use_simd(NULL, Py_True);
    Py_XDECREF(on);
    return mod;
}
