/* Square linear assignment problems solved exactly, from a start: the two solvers of the
 * conditional-gradient GW solver's later steps (_gw_cg.py), whose costs move little from one
 * step to the next.
 *
 * solve: shortest augmenting paths from given column potentials and a given assignment.
 * The previous step's column potentials v nearly price the new optimum, so under them the
 * new optimum lies almost wholly among each row's few cheapest columns. Each row gets a
 * candidate list (its K cheapest columns under v, and its previous column); the problem
 * restricted to those edges is solved by shortest augmenting paths (Dijkstra on reduced
 * costs with a heap, the primal-dual method of Jonker & Volgenant and Crouse), so a search
 * costs K per row it visits instead of n. Then every one of the n^2 reduced costs is
 * checked: a row with a column cheaper than its assignment by more than rounding (TOL of the
 * largest cost) gets those columns added and is searched again. When no row has one, the
 * potentials are feasible for the whole problem and tight on the assignment, which is then
 * optimal (LP duality). After MAX_ROUNDS checks every row searches all n columns, which is
 * the plain dense method.
 *
 * simplex: the primal network simplex from a given basis (a spanning tree), for the steps
 * whose start is too far off for solve's lists (most rows change column; near-tied costs
 * make shortest paths long). Rows are nodes 0..n-1 (supply 1), columns n..2n-1 (demand 1),
 * arcs row -> column with cost c[i, j]. The basis is kept across steps: the previous step's
 * optimal tree is feasible for the new costs (flows depend only on the supplies), so the
 * simplex starts there, recomputes the potentials, and pivots. Without one, a tree is built
 * around the start assignment (Prim-like: each pair attaches by its row to the tree column
 * that makes the row's potential smallest). Entering arcs by block search over the n^2 arcs
 * (blocks of sqrt(n^2), as LEMON's default rule, which POT runs); the leaving arc by
 * Cunningham's rule (the last blocking arc of the cycle from its apex), so the tree stays
 * strongly feasible and degenerate pivots cannot cycle. Optimal when no arc's reduced cost
 * is below -TOL of the largest cost, checked once more on potentials recomputed from the
 * tree, so rounding drift over many pivots cannot pass for optimality.
 *
 * The start only changes the speed, never the answer.
 */
#include "_buffers.h"  /* first: it includes Python.h */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define K 8           /* candidate columns per row at the start */
#define CAP 64        /* a row whose list would outgrow this searches all columns */
#define TOL 1e-14     /* a violation smaller than this share of the largest |cost| is rounding */
#define MAX_ROUNDS 8  /* checks before every row goes dense */

/* The first x in [j, end) with c[x] - v[x] < lim, or end: the scan every pricing and check
 * loop of both solvers spends its time in, most entries failing the test. On x86-64 with
 * AVX2 (checked at run time) four entries a compare; the same subtractions and comparisons
 * either way, so the answer is the same bit for bit. */
