/* What the CPU extensions (`_kernels.c`, `_conv.c`) share: OpenMP thread counts and the `max_threads`
 * method. Header-only (static functions): each extension is its own shared object. */
#ifndef MODELS_CPU_EXT_H
#define MODELS_CPU_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

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

/* A C-contiguous buffer of `ndim` dimensions whose items have struct format `fmt` ("f" float32, "H"
 * uint16; `fmt` NULL: any 4-byte item), or -1 with a TypeError "`fn`: `what` must be ...". */
static inline int ext_buffer(PyObject *obj, Py_buffer *view, int writable, int ndim, const char *fmt,
                             const char *type_name, const char *fn, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    Py_ssize_t size = fmt != NULL && fmt[0] == 'H' ? 2 : 4;
    if (view->itemsize != size || view->ndim != ndim ||
        (fmt != NULL && (view->format == NULL || strcmp(view->format, fmt) != 0))) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a C-contiguous %d-D %s array", fn, what, ndim, type_name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#define EXT_MAX_THREADS_METHOD                                                                               \
    {"max_threads", py_max_threads, METH_NOARGS, "max_threads() -> processors OpenMP may use (1 without it)."}

#endif
