/* The vocoders' CPU kernels (channels last, float32): a direct 1-D convolution, and the activations
 * that surround it (leaky ReLU with zero padding; iSTFTNet's AdaIN + Snake).
 *
 * conv1d: out[t, n] = res[t, n] + bias[n] + sum_j sum_c x[t*stride + j*dilation, c] * w[j, c, n], an
 * implicit GEMM. x is (T_in, C) and already padded, out is (T_out, N); w (K, C, N) is packed once, at
 * load (`models/cpu/conv.py:ConvWeight`), into panels (ceil(N/16), K*C, 16), zero past N, so a tile's
 * weights are one contiguous stream. Why not im2col + sgemm: HiFi-GAN and iSTFTNet run their last stages
 * with 32 to 128 channels over 10^4-10^5 frames, where an im2col copy is as large as the product and
 * sgemm's packing dominates (numpy + OpenBLAS: ~15-40 GFLOP/s at 32-64 channels on this 2-core EPYC;
 * MLX's per-tap matmuls ~16-50, ../shared/docs/MLX-CPU.md). Here the rows of the virtual im2col matrix are
 * read in place: a tile of 6 output rows x 16 output channels is accumulated in 12 AVX2 registers over
 * every (tap, channel), each weight vector loaded once per tile and each input value broadcast once per
 * row (~220 GFLOP/s on this 2-core EPYC, its FMA peak). Output rows are split into chunks of 96 (a panel
 * stays in L1/L2 while the chunk's rows stream), chunks over OpenMP threads, with the GIL released.
 *
 * The AVX2/FMA paths are chosen at run time (`__builtin_cpu_supports`); portable C loops give the same
 * sums in a different order (tests compare both, and the numpy fallbacks, against torch and float64).
 */
#include "_ext.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CV_X86 1
#define CV_AVX2 __attribute__((target("avx2,fma")))
#else
#define CV_X86 0
#endif

#define ROWS 6   /* output rows per register tile */
#define COLS 16  /* output channels per register tile (two 8-float vectors) */
#define CHUNK 96 /* output rows per thread work item */

static int cv_simd = 0;      /* AVX2 + FMA */
static int cv_simd_bf16 = 0; /* AVX-512 BF16 */

typedef struct {
    const float *x, *w, *bias, *res; /* w: packed panels; res: added to the output (may be it), or NULL */
    float *out;
    Py_ssize_t t_out, c_in, n, k, dilation, stride, panel; /* panel = K*C*16 floats */
} Conv;

/* The portable path: one output row at a time. */
static void rows_generic(const Conv *p, Py_ssize_t t0, Py_ssize_t t1) {
    for (Py_ssize_t t = t0; t < t1; t++) {
        float *o = p->out + t * p->n;
        for (Py_ssize_t n = 0; n < p->n; n++) o[n] = (p->bias ? p->bias[n] : 0.0f) + (p->res ? p->res[t * p->n + n] : 0.0f);
        for (Py_ssize_t j = 0; j < p->k; j++) {
            const float *xr = p->x + (t * p->stride + j * p->dilation) * p->c_in;
            for (Py_ssize_t c = 0; c < p->c_in; c++) {
                float v = xr[c];
                const float *wr = p->w + (j * p->c_in + c) * COLS;
                for (Py_ssize_t n = 0; n < p->n; n++) o[n] += v * wr[(n / COLS) * p->panel + n % COLS];
            }
        }
    }
}

#if CV_X86
static inline CV_AVX2 __m256i lane_mask(Py_ssize_t left) {
    int32_t m[8];
    for (int i = 0; i < 8; i++) m[i] = i < left ? -1 : 0;
    return _mm256_loadu_si256((const __m256i *)m);
}

