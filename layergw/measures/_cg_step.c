/* The elementwise end of a conditional-gradient GW step (_gw_cg.py), in one pass.
 *
 * Why: after the line search a step updates three n x n arrays and builds the next step's
 * cost from them; done as NumPy operations that is some seventeen passes over 8 MB arrays
 * at n = 1000 (temporaries, in-place updates), a memory-bound tenth of a step. One loop
 * reads Q, P, G once and writes P, G, M once, with the same operations in the same order,
 * so the results are bit for bit those of the NumPy expression in _gw_cg.step_update.
 */
#include "_buffers.h"  /* first: it includes Python.h */
#include <stdint.h>

PyDoc_STRVAR(update_doc,
"update(P, G, Q, M, row2, col2, sigma, alpha) -> None\n\n"
"With P, G, Q, M (n, n) float64 and row2, col2 (n) float64, sigma (n) int64, in place:\n"
"P += alpha * (Q - P);  G *= 1 - alpha;  G[i, sigma[i]] += alpha / n;  M = (row2[i] + col2[j]) + -4 P.");

static PyObject *update(PyObject *self, PyObject *args) {
    PyObject *objs[7];
    double alpha;
    if (!PyArg_ParseTuple(args, "OOOOOOOd", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6], &alpha))
        return NULL;
    const char *names[7] = {"row2", "P", "G", "Q", "M", "col2", "sigma"};
    PyObject *order[7] = {objs[4], objs[0], objs[1], objs[2], objs[3], objs[5], objs[6]};
    Py_buffer b[7];
    Py_ssize_t n = -1, got = 0;
    for (; got < 7; got++) {
        Py_ssize_t len = got == 0 ? -1 : (got <= 4 ? n * n : n);
        if (get(order[got], &b[got], "_cg_step.update", names[got], got == 6 ? I64 : F64, len, got >= 1 && got <= 4) < 0) break;
        if (got == 0) n = b[0].len / 8;
    }
    if (got < 7) {
        for (Py_ssize_t k = 0; k < got; k++) PyBuffer_Release(&b[k]);
        return NULL;
    }
    const double *row2 = b[0].buf, *Q = b[3].buf, *col2 = b[5].buf;
    double *P = b[1].buf, *G = b[2].buf, *M = b[4].buf;
    const int64_t *sigma = b[6].buf;
    int bad = 0;
    for (Py_ssize_t i = 0; i < n; i++) bad |= sigma[i] < 0 || sigma[i] >= n;
    if (!bad) {
        double keep = 1.0 - alpha, add = alpha / (double)n;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            double *p = P + i * n, *g = G + i * n, *m = M + i * n;
            const double *q = Q + i * n, r = row2[i];
            for (Py_ssize_t j = 0; j < n; j++) {
                double x = p[j] + (q[j] - p[j]) * alpha;
                p[j] = x;
                g[j] *= keep;
                m[j] = x * -4.0 + (r + col2[j]);
            }
            g[sigma[i]] += add;
        }
        Py_END_ALLOW_THREADS
    }
    for (int k = 0; k < 7; k++) PyBuffer_Release(&b[k]);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "_cg_step.update: sigma must hold column indices 0..n-1");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"update", update, METH_VARARGS, update_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cg_step", "The elementwise end of a GW conditional-gradient step (see _cg_step.c).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__cg_step(void) { return PyModule_Create(&module); }
