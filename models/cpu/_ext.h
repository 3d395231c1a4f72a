/* What the CPU extensions (`_kernels.c`, `_conv.c`) share: OpenMP thread counts and the `max_threads`
 * method. Header-only (static functions): each extension is its own shared object. */
#ifndef MODELS_CPU_EXT_H
#define MODELS_CPU_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* A requested thread count clamped to 1 .. the processors OpenMP may use (always 1 without OpenMP). */
static int threads_arg(int requested) {
#ifdef _OPENMP
    int most = omp_get_num_procs();
    return requested < 1 ? 1 : (requested > most ? most : requested);
#else
    (void)requested;
    return 1;
#endif
}

static PyObject *py_max_threads(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromLong(threads_arg(1 << 20));
}

#define EXT_MAX_THREADS_METHOD                                                                               \
    {"max_threads", py_max_threads, METH_NOARGS, "max_threads() -> processors OpenMP may use (1 without it)."}

#endif