/* The hot tile: 6 output rows from t0 x output channels n0 .. n0 + 16, in 12 registers. */
static inline CV_AVX2 void tile_full(const Conv *p, Py_ssize_t t0, Py_ssize_t n0, const float *res) {
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
    if (p->bias) b0 = _mm256_loadu_ps(p->bias + n0), b1 = _mm256_loadu_ps(p->bias + n0 + 8);
    __m256 a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1;
    __m256 a30 = b0, a31 = b1, a40 = b0, a41 = b1, a50 = b0, a51 = b1;
    const Py_ssize_t step = p->stride * p->c_in, c_in = p->c_in, n = p->n;
    for (Py_ssize_t j = 0; j < p->k; j++) {
        const float *xc = p->x + (t0 * p->stride + j * p->dilation) * c_in;
        const float *wr = p->w + (n0 / COLS) * p->panel + j * c_in * COLS;
        for (Py_ssize_t c = 0; c < c_in; c++, xc++, wr += COLS) {
            __m256 w0 = _mm256_loadu_ps(wr), w1 = _mm256_loadu_ps(wr + 8), v;
            v = _mm256_broadcast_ss(xc);
            a00 = _mm256_fmadd_ps(v, w0, a00), a01 = _mm256_fmadd_ps(v, w1, a01);
            v = _mm256_broadcast_ss(xc + step);
            a10 = _mm256_fmadd_ps(v, w0, a10), a11 = _mm256_fmadd_ps(v, w1, a11);
            v = _mm256_broadcast_ss(xc + 2 * step);
            a20 = _mm256_fmadd_ps(v, w0, a20), a21 = _mm256_fmadd_ps(v, w1, a21);
            v = _mm256_broadcast_ss(xc + 3 * step);
            a30 = _mm256_fmadd_ps(v, w0, a30), a31 = _mm256_fmadd_ps(v, w1, a31);
            v = _mm256_broadcast_ss(xc + 4 * step);
            a40 = _mm256_fmadd_ps(v, w0, a40), a41 = _mm256_fmadd_ps(v, w1, a41);
            v = _mm256_broadcast_ss(xc + 5 * step);
            a50 = _mm256_fmadd_ps(v, w0, a50), a51 = _mm256_fmadd_ps(v, w1, a51);
        }
    }
    float *o = p->out + t0 * n + n0;
#define CV_STORE(r, lo, hi)                                                                                  \
    {                                                                                                        \
        __m256 l = lo, h = hi;                                                                               \
        if (res) l = _mm256_add_ps(l, _mm256_loadu_ps(res + (r) * n)),                                       \
                 h = _mm256_add_ps(h, _mm256_loadu_ps(res + (r) * n + 8));                                   \
        _mm256_storeu_ps(o + (r) * n, l), _mm256_storeu_ps(o + (r) * n + 8, h);                              \
    }
    if (res) res += t0 * n + n0;
    CV_STORE(0, a00, a01) CV_STORE(1, a10, a11) CV_STORE(2, a20, a21)
    CV_STORE(3, a30, a31) CV_STORE(4, a40, a41) CV_STORE(5, a50, a51)
#undef CV_STORE
}

