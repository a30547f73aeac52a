/* Argument buffers for layergw's C extensions (_lap.c, _cg_step.c): one check, one message. */
#ifndef LAYERGW_BUFFERS_H
#define LAYERGW_BUFFERS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static const char *F64[] = {"d", NULL};
static const char *I64[] = {"l", "q", NULL};

/* A C-contiguous buffer of `len` 8-byte items (len < 0: any) whose format is one of `fmts`; on
 * failure a ValueError naming the function `fn`, the argument and what came, and -1. */
static int get(PyObject *obj, Py_buffer *view, const char *fn, const char *name, const char *fmts[],
               Py_ssize_t len, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: %s must be a C-contiguous %sbuffer of 8-byte items of "
                     "format '%s'; got a %s that is not", fn, name, writable ? "writable " : "", fmts[0],
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int ok = 0;
    for (const char **f = fmts; *f; f++) ok |= strcmp(view->format, *f) == 0 && view->itemsize == 8;
    if (!ok || (len >= 0 && view->len != len * view->itemsize)) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be a C-contiguous %sbuffer of %zd 8-byte items "
                     "of format '%s'; got %zd bytes of format '%s'", fn, name, writable ? "writable " : "",
                     len, fmts[0], view->len, view->format);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#endif
