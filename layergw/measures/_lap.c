/* A square linear assignment problem solved exactly, started from given column potentials
 * and a given assignment.
 *
 * Why: the conditional-gradient GW solver (_gw_cg.py) solves one assignment problem per
 * step, and its costs move little from one step to the next, so the previous step's column
 * potentials v nearly price the new optimum. Under them the new optimum lies almost wholly
 * among each row's few cheapest columns.
 *
 * How: each row gets a candidate list (its K cheapest columns under v, and its previous
 * column); the problem restricted to those edges is solved by shortest augmenting paths
 * (Dijkstra on reduced costs with a heap, the primal-dual method of Jonker & Volgenant and
 * Crouse), so a search costs K per row it visits instead of n. Then every one of the n^2
 * reduced costs is checked: a row with a column cheaper than its assignment by more than
 * rounding (TOL of the largest cost) gets those columns added and is searched again. When no
 * row has one, the potentials are feasible for the whole problem and tight on the
 * assignment, which is then optimal (LP duality). After MAX_ROUNDS checks every row
 * searches all n columns, which is the plain dense method.
 *
 * The start only changes the speed, never the answer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define K 8           /* candidate columns per row at the start */
#define CAP 64        /* a row whose list would outgrow this searches all columns */
#define TOL 1e-14     /* a violation smaller than this share of the largest |cost| is rounding */
#define MAX_ROUNDS 8  /* checks before every row goes dense */

typedef struct {
    Py_ssize_t n;
    const double *c;
    double *u, *v;
    int64_t *col4row, *row4col;
    int64_t *cand;   /* n * CAP */
    int32_t *ncand;  /* per row; < 0: dense */
    /* search state */
    double *shortest;
    int64_t *path, *touched, *srows, *scols;
    char *scanned;
    /* heap of (key, column) */
    double *hkey;
    int64_t *hcol;
    Py_ssize_t hsize, hcap;
    double work, budget;  /* edges relaxed so far, and how many before giving up (-4) */
} Lap;

static int heap_push(Lap *s, double key, int64_t j) {
    if (s->hsize == s->hcap) {
        Py_ssize_t cap = s->hcap * 2;
        double *k = realloc(s->hkey, sizeof(double) * (size_t)cap);
        if (!k) return -1;
        s->hkey = k;
        int64_t *c = realloc(s->hcol, sizeof(int64_t) * (size_t)cap);
        if (!c) return -1;
        s->hcol = c;
        s->hcap = cap;
    }
    Py_ssize_t x = s->hsize++;
    while (x > 0) {
        Py_ssize_t p = (x - 1) / 2;
        if (!(key < s->hkey[p])) break;
        s->hkey[x] = s->hkey[p];
        s->hcol[x] = s->hcol[p];
        x = p;
    }
    s->hkey[x] = key;
    s->hcol[x] = j;
    return 0;
}

static void heap_pop(Lap *s) {
    double key = s->hkey[--s->hsize];
    int64_t col = s->hcol[s->hsize];
    Py_ssize_t x = 0, m = s->hsize;
    for (;;) {
        Py_ssize_t a = 2 * x + 1, b = a + 1, best = x;
        double bk = key;
        if (a < m && s->hkey[a] < bk) { best = a; bk = s->hkey[a]; }
        if (b < m && s->hkey[b] < bk) { best = b; bk = s->hkey[b]; }
        if (best == x) break;
        s->hkey[x] = s->hkey[best];
        s->hcol[x] = s->hcol[best];
        x = best;
    }
    if (m > 0) { s->hkey[x] = key; s->hcol[x] = col; }
}

/* Relax row i's edges (its list, or all columns when dense) at distance base + c - v. */
static int relax(Lap *s, int64_t i, double min_val, Py_ssize_t *ntouched) {
    const double *ci = s->c + (Py_ssize_t)i * s->n;
    const double base = min_val - s->u[i];
    Py_ssize_t m = s->ncand[i] < 0 ? s->n : s->ncand[i];
    s->work += (double)m;
    const int64_t *list = s->cand + (Py_ssize_t)i * CAP;
    for (Py_ssize_t k = 0; k < m; k++) {
        int64_t j = s->ncand[i] < 0 ? k : list[k];
        if (s->scanned[j]) continue;
        double red = base + ci[j] - s->v[j];
        if (red < s->shortest[j]) {
            if (s->shortest[j] == INFINITY) s->touched[(*ntouched)++] = j;
            s->shortest[j] = red;
            s->path[j] = i;
            if (heap_push(s, red, j) < 0) return -1;
        }
    }
    return 0;
}