/* Any other tile: fewer rows, or channels masked past N. */
static CV_AVX2 void tile_edge(const Conv *p, Py_ssize_t t0, int rows, Py_ssize_t n0, const float *res) {
    Py_ssize_t left = p->n - n0;
    __m256i m0 = lane_mask(left), m1 = lane_mask(left - 8);
    __m256 acc[ROWS][2];
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
    if (p->bias) b0 = _mm256_maskload_ps(p->bias + n0, m0), b1 = _mm256_maskload_ps(p->bias + n0 + 8, m1);
    for (int r = 0; r < rows; r++) acc[r][0] = b0, acc[r][1] = b1;
    Py_ssize_t step = p->stride * p->c_in;
    for (Py_ssize_t j = 0; j < p->k; j++) {
        const float *xj = p->x + (t0 * p->stride + j * p->dilation) * p->c_in;
        const float *wj = p->w + (n0 / COLS) * p->panel + j * p->c_in * COLS;
        for (Py_ssize_t c = 0; c < p->c_in; c++) {
            __m256 w0 = _mm256_loadu_ps(wj + c * COLS), w1 = _mm256_loadu_ps(wj + c * COLS + 8);
            for (int r = 0; r < rows; r++) {
                __m256 v = _mm256_broadcast_ss(xj + c + r * step);
                acc[r][0] = _mm256_fmadd_ps(v, w0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(v, w1, acc[r][1]);
            }
        }
    }
    for (int r = 0; r < rows; r++) {
        Py_ssize_t at = (t0 + r) * p->n + n0;
        __m256 lo = acc[r][0], hi = acc[r][1];
        if (res) {
            lo = _mm256_add_ps(lo, _mm256_maskload_ps(res + at, m0));
            hi = _mm256_add_ps(hi, _mm256_maskload_ps(res + at + 8, m1));
        }
        _mm256_maskstore_ps(p->out + at, m0, lo);
        _mm256_maskstore_ps(p->out + at + 8, m1, hi);
    }
}

static CV_AVX2 void rows_avx2(const Conv *p, Py_ssize_t t0, Py_ssize_t t1) {
    for (Py_ssize_t n0 = 0; n0 < p->n; n0 += COLS)
        for (Py_ssize_t t = t0; t < t1; t += ROWS) {
            if (t1 - t >= ROWS && p->n - n0 >= COLS)
                tile_full(p, t, n0, p->res);
            else
                tile_edge(p, t, t1 - t < ROWS ? (int)(t1 - t) : ROWS, n0, p->res);
        }
}
#endif


/* ---- bfloat16 products (AVX-512 BF16): twice the float32 FMA rate ---------------------------------
 * The same implicit GEMM with x and w rounded to bfloat16 (round to nearest even) and every product pair
 * accumulated in float32 by VDPBF16PS: lane n of a tile gets x[t, c]·w[c, n] + x[t, c+1]·w[c+1, n] per
 * instruction. Input channels are taken in pairs (an odd C gets a zero channel); x is converted once per
 * call into a (T_in, C/2) array of pairs, w once at load into panels (ceil(N/16), K*C/2, 16 pairs). A tile
 * is 12 output rows x 16 channels in 12 registers. The rounding costs ~3 significant digits per factor;
 * what that does to the audio is measured where a model opts in (tests/models/cpu/test_conv.py). */
#define BROWS 12

typedef struct {
    const uint32_t *x, *w; /* pairs of bfloat16 */
    const float *bias, *res;
    float *out;
    Py_ssize_t t_out, pairs, n, k, dilation, stride, panel; /* panel = K*pairs*16 words */
} ConvB;

static inline uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void rows_bf16_generic(const ConvB *p, Py_ssize_t t0, Py_ssize_t t1) {
    for (Py_ssize_t t = t0; t < t1; t++) {
        float *o = p->out + t * p->n;
        for (Py_ssize_t n = 0; n < p->n; n++) o[n] = (p->bias ? p->bias[n] : 0.0f) + (p->res ? p->res[t * p->n + n] : 0.0f);
        for (Py_ssize_t j = 0; j < p->k; j++) {
            const uint32_t *xr = p->x + (t * p->stride + j * p->dilation) * p->pairs;
            for (Py_ssize_t q = 0; q < p->pairs; q++) {
                uint32_t xv = xr[q];
                float a0, a1;
                uint32_t lo = xv << 16, hi = xv & 0xFFFF0000u;
                memcpy(&a0, &lo, 4), memcpy(&a1, &hi, 4);
                const uint32_t *wr = p->w + (j * p->pairs + q) * COLS;
                for (Py_ssize_t n = 0; n < p->n; n++) {
                    uint32_t wv = wr[(n / COLS) * p->panel + n % COLS], wl = wv << 16, wh = wv & 0xFFFF0000u;
                    float b0, b1;
                    memcpy(&b0, &wl, 4), memcpy(&b1, &wh, 4);
                    o[n] += a0 * b0 + a1 * b1;
                }
            }
        }
    }
}

#if CV_X86
#define CV_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

static CV_BF16 void tile_bf16(const ConvB *p, Py_ssize_t t0, int rows, Py_ssize_t n0) {
    Py_ssize_t left = p->n - n0;
    __mmask16 m = left >= COLS ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    __m512 b = p->bias ? _mm512_maskz_loadu_ps(m, p->bias + n0) : _mm512_setzero_ps();
    __m512 acc[BROWS];
    const Py_ssize_t step = p->stride * p->pairs, pairs = p->pairs;
    if (rows == BROWS) {
        for (int r = 0; r < BROWS; r++) acc[r] = b;
        for (Py_ssize_t j = 0; j < p->k; j++) {
            const uint32_t *xc = p->x + (t0 * p->stride + j * p->dilation) * pairs;
            const uint32_t *wr = p->w + (n0 / COLS) * p->panel + j * pairs * COLS;
            for (Py_ssize_t q = 0; q < pairs; q++, xc++, wr += COLS) {
                __m512bh wv = (__m512bh)_mm512_loadu_si512((const void *)wr);
                for (int r = 0; r < BROWS; r++)
                    acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_set1_epi32((int)xc[r * step]), wv);
            }
        }
    } else {
        for (int r = 0; r < rows; r++) acc[r] = b;
        for (Py_ssize_t j = 0; j < p->k; j++) {
            const uint32_t *xc = p->x + (t0 * p->stride + j * p->dilation) * pairs;
            const uint32_t *wr = p->w + (n0 / COLS) * p->panel + j * pairs * COLS;
            for (Py_ssize_t q = 0; q < pairs; q++, xc++, wr += COLS) {
                __m512bh wv = (__m512bh)_mm512_loadu_si512((const void *)wr);
                for (int r = 0; r < rows; r++)
                    acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_set1_epi32((int)xc[r * step]), wv);
            }
        }
    }
    for (int r = 0; r < rows; r++) {
        Py_ssize_t at = (t0 + r) * p->n + n0;
        __m512 v = acc[r];
        if (p->res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, p->res + at));
        _mm512_mask_storeu_ps(p->out + at, m, v);
    }
}