static Py_ssize_t below_plain(const double *c, const double *v, Py_ssize_t j, Py_ssize_t end, double lim) {
    while (j < end && !(c[j] - v[j] < lim)) j++;
    return j;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
__attribute__((target("avx2"))) static Py_ssize_t below_avx2(const double *c, const double *v, Py_ssize_t j,
                                                             Py_ssize_t end, double lim) {
    __m256d l = _mm256_set1_pd(lim);
    for (; j + 4 <= end; j += 4) {
        __m256d d = _mm256_sub_pd(_mm256_loadu_pd(c + j), _mm256_loadu_pd(v + j));
        int mask = _mm256_movemask_pd(_mm256_cmp_pd(d, l, _CMP_LT_OQ));
        if (mask) return j + __builtin_ctz((unsigned)mask);
    }
    return below_plain(c, v, j, end, lim);
}
static Py_ssize_t (*below)(const double *, const double *, Py_ssize_t, Py_ssize_t, double) = below_plain;
static int pick_below(int simd) {
    __builtin_cpu_init();
    below = simd && __builtin_cpu_supports("avx2") ? below_avx2 : below_plain;
    return below != below_plain;
}
#else
static Py_ssize_t (*below)(const double *, const double *, Py_ssize_t, Py_ssize_t, double) = below_plain;
static int pick_below(int simd) { (void)simd; return 0; }
#endif

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
            if (m == k && (j = below(ci, s->v, j, n, best[k - 1])) == n) break;
            double red = ci[j] - s->v[j];
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
            if ((j = below(ci, s->v, j, n, bar)) == n) break;
            double red = ci[j] - s->v[j];
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
    if (get(v_o, &vb, "_lap.solve", "v", F64, -1, 1) < 0) return NULL;
    Py_ssize_t n = vb.len / 8;
    if (get(u_o, &ub, "_lap.solve", "u", F64, n, 1) < 0) { PyBuffer_Release(&vb); return NULL; }
    if (get(a_o, &ab, "_lap.solve", "col4row", I64, n, 1) < 0) { PyBuffer_Release(&vb); PyBuffer_Release(&ub); return NULL; }
    if (get(cost_o, &cb, "_lap.solve", "cost", F64, n * n, 0) < 0) {
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

/* ---- simplex: the primal network simplex from a kept basis ---- */

typedef struct {
    Py_ssize_t n;        /* rows 0..n-1, columns n..2n-1 */
    const double *c;
    double *pot;         /* 2n: a row's potential u_i, then a column's v_j; c[i, j] - u_i - v_j = 0 on the tree */
    int64_t *parent, *flow;  /* 2n: the tree (-1 at the root), the flow (0 or 1) on a node's arc to its parent */
    int64_t *child, *next, *prev, *depth, *stack, *path;
} Tree;

static inline double arc_cost(const Tree *t, int64_t a, int64_t b) {  /* the arc between nodes a and b */
    return a < t->n ? t->c[a * t->n + (b - t->n)] : t->c[b * t->n + (a - t->n)];
}

static inline void detach(Tree *t, int64_t v) {
    int64_t p = t->prev[v], x = t->next[v];
    if (p >= 0) t->next[p] = x; else t->child[t->parent[v]] = x;
    if (x >= 0) t->prev[x] = p;
}

static inline void attach(Tree *t, int64_t v, int64_t p) {
    int64_t f = t->child[p];
    t->next[v] = f;
    t->prev[v] = -1;
    if (f >= 0) t->prev[f] = v;
    t->child[p] = v;
    t->parent[v] = p;
}

/* A strongly feasible tree around the assignment col4row: the root is row 0's column; each
 * further pair attaches by its row, through a zero-flow arc pointing to the root, to the tree
 * column that gives the row the smallest potential (the row with the smallest such potential
 * first), and its column hangs below its row on the flow-1 arc. key/at: n scratch each. */
static void build_tree(Tree *t, const int64_t *col4row, double *key, int64_t *at) {
    Py_ssize_t n = t->n;
    for (Py_ssize_t v = 0; v < 2 * n; v++) { t->child[v] = -1; t->parent[v] = -1; }
    int64_t root = n + col4row[0];
    t->pot[root] = 0.0;
    t->flow[root] = 0;
    t->depth[root] = 0;
    for (Py_ssize_t r = 0; r < n; r++) { key[r] = t->c[r * n + col4row[0]]; at[r] = root; }
    for (Py_ssize_t k = 0, r = 0; k < n; k++) {
        if (k) {
            r = -1;
            for (Py_ssize_t x = 0; x < n; x++) if (at[x] >= 0 && (r < 0 || key[x] < key[r])) r = x;
        }
        int64_t up = at[r], col = n + col4row[r];
        at[r] = -1;
        if (col != up) {
            attach(t, r, up); t->flow[r] = 0;
            t->pot[r] = key[r];
            t->depth[r] = t->depth[up] + 1;
            attach(t, col, r); t->flow[col] = 1;
            t->pot[col] = t->c[r * n + col4row[r]] - t->pot[r];
            t->depth[col] = t->depth[r] + 1;
        } else {  /* row 0 under the root column */
            attach(t, r, col); t->flow[r] = 1;
            t->pot[r] = key[r];
            t->depth[r] = 1;
        }
        double pc = t->pot[col];
        const double *cc = t->c + col4row[r];
        for (Py_ssize_t x = 0; x < n; x++)
            if (at[x] >= 0 && cc[x * n] - pc < key[x]) { key[x] = cc[x * n] - pc; at[x] = col; }
    }
}

/* Child lists, depths and potentials from the parent array (a preorder walk from the root);
 * returns the largest change of a potential, or -1 when the parents are not one tree. */
static double load_tree(Tree *t, int have_lists) {
    Py_ssize_t n = t->n, sp = 0, seen = 0;
    int64_t root = -1;
    if (!have_lists) {
        for (Py_ssize_t v = 0; v < 2 * n; v++) t->child[v] = -1;
        for (Py_ssize_t v = 0; v < 2 * n; v++) {
            int64_t p = t->parent[v];
            if (p < 0) { if (root >= 0) return -1; root = v; }
            else attach(t, v, p);
        }
    } else {
        for (Py_ssize_t v = 0; v < 2 * n && root < 0; v++) if (t->parent[v] < 0) root = v;
    }
    if (root < 0) return -1;
    double drift = 0.0;
    t->stack[sp++] = root;
    while (sp) {
        int64_t v = t->stack[--sp], p = t->parent[v];
        seen++;
        double was = t->pot[v];
        if (p < 0) { t->pot[v] = 0.0; t->depth[v] = 0; }
        else { t->pot[v] = arc_cost(t, v, p) - t->pot[p]; t->depth[v] = t->depth[p] + 1; }
        if (have_lists && fabs(t->pot[v] - was) > drift) drift = fabs(t->pot[v] - was);
        for (int64_t ch = t->child[v]; ch >= 0; ch = t->next[ch]) {
            if (sp == 2 * n) return -1;
            t->stack[sp++] = ch;
        }
    }
    return seen == 2 * n ? drift : -1;
}

/* Whether parent/flow is a basis of this problem: one tree over the 2n nodes whose arcs join
 * a row and a column, with 0/1 flows that meet every supply. */
static int valid_tree(const Tree *t) {
    Py_ssize_t n = t->n;
    int64_t *sum = t->path;  /* scratch */
    for (Py_ssize_t v = 0; v < 2 * n; v++) sum[v] = 0;
    for (Py_ssize_t v = 0; v < 2 * n; v++) {
        int64_t p = t->parent[v], f = t->flow[v];
        if (p < -1 || p >= 2 * n || (p >= 0 && (p < n) == (v < n)) || f < 0 || f > 1) return 0;
        if (p >= 0) { sum[v] += f; sum[p] += f; }
    }
    for (Py_ssize_t v = 0; v < 2 * n; v++) if (sum[v] != 1) return 0;
    return 1;
}

/* Enter arc (i -> J) of reduced cost d < 0: push flow round the cycle, drop its last blocking
 * arc from the apex (Cunningham), hang the cut-off subtree from the entering arc. */
static void pivot(Tree *t, int64_t i, int64_t J, double d) {
    Py_ssize_t n = t->n;
    int64_t a = i, b = J;
    while (t->depth[a] > t->depth[b]) a = t->parent[a];
    while (t->depth[b] > t->depth[a]) b = t->parent[b];
    while (a != b) { a = t->parent[a]; b = t->parent[b]; }
    int64_t apex = a, out = -1, delta = 2;
    int side = 0;
    /* flow runs apex -> i -> J -> apex: on i's side a row's arc (pointing up) runs against it,
     * on J's side a column's arc (pointing down) does; ties go to the later arc */
    for (int64_t x = i; x != apex; x = t->parent[x])
        if (x < n && t->flow[x] < delta) { delta = t->flow[x]; out = x; side = 0; }
    for (int64_t x = J; x != apex; x = t->parent[x])
        if (x >= n && t->flow[x] <= delta) { delta = t->flow[x]; out = x; side = 1; }
    if (delta) {
        for (int64_t x = i; x != apex; x = t->parent[x]) t->flow[x] += x < n ? -1 : 1;
        for (int64_t x = J; x != apex; x = t->parent[x]) t->flow[x] += x >= n ? -1 : 1;
    }
    int64_t q = side ? J : i, other = side ? i : J;
    Py_ssize_t k = 0;
    for (int64_t x = q;; x = t->parent[x]) { t->path[k++] = x; if (x == out) break; }
    for (Py_ssize_t s = 0; s < k; s++) detach(t, t->path[s]);
    int64_t carry = delta;
    for (Py_ssize_t s = 0; s < k; s++) {  /* reverse the path q .. out: each arc's flow moves one node up */
        int64_t v = t->path[s], f = t->flow[v];
        attach(t, v, s ? t->path[s - 1] : other);
        t->flow[v] = carry;
        carry = f;
    }
    double shift = side ? -d : d;  /* rows of the moved subtree by shift, its columns by -shift */
    Py_ssize_t sp = 0;
    t->stack[sp++] = q;
    while (sp) {
        int64_t v = t->stack[--sp];
        t->depth[v] = t->depth[t->parent[v]] + 1;
        t->pot[v] += v < n ? shift : -shift;
        for (int64_t ch = t->child[v]; ch >= 0; ch = t->next[ch]) t->stack[sp++] = ch;
    }
}

/* Pivot until no arc prices below -tol; returns the pivots, or -1 past max_pivots. */
static int64_t pivots_to_optimum(Tree *t, double tol, int64_t max_pivots, int64_t done) {
    Py_ssize_t n = t->n, m = n * n;
    Py_ssize_t B = (Py_ssize_t)sqrt((double)m);
    if (B < 10) B = 10;
    const double *u = t->pot, *v = t->pot + n;
    Py_ssize_t e = 0;
    for (int64_t pivots = done;; pivots++) {
        double best = -tol;
        Py_ssize_t be = -1, scanned = 0;
        while (be < 0 && scanned < m) {  /* blocks of B arcs, row by row, until one prices negative */
            Py_ssize_t stop = e + B < m ? e + B : m;
            scanned += stop - e;
            while (e < stop) {
                Py_ssize_t r = e / n, j = e - r * n, end = j + (stop - e) < n ? j + (stop - e) : n;
                const double *cr = t->c + r * n;
                double lim = best + u[r];
                Py_ssize_t bj = -1;
                for (Py_ssize_t x = below(cr, v, j, end, lim); x < end; x = below(cr, v, x + 1, end, lim)) {
                    lim = cr[x] - v[x];
                    bj = x;
                }
                if (bj >= 0 && (t->parent[r] == n + bj || t->parent[n + bj] == r)) {  /* a tree arc, by rounding */
                    lim = best + u[r];
                    Py_ssize_t bk = -1;
                    for (Py_ssize_t x = j; x < end; x++)
                        if (x != bj && cr[x] - v[x] < lim) { lim = cr[x] - v[x]; bk = x; }
                    bj = bk;
                }
                if (bj >= 0) { best = lim - u[r]; be = r * n + bj; }
                e = r * n + end;
            }
            if (e == m) e = 0;
        }
        if (be < 0) return pivots;
        if (pivots >= max_pivots) return -1;
        Py_ssize_t r = be / n;
        pivot(t, r, n + (be - r * n), t->c[be] - u[r] - v[be - r * n]);
    }
}

PyDoc_STRVAR(simplex_doc,
"simplex(cost, u, v, col4row, parent, flow, warm, max_pivots) -> pivots, or None\n\n"
"cost: (n, n) float64, C order. parent, flow: int64 (2n): the basis tree (rows are nodes 0..n-1,\n"
"columns n..2n-1; parent -1 at the root; flow 0 or 1 on a node's arc to its parent). warm: start\n"
"from that tree (one this function returned, for any costs of the same n); otherwise from a tree\n"
"built around col4row (a permutation). On return col4row holds the optimal assignment, u and v\n"
"the row and column potentials (c - u - v >= 0, 0 on the assignment) and parent/flow the optimal\n"
"tree, to warm-start the next problem. Returns the pivots made, or None (outputs meaningless)\n"
"past max_pivots.");

static PyObject *simplex(PyObject *self, PyObject *args) {
    PyObject *cost_o, *u_o, *v_o, *a_o, *p_o, *f_o;
    int warm;
    long long max_pivots;
    if (!PyArg_ParseTuple(args, "OOOOOOpL", &cost_o, &u_o, &v_o, &a_o, &p_o, &f_o, &warm, &max_pivots)) return NULL;
    Py_buffer bufs[6];
    PyObject *objs[6] = {u_o, v_o, a_o, p_o, f_o, cost_o};
    const char *names[6] = {"u", "v", "col4row", "parent", "flow", "cost"};
    const char **fmts[6] = {F64, F64, I64, I64, I64, F64};
    Py_ssize_t n = -1, got = 0;
    for (; got < 6; got++) {
        Py_ssize_t len = got == 0 ? -1 : got == 5 ? n * n : got >= 3 ? 2 * n : n;
        if (get(objs[got], &bufs[got], "_lap.simplex", names[got], fmts[got], len, got < 5) < 0) break;
        if (got == 0) n = bufs[0].len / 8;
    }
    if (got < 6) {
        for (Py_ssize_t k = 0; k < got; k++) PyBuffer_Release(&bufs[k]);
        return NULL;
    }
    Tree t = {n, (const double *)bufs[5].buf, NULL, (int64_t *)bufs[3].buf, (int64_t *)bufs[4].buf};
    int64_t *col4row = (int64_t *)bufs[2].buf;
    size_t N = (size_t)(n > 0 ? 2 * n : 1);
    t.pot = malloc(sizeof(double) * N);
    int64_t *work = malloc(sizeof(int64_t) * N * 7);
    double *key = malloc(sizeof(double) * N);
    const char *error = NULL;
    int64_t result = -2;
    if (!t.pot || !work || !key) error = "memory";
    else if (n > 0) {
        t.child = work; t.next = work + N; t.prev = work + 2 * N; t.depth = work + 3 * N;
        t.stack = work + 4 * N; t.path = work + 5 * N;
        int64_t *at = work + 6 * N;
        double scale = 0.0;
        for (Py_ssize_t x = 0; x < n * n; x++) {
            double a = fabs(t.c[x]);
            if (!(a < INFINITY)) { error = "finite"; break; }
            if (a > scale) scale = a;
        }
        if (!error && warm && !valid_tree(&t)) error = "tree";
        if (!error && !warm) {
            char *used = (char *)key;  /* a permutation check, in scratch */
            memset(used, 0, (size_t)n);
            for (Py_ssize_t r = 0; r < n && !error; r++) {
                if (col4row[r] < 0 || col4row[r] >= n || used[col4row[r]]) error = "permutation";
                else used[col4row[r]] = 1;
            }
        }
        if (!error) {
            Py_BEGIN_ALLOW_THREADS
            double tol = TOL * scale;
            result = 0;
            if (!warm) build_tree(&t, col4row, key, at);
            else if (load_tree(&t, 0) < 0) result = -3;  /* parents with a cycle or two roots */
            for (int round = 0; round < 4 && result >= 0; round++) {  /* rounding drift: at most 4 rechecks */
                result = pivots_to_optimum(&t, tol, max_pivots, result);
                if (result < 0 || !(load_tree(&t, 1) > 0.25 * tol)) break;  /* potentials afresh from the tree */
            }
            if (result >= 0) {
                for (Py_ssize_t v = 0; v < 2 * n; v++) {  /* the flow-1 arcs are the assignment */
                    int64_t p = t.parent[v];
                    if (p >= 0 && t.flow[v]) { if (v < n) col4row[v] = p - n; else col4row[p] = v - n; }
                }
                memcpy(bufs[0].buf, t.pot, sizeof(double) * (size_t)n);
                memcpy(bufs[1].buf, t.pot + n, sizeof(double) * (size_t)n);
            }
            Py_END_ALLOW_THREADS
        }
    } else result = 0;
    free(t.pot); free(work); free(key);
    for (int k = 0; k < 6; k++) PyBuffer_Release(&bufs[k]);
    if (error) {
        if (!strcmp(error, "memory")) return PyErr_NoMemory();
        if (!strcmp(error, "finite")) PyErr_SetString(PyExc_ValueError, "_lap.simplex: cost must be finite");
        else if (!strcmp(error, "tree"))
            PyErr_SetString(PyExc_ValueError, "_lap.simplex: with warm=True, parent and flow must be a basis tree "
                            "returned by simplex for the same n; got arrays that are not one");
        else PyErr_SetString(PyExc_ValueError, "_lap.simplex: with warm=False, col4row must be a permutation of 0..n-1");
        return NULL;
    }
    if (result == -3) {
        PyErr_SetString(PyExc_ValueError, "_lap.simplex: with warm=True, parent and flow must be a basis tree "
                        "returned by simplex for the same n; got parents that do not form one tree");
        return NULL;
    }
    if (result < 0) Py_RETURN_NONE;
    return PyLong_FromLongLong(result);
}

PyDoc_STRVAR(simd_doc,
"simd(on) -> bool\n\n"
"Use the AVX2 scan where the CPU has it (on=True, the default at import) or the plain loop;\n"
"returns whether the AVX2 scan is now in use. For tests: the answers are the same either way.");

static PyObject *simd(PyObject *self, PyObject *args) {
    int on;
    if (!PyArg_ParseTuple(args, "p", &on)) return NULL;
    return PyBool_FromLong(pick_below(on));
}

static PyMethodDef methods[] = {
    {"solve", solve, METH_VARARGS, solve_doc},
    {"simplex", simplex, METH_VARARGS, simplex_doc},
    {"simd", simd, METH_VARARGS, simd_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lap", "Exact linear assignment from a start: augmenting paths and a warm network simplex (see _lap.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__lap(void) {
    pick_below(1);
    return PyModule_Create(&module);
}