/* Shortest augmenting path from free row r over the candidate edges, then the potentials'
 * update and the augmentation. 0: done; 1: no free column reachable; -1: out of memory. */
static int augment(Lap *s, int64_t r) {
    Py_ssize_t ntouched = 0, nrows = 0, ncols = 0;
    double min_val = 0.0;
    int64_t i = r, sink = -1;
    int status = 0;
    s->hsize = 0;
    s->srows[nrows++] = r;
    while (sink < 0) {
        if (relax(s, i, min_val, &ntouched) < 0) { status = -1; break; }
        int64_t j = -1;
        while (s->hsize > 0) {  /* the nearest unscanned column; a free one among equals */
            double key = s->hkey[0];
            int64_t cand = s->hcol[0];
            heap_pop(s);
            if (s->scanned[cand] || key > s->shortest[cand]) continue;
            j = cand;
            if (s->row4col[j] >= 0) {
                for (Py_ssize_t h = 0; h < s->hsize && s->hkey[h] == key; h++) {
                    int64_t alt = s->hcol[h];
                    if (!s->scanned[alt] && s->row4col[alt] < 0 && s->shortest[alt] == key) { j = alt; break; }
                }
                if (j != cand) heap_push(s, key, cand);
            }
            min_val = key;
            break;
        }
        if (j < 0) { status = 1; break; }
        s->scanned[j] = 1;
        s->scols[ncols++] = j;
        if (s->row4col[j] < 0) sink = j;
        else { i = s->row4col[j]; s->srows[nrows++] = i; }
    }
    if (status == 0) {
        s->u[r] += min_val;
        for (Py_ssize_t k = 1; k < nrows; k++) {
            int64_t ii = s->srows[k];
            s->u[ii] += min_val - s->shortest[s->col4row[ii]];
        }
        for (Py_ssize_t k = 0; k < ncols; k++) {
            int64_t jj = s->scols[k];
            s->v[jj] -= min_val - s->shortest[jj];
        }
        int64_t j = sink;
        for (;;) {
            int64_t ii = s->path[j];
            s->row4col[j] = ii;
            int64_t prev = s->col4row[ii];
            s->col4row[ii] = j;
            j = prev;
            if (ii == r) break;
        }
    }
    for (Py_ssize_t k = 0; k < ncols; k++) s->scanned[s->scols[k]] = 0;
    for (Py_ssize_t k = 0; k < ntouched; k++) {
        s->shortest[s->touched[k]] = INFINITY;
        s->path[s->touched[k]] = -1;
    }
    return status;
}

static int in_list(const Lap *s, int64_t i, int64_t j) {
    const int64_t *list = s->cand + (Py_ssize_t)i * CAP;
    for (int32_t k = 0; k < s->ncand[i]; k++) if (list[k] == j) return 1;
    return 0;
}

static void add(Lap *s, int64_t i, int64_t j) {
    if (s->ncand[i] < 0 || in_list(s, i, j)) return;
    if (s->ncand[i] == CAP) { s->ncand[i] = -1; return; }
    s->cand[(Py_ssize_t)i * CAP + s->ncand[i]++] = j;
}

/* Each row's K cheapest columns under v (and its start column), and its row potential. */
static void start_lists(Lap *s) {
    Py_ssize_t n = s->n, k = n < K ? n : K;
    double best[K];
    int64_t arg[K];
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *ci = s->c + i * n;
        Py_ssize_t m = 0;
        for (Py_ssize_t j = 0; j < n; j++) {  /* insertion into a sorted list of k */
            double red = ci[j] - s->v[j];
            if (m == k && !(red < best[k - 1])) continue;
            Py_ssize_t x = m < k ? m++ : k - 1;
            while (x > 0 && red < best[x - 1]) { best[x] = best[x - 1]; arg[x] = arg[x - 1]; x--; }
            best[x] = red;
            arg[x] = j;
        }
        s->ncand[i] = 0;
        for (Py_ssize_t x = 0; x < m; x++) s->cand[i * CAP + s->ncand[i]++] = arg[x];
        int64_t prev = s->col4row[i];
        if (prev >= 0 && prev < n) add(s, i, prev);
        s->u[i] = best[0];
    }
}