static CV_BF16 void rows_bf16_avx512(const ConvB *p, Py_ssize_t t0, Py_ssize_t t1) {
    for (Py_ssize_t n0 = 0; n0 < p->n; n0 += COLS)
        for (Py_ssize_t t = t0; t < t1; t += BROWS) tile_bf16(p, t, t1 - t < BROWS ? (int)(t1 - t) : BROWS, n0);
}
#endif

static int get_f32(PyObject *obj, Py_buffer *view, int writable, int ndim, const char *what) {
    return ext_buffer(obj, view, writable, ndim, "f", "float32", "conv1d", what);
}

/* What conv1d and conv1d_bf16 share: (x, w, bias, res, out, dilation, stride, threads), the buffers held
 * until `conv_args_release`. w is float32 panels, or (bf16) uint16 pair panels. */
typedef struct {
    Py_buffer x, w, bias, res, out;
    int have_bias, have_res, threads;
    Py_ssize_t dilation, stride;
} ConvArgs;

static void conv_args_release(ConvArgs *a) {
    PyBuffer_Release(&a->out);
    if (a->have_res) PyBuffer_Release(&a->res);
    if (a->have_bias) PyBuffer_Release(&a->bias);
    PyBuffer_Release(&a->w);
    PyBuffer_Release(&a->x);
}

static int conv_args(PyObject *const *args, Py_ssize_t nargs, int bf16, ConvArgs *a) {
    const char *fn = bf16 ? "conv1d_bf16" : "conv1d";
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "%s(x, w, bias, res, out, dilation, stride, threads)", fn);
        return -1;
    }
    a->dilation = PyLong_AsSsize_t(args[5]), a->stride = PyLong_AsSsize_t(args[6]);
    a->threads = threads_arg((int)PyLong_AsLong(args[7]));
    if (PyErr_Occurred()) return -1;
    a->have_bias = args[2] != Py_None, a->have_res = args[3] != Py_None;
    if (get_f32(args[0], &a->x, 0, 2, "x") < 0) return -1;
    int got = bf16 ? ext_buffer(args[1], &a->w, 0, 3, "H", "uint16", fn, "w") : get_f32(args[1], &a->w, 0, 3, "w");
    if (got < 0) goto fail_x;
    if (a->have_bias && get_f32(args[2], &a->bias, 0, 1, "bias") < 0) goto fail_w;
    if (a->have_res && get_f32(args[3], &a->res, 0, 2, "res") < 0) goto fail_b;
    if (get_f32(args[4], &a->out, 1, 2, "out") < 0) goto fail_r;
    {
        /* per input row of the weight panels: channels (float32) or channel pairs (bf16) */
        Py_ssize_t c_in = a->x.shape[1], n = a->out.shape[1], per_tap = bf16 ? (c_in + 1) / 2 : c_in;
        Py_ssize_t rows = a->w.shape[1], k = per_tap ? rows / per_tap : 0, t_out = a->out.shape[0];
        if (c_in < 1 || rows % per_tap || a->w.shape[2] != (bf16 ? 2 : 1) * COLS ||
            a->w.shape[0] != (n + COLS - 1) / COLS || (a->have_bias && a->bias.shape[0] != n) ||
            (a->have_res && (a->res.shape[0] != t_out || a->res.shape[1] != n)) || a->dilation < 1 ||
            a->stride < 1 || k < 1 || (t_out > 0 && (t_out - 1) * a->stride + (k - 1) * a->dilation >= a->x.shape[0])) {
            PyErr_Format(PyExc_ValueError, "%s: shapes do not match", fn);
            conv_args_release(a);
            return -1;
        }
    }
    return 0;
fail_r:
    if (a->have_res) PyBuffer_Release(&a->res);
fail_b:
    if (a->have_bias) PyBuffer_Release(&a->bias);
fail_w:
    PyBuffer_Release(&a->w);
fail_x:
    PyBuffer_Release(&a->x);
    return -1;
}

PyDoc_STRVAR(conv1d_doc, "conv1d(x, w, bias, res, out, dilation, stride, threads)\n\n"
                         "out[t, n] = res[t, n] + bias[n] + sum_j,c x[t*stride + j*dilation, c] * W[j, c, n]; "
                         "x (T_in, C); w: W (K, C, N) packed as panels (ceil(N/16), K*C, 16), zero past N; "
                         "bias (N,) or None; res (T_out, N) or None (it may be out); out (T_out, N) with "
                         "(T_out - 1)*stride + (K - 1)*dilation < T_in; float32, C-contiguous (x already padded).");

static PyObject *py_conv1d(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    ConvArgs a;
    if (conv_args(args, nargs, 0, &a) < 0) return NULL;
    Py_ssize_t c_in = a.x.shape[1], kc = a.w.shape[1];
    Conv p = {a.x.buf, a.w.buf, a.have_bias ? a.bias.buf : NULL, a.have_res ? a.res.buf : NULL, a.out.buf,
              a.out.shape[0], c_in, a.out.shape[1], kc / c_in, a.dilation, a.stride, kc * COLS};
    Py_ssize_t chunks = (p.t_out + CHUNK - 1) / CHUNK;
    int simd = cv_simd, threads = a.threads;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) if (threads > 1 && chunks > 1) schedule(dynamic, 1)
    for (Py_ssize_t i = 0; i < chunks; i++) {
        Py_ssize_t t0 = i * CHUNK, t1 = t0 + CHUNK < p.t_out ? t0 + CHUNK : p.t_out;
#if CV_X86
        if (simd)
            rows_avx2(&p, t0, t1);
        else
#endif
            rows_generic(&p, t0, t1);
    }
    Py_END_ALLOW_THREADS
    (void)simd;
    conv_args_release(&a);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(conv1d_bf16_doc,
             "conv1d_bf16(x, w, bias, res, out, dilation, stride, threads)\n\n"
             "conv1d with x and W rounded to bfloat16 and products summed in float32: w is W (K, C, N) as "
             "bfloat16 bits packed as panels (ceil(N/16), K*ceil(C/2), 32): row j*ceil(C/2) + q holds, for "
             "each of 16 output channels, the pair (W[j, 2q, n], W[j, 2q+1, n]) (zero past C and N). The other "
             "arguments as conv1d's. Runs the AVX-512 BF16 path where the CPU has it, portable C otherwise.");