/* Check every reduced cost; free each row that has a column cheaper than its own by more
 * than tol, with its K cheapest columns added to its list. Returns the rows freed (in
 * free_rows). */
static Py_ssize_t check(Lap *s, double tol, int64_t *free_rows) {
    Py_ssize_t n = s->n, nfree = 0;
    double best[K];
    int64_t arg[K];
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *ci = s->c + i * n;
        int64_t own = s->col4row[i];
        double mine = ci[own] - s->v[own], bar = mine - tol;
        Py_ssize_t m = 0;
        for (Py_ssize_t j = 0; j < n; j++) {
            double red = ci[j] - s->v[j];
            if (!(red < bar)) continue;
            Py_ssize_t x = m < K ? m++ : K - 1;
            while (x > 0 && red < best[x - 1]) { best[x] = best[x - 1]; arg[x] = arg[x - 1]; x--; }
            best[x] = red;
            arg[x] = j;
            if (m == K) bar = best[K - 1];
        }
        if (m == 0) { s->u[i] = mine; continue; }
        for (Py_ssize_t x = 0; x < m; x++) add(s, i, arg[x]);
        s->row4col[own] = -1;
        s->col4row[i] = -1;
        free_rows[nfree++] = i;
        s->u[i] = best[0];
    }
    return nfree;
}