static PyObject *py_conv1d_bf16(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    ConvArgs a;
    if (conv_args(args, nargs, 1, &a) < 0) return NULL;
    Py_ssize_t c_in = a.x.shape[1], t_in = a.x.shape[0], pairs = (c_in + 1) / 2, kq = a.w.shape[1];
    uint16_t *xh = malloc((size_t)(t_in * pairs * 2) * sizeof(uint16_t));
    if (xh == NULL) {
        conv_args_release(&a);
        return PyErr_NoMemory();
    }
    ConvB p = {(const uint32_t *)xh, a.w.buf, a.have_bias ? a.bias.buf : NULL, a.have_res ? a.res.buf : NULL,
               a.out.buf, a.out.shape[0], pairs, a.out.shape[1], kq / pairs, a.dilation, a.stride, kq * COLS};
    Py_ssize_t chunks = (p.t_out + CHUNK - 1) / CHUNK;
    int simd = cv_simd_bf16, threads = a.threads;
    const float *x = a.x.buf;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(threads) if (threads > 1 && chunks > 1)
    {
#pragma omp for schedule(static)
        for (Py_ssize_t t = 0; t < t_in; t++) { /* x to bfloat16 pairs, once per call */
            const float *xr = x + t * c_in;
            uint16_t *hr = xh + t * pairs * 2;
            for (Py_ssize_t c = 0; c < c_in; c++) hr[c] = bf16_round(xr[c]);
            if (c_in % 2) hr[c_in] = 0;
        }
#pragma omp for schedule(dynamic, 1)
        for (Py_ssize_t i = 0; i < chunks; i++) {
            Py_ssize_t t0 = i * CHUNK, t1 = t0 + CHUNK < p.t_out ? t0 + CHUNK : p.t_out;
#if CV_X86
            if (simd)
                rows_bf16_avx512(&p, t0, t1);
            else
#endif
                rows_bf16_generic(&p, t0, t1);
        }
    }
    Py_END_ALLOW_THREADS
    (void)simd;
    free(xh);
    conv_args_release(&a);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(leaky_pad_doc, "leaky_pad(x, slope, out, threads)\n\n"
                            "out[pad:pad + T] = max(x, slope*x) with zero rows around it: x (T, C), out (T + 2*pad, C), "
                            "float32, C-contiguous (an activation and a conv's zero padding in one pass).");

static PyObject *py_leaky_pad(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "leaky_pad(x, slope, out, threads)");
        return NULL;
    }
    float slope = (float)PyFloat_AsDouble(args[1]);
    int threads = threads_arg((int)PyLong_AsLong(args[3]));
    if (PyErr_Occurred()) return NULL;
    Py_buffer xb, ob;
    if (get_f32(args[0], &xb, 0, 2, "x") < 0) return NULL;
    if (get_f32(args[2], &ob, 1, 2, "out") < 0) {
        PyBuffer_Release(&xb);
        return NULL;
    }
    Py_ssize_t t = xb.shape[0], c = xb.shape[1], extra = ob.shape[0] - t;
    if (ob.shape[1] != c || extra < 0 || extra % 2) {
        PyErr_SetString(PyExc_ValueError, "leaky_pad: shapes do not match");
        PyBuffer_Release(&ob);
        PyBuffer_Release(&xb);
        return NULL;
    }
    const float *x = xb.buf;
    float *o = ob.buf;
    Py_ssize_t pad = extra / 2, n = t * c, block = 1 << 16, blocks = (n + block - 1) / block;
    Py_BEGIN_ALLOW_THREADS
    memset(o, 0, (size_t)(pad * c) * sizeof(float));
    memset(o + (pad + t) * c, 0, (size_t)(pad * c) * sizeof(float));
    float *body = o + pad * c;
#pragma omp parallel for num_threads(threads) if (threads > 1 && blocks > 1) schedule(static)
    for (Py_ssize_t g = 0; g < blocks; g++) {
        Py_ssize_t s0 = g * block, s1 = s0 + block < n ? s0 + block : n;
        for (Py_ssize_t i = s0; i < s1; i++) { /* vectorised by the compiler (-O3) */
            float v = x[i], u = slope * v;
            body[i] = v > u ? v : u;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ob);
    PyBuffer_Release(&xb);
    Py_RETURN_NONE;
}

/* ---- AdaIN + Snake: iSTFTNet's activation before each of its convolutions (Kokoro) ---------------- */

/* sin(x)^2 for float32: Cephes' sinf reduction by pi/4 (three-part Cody-Waite, fine for |x| < 8192) and
 * its sin/cos polynomials on [-pi/4, pi/4]; the square drops the sign, so only the quadrant's parity
 * (sin or cos polynomial) matters. Relative error ~1e-7 of the square. */
static const float SQ_FOPI = 1.27323954473516f, SQ_DP1 = 0.78515625f, SQ_DP2 = 2.4187564849853515625e-4f,
                   SQ_DP3 = 3.77489497744594108e-8f;

static inline float sin2_scalar(float x) {
    float s = sinf(x);
    return s * s;
}

#if CV_X86
static inline CV_AVX2 __m256 sin2_avx2(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, x);
    __m256i j = _mm256_cvttps_epi32(_mm256_mul_ps(a, _mm256_set1_ps(SQ_FOPI)));
    j = _mm256_and_si256(_mm256_add_epi32(j, _mm256_set1_epi32(1)), _mm256_set1_epi32(~1));
    __m256 y = _mm256_cvtepi32_ps(j);
    a = _mm256_fnmadd_ps(y, _mm256_set1_ps(SQ_DP1), a);
    a = _mm256_fnmadd_ps(y, _mm256_set1_ps(SQ_DP2), a);
    a = _mm256_fnmadd_ps(y, _mm256_set1_ps(SQ_DP3), a);
    __m256 z = _mm256_mul_ps(a, a);
    __m256 c = _mm256_fmadd_ps(z, _mm256_set1_ps(2.443315711809948e-5f), _mm256_set1_ps(-1.388731625493765e-3f));
    c = _mm256_fmadd_ps(c, z, _mm256_set1_ps(4.166664568298827e-2f));
    c = _mm256_mul_ps(_mm256_mul_ps(c, z), z);
    c = _mm256_add_ps(_mm256_fnmadd_ps(_mm256_set1_ps(0.5f), z, c), _mm256_set1_ps(1.0f));
    __m256 sn = _mm256_fmadd_ps(z, _mm256_set1_ps(-1.9515295891e-4f), _mm256_set1_ps(8.3321608736e-3f));
    sn = _mm256_fmadd_ps(sn, z, _mm256_set1_ps(-1.6666654611e-1f));
    sn = _mm256_fmadd_ps(_mm256_mul_ps(sn, z), a, a);
    __m256 use_cos = _mm256_castsi256_ps(
        _mm256_cmpeq_epi32(_mm256_and_si256(j, _mm256_set1_epi32(2)), _mm256_set1_epi32(2)));
    __m256 v = _mm256_blendv_ps(sn, c, use_cos);
    return _mm256_mul_ps(v, v);
}

/* out[t, :] = y + sin(alpha*y)^2 / alpha with y = x*scale + shift, for rows t0..t1. */
static CV_AVX2 void snake_rows_avx2(const float *x, float *out, Py_ssize_t t0, Py_ssize_t t1, Py_ssize_t c,
                                    const float *scale, const float *shift, const float *alpha,
                                    const float *inv_alpha) {
    for (Py_ssize_t t = t0; t < t1; t++) {
        const float *xr = x + t * c;
        float *o = out + t * c;
        Py_ssize_t k = 0;
        for (; k + 8 <= c; k += 8) {
            __m256 y = _mm256_fmadd_ps(_mm256_loadu_ps(xr + k), _mm256_loadu_ps(scale + k), _mm256_loadu_ps(shift + k));
            __m256 s2 = sin2_avx2(_mm256_mul_ps(_mm256_loadu_ps(alpha + k), y));
            _mm256_storeu_ps(o + k, _mm256_fmadd_ps(s2, _mm256_loadu_ps(inv_alpha + k), y));
        }
        for (; k < c; k++) {
            float y = xr[k] * scale[k] + shift[k];
            o[k] = y + sin2_scalar(alpha[k] * y) * inv_alpha[k];
        }
    }
}
#endif

PyDoc_STRVAR(adain_snake_doc, "adain_snake(x, gamma, beta, alpha, eps, out, threads)\n\n"
                              "Instance norm of x (T, C) over T per channel (population variance), then "
                              "y = (1 + gamma)*x_hat + beta and out = y + sin(alpha*y)^2 / alpha; gamma, beta, "
                              "alpha (C,); float32, C-contiguous; out may be x.");