/* A C-contiguous buffer of `len` 8-byte items (len < 0: any) whose format is one of `fmts`. */
static int get(PyObject *obj, Py_buffer *view, const char *name, const char *fmts[], Py_ssize_t len,
               int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "_lap.solve: %s must be a C-contiguous %sbuffer of 8-byte items of "
                     "format '%s'; got a %s that is not", name, writable ? "writable " : "", fmts[0],
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int ok = 0;
    for (const char **f = fmts; *f; f++) ok |= strcmp(view->format, *f) == 0 && view->itemsize == 8;
    if (!ok || (len >= 0 && view->len != len * view->itemsize)) {
        PyErr_Format(PyExc_ValueError, "_lap.solve: %s must be a C-contiguous %sbuffer of %zd 8-byte items "
                     "of format '%s'; got %zd bytes of format '%s'", name, writable ? "writable " : "",
                     len, fmts[0], view->len, view->format);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static const char *F64[] = {"d", NULL};
static const char *I64[] = {"l", "q", NULL};

/* The whole solve on plain arrays; returns the searches run, or -1 (no memory), -2 (no finite
 * assignment), -3 (rounding kept the check from passing: a bug, never seen), -4 (over budget). */
static Py_ssize_t run(Lap *s, int64_t *free_rows) {
    Py_ssize_t n = s->n, searched = 0;
    double scale = 0.0;
    for (Py_ssize_t x = 0; x < n * n; x++) {
        double a = fabs(s->c[x]);
        if (!(a < INFINITY)) return -2;
        if (a > scale) scale = a;
    }
    double tol = TOL * scale;
    start_lists(s);
    for (Py_ssize_t j = 0; j < n; j++) s->row4col[j] = -1;
    Py_ssize_t nfree = 0;
    for (Py_ssize_t i = 0; i < n; i++) {  /* a start column still cheapest in its row is kept */
        int64_t prev = s->col4row[i];
        s->col4row[i] = -1;
        if (prev >= 0 && prev < n && s->row4col[prev] < 0 && s->c[i * n + prev] - s->v[prev] == s->u[i]) {
            s->col4row[i] = prev;
            s->row4col[prev] = i;
        }
        else free_rows[nfree++] = i;
    }
    for (int round = 0;; round++) {
        for (Py_ssize_t k = 0; k < nfree; k++) {
            int status = augment(s, free_rows[k]);
            if (status < 0) return -1;
            if (s->work > s->budget) return -4;
            if (status > 0) {  /* the lists do not connect it: this row searches everything */
                if (s->ncand[free_rows[k]] < 0) return -2;
                s->ncand[free_rows[k]] = -1;
                k--;
                continue;
            }
            searched++;
        }
        nfree = check(s, tol, free_rows);
        if (nfree == 0) return searched;
        if (round == 4 * MAX_ROUNDS) return -3;
        if (round + 1 == MAX_ROUNDS)
            for (Py_ssize_t i = 0; i < n; i++) s->ncand[i] = -1;
    }
}

PyDoc_STRVAR(solve_doc,
"solve(cost, u, v, col4row, budget=inf) -> searches, or None\n\n"
"cost: (n, n) float64, C order. v: column potentials to start from (float64, updated in\n"
"place); col4row: a previous assignment, -1 for none (int64, updated in place to the optimal\n"
"assignment); u: filled with the row potentials. Returns how many augmenting-path searches\n"
"ran, or None (u, v, col4row then meaningless) when the searches relaxed more than budget * n^2\n"
"edges: the start was too far from the optimum for the candidate lists to pay.");

static PyObject *solve(PyObject *self, PyObject *args) {
    PyObject *cost_o, *u_o, *v_o, *a_o;
    double budget = INFINITY;
    if (!PyArg_ParseTuple(args, "OOOO|d", &cost_o, &u_o, &v_o, &a_o, &budget)) return NULL;
    Py_buffer vb, ub, ab, cb;
    if (get(v_o, &vb, "v", F64, -1, 1) < 0) return NULL;
    Py_ssize_t n = vb.len / 8;
    if (get(u_o, &ub, "u", F64, n, 1) < 0) { PyBuffer_Release(&vb); return NULL; }
    if (get(a_o, &ab, "col4row", I64, n, 1) < 0) { PyBuffer_Release(&vb); PyBuffer_Release(&ub); return NULL; }
    if (get(cost_o, &cb, "cost", F64, n * n, 0) < 0) {
        PyBuffer_Release(&vb); PyBuffer_Release(&ub); PyBuffer_Release(&ab); return NULL;
    }
    Lap s = {n, (const double *)cb.buf, (double *)ub.buf, (double *)vb.buf, (int64_t *)ab.buf};
    s.work = 0.0;
    s.budget = budget * (double)n * (double)n;
    size_t N = (size_t)(n > 0 ? n : 1);
    s.row4col = malloc(sizeof(int64_t) * N * 6);
    s.cand = malloc(sizeof(int64_t) * N * CAP);
    s.ncand = malloc(sizeof(int32_t) * N);
    s.shortest = malloc(sizeof(double) * N);
    s.scanned = calloc(N, 1);
    s.hcap = 4 * (Py_ssize_t)N;
    s.hkey = malloc(sizeof(double) * (size_t)s.hcap);
    s.hcol = malloc(sizeof(int64_t) * (size_t)s.hcap);
    Py_ssize_t result = -1;
    if (s.row4col && s.cand && s.ncand && s.shortest && s.scanned && s.hkey && s.hcol) {
        s.path = s.row4col + N;
        s.touched = s.row4col + 2 * N;
        s.srows = s.row4col + 3 * N;
        s.scols = s.row4col + 4 * N;
        int64_t *free_rows = s.row4col + 5 * N;
        for (Py_ssize_t j = 0; j < n; j++) { s.shortest[j] = INFINITY; s.path[j] = -1; }
        Py_BEGIN_ALLOW_THREADS
        result = run(&s, free_rows);
        Py_END_ALLOW_THREADS
    }
    free(s.row4col); free(s.cand); free(s.ncand); free(s.shortest); free(s.scanned); free(s.hkey); free(s.hcol);
    PyBuffer_Release(&vb); PyBuffer_Release(&ub); PyBuffer_Release(&ab); PyBuffer_Release(&cb);
    if (result == -1) return PyErr_NoMemory();
    if (result == -4) Py_RETURN_NONE;
    if (result == -3) {
        PyErr_SetString(PyExc_RuntimeError, "_lap.solve: the optimality check kept failing");
        return NULL;
    }
    if (result == -2) {
        PyErr_SetString(PyExc_ValueError, "_lap.solve: cost must be finite");
        return NULL;
    }
    return PyLong_FromSsize_t(result);
}

static PyMethodDef methods[] = {
    {"solve", solve, METH_VARARGS, solve_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lap", "Warm-started exact linear assignment (see _lap.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__lap(void) { return PyModule_Create(&module); }