static PyObject *py_adain_snake(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "adain_snake(x, gamma, beta, alpha, eps, out, threads)");
        return NULL;
    }
    double eps = PyFloat_AsDouble(args[4]);
    int threads = threads_arg((int)PyLong_AsLong(args[6]));
    if (PyErr_Occurred()) return NULL;
    Py_buffer b[5];
    const int which[5] = {0, 1, 2, 3, 5}, dims[5] = {2, 1, 1, 1, 2};
    const char *names[5] = {"x", "gamma", "beta", "alpha", "out"};
    int got = 0;
    for (; got < 5; got++)
        if (get_f32(args[which[got]], &b[got], got == 4, dims[got], names[got]) < 0) break;
    PyObject *result = NULL;
    if (got == 5) {
        Py_ssize_t t = b[0].shape[0], c = b[0].shape[1];
        if (b[1].shape[0] != c || b[2].shape[0] != c || b[3].shape[0] != c || b[4].shape[0] != t ||
            b[4].shape[1] != c || t < 1) {
            PyErr_SetString(PyExc_ValueError, "adain_snake: shapes do not match");
        } else {
            const float *x = b[0].buf, *gamma = b[1].buf, *beta = b[2].buf, *alpha = b[3].buf;
            float *out = b[4].buf;
            double *sums = calloc((size_t)(2 * c), sizeof(double));
            float *coef = malloc((size_t)(4 * c) * sizeof(float));
            if (sums == NULL || coef == NULL) {
                PyErr_NoMemory();
            } else {
                int simd = cv_simd;
                Py_BEGIN_ALLOW_THREADS
                for (Py_ssize_t r = 0; r < t; r++) /* mean */
                    for (Py_ssize_t k = 0; k < c; k++) sums[k] += x[r * c + k];
                for (Py_ssize_t k = 0; k < c; k++) sums[k] /= (double)t;
                for (Py_ssize_t r = 0; r < t; r++) /* variance about the mean, as numpy's var */
                    for (Py_ssize_t k = 0; k < c; k++) {
                        double d = x[r * c + k] - sums[k];
                        sums[c + k] += d * d;
                    }
                float *scale = coef, *shift = coef + c, *inv_alpha = coef + 2 * c;
                for (Py_ssize_t k = 0; k < c; k++) {
                    float mean = (float)sums[k], var = (float)(sums[c + k] / (double)t);
                    scale[k] = (1.0f + gamma[k]) / sqrtf(var + (float)eps);
                    shift[k] = beta[k] - mean * scale[k];
                    inv_alpha[k] = 1.0f / alpha[k];
                }
                Py_ssize_t block = 64, blocks = (t + block - 1) / block;
#pragma omp parallel for num_threads(threads) if (threads > 1 && blocks > 1) schedule(static)
                for (Py_ssize_t g = 0; g < blocks; g++) {
                    Py_ssize_t t0 = g * block, t1 = t0 + block < t ? t0 + block : t;
#if CV_X86
                    if (simd) {
                        snake_rows_avx2(x, out, t0, t1, c, scale, shift, alpha, inv_alpha);
                        continue;
                    }
#endif
                    for (Py_ssize_t r = t0; r < t1; r++)
                        for (Py_ssize_t k = 0; k < c; k++) {
                            float y = x[r * c + k] * scale[k] + shift[k];
                            out[r * c + k] = y + sin2_scalar(alpha[k] * y) * inv_alpha[k];
                        }
                }
                Py_END_ALLOW_THREADS
                (void)simd;
                Py_INCREF(Py_None);
                result = Py_None;
            }
            free(sums);
            free(coef);
        }
    }
    for (int i = 0; i < got; i++) PyBuffer_Release(&b[i]);
    return result;
}

static PyObject *py_use_simd(PyObject *self, PyObject *flag) {
    (void)self;
    int before = cv_simd;
#if CV_X86
    __builtin_cpu_init();
    cv_simd = PyObject_IsTrue(flag) && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    cv_simd_bf16 = PyObject_IsTrue(flag) && __builtin_cpu_supports("avx512f") &&
                   __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                   __builtin_cpu_supports("avx512bf16");
#else
    (void)flag;
    cv_simd = cv_simd_bf16 = 0;
#endif
    return PyBool_FromLong(before);
}

static PyObject *py_bf16_simd(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyBool_FromLong(cv_simd_bf16);
}

static PyMethodDef methods[] = {
    {"conv1d", (PyCFunction)(void (*)(void))py_conv1d, METH_FASTCALL, conv1d_doc},
    {"conv1d_bf16", (PyCFunction)(void (*)(void))py_conv1d_bf16, METH_FASTCALL, conv1d_bf16_doc},
    {"bf16_simd", py_bf16_simd, METH_NOARGS, "bf16_simd() -> whether conv1d_bf16 runs its AVX-512 BF16 path."},
    {"leaky_pad", (PyCFunction)(void (*)(void))py_leaky_pad, METH_FASTCALL, leaky_pad_doc},
    {"adain_snake", (PyCFunction)(void (*)(void))py_adain_snake, METH_FASTCALL, adain_snake_doc},
    {"use_simd", py_use_simd, METH_O, "use_simd(flag) -> previous: the AVX2 path where the CPU has it."},
    EXT_MAX_THREADS_METHOD,
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_conv", "Direct 1-D convolution (see the C source).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__conv(void) {
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL) return NULL;
    PyObject *on = py_use_simd(NULL, Py_True);
    Py_XDECREF(on);
    return mod;
}
