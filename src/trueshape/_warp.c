/*
 * trueshape._warp: the pull-back loop of a gradient-nonlinearity correction, in one pass per voxel.
 *
 * Why this is hand-written: every correction samples each output voxel once through a smooth field. With
 * numpy and scipy that is five passes over memory (upsample the field, add the base grid, sample with
 * scipy.ndimage.map_coordinates at ~80 ns per voxel per core, multiply by the Jacobian, reduce statistics);
 * ITK's WarpImageFilter needs a full-resolution float64 field (24 bytes per voxel) and takes ~50 ns per
 * voxel per core. Fusing the four-term spline upsampling, the trilinear sample, the intensity factor and the
 * statistics into one loop needs no intermediate arrays and no library does it. The Python fallback in
 * trueshape.correction computes the same values (tests/correction/test_kernel.py compares both paths).
 *
 * Conventions (see trueshape.correction._kernel.pull_back):
 *   - source: float32, C-contiguous, shape (SI, SJ, SK).
 *   - node_values, node_moments: float32, shape (N, C, OJ * OK): the field upsampled along j and k at the
 *     coarse nodes along i, with its second derivatives along i (a natural cubic spline per voxel column).
 *     Components 0 .. D-1 are the displacement in input index units (D = 3 when `axis` is -1, else D = 1
 *     along input axis `axis`); when `has_det` is set, component D is det(I + grad d).
 *   - row_interval: int64 (OI,), the coarse interval a holding each output row; row_weights: float32 (OI, 4),
 *     the weights of value a, value a+1, moment a and moment a+1.
 *   - affine: 12 doubles, row-major 3x4: input index of output voxel (i, j, k) without displacement.
 *   - out: float32, C-contiguous, shape (OI, OJ, OK); rows start..stop-1 are written.
 * As ITK resamples: a sample within half a voxel of the grid ([-0.5, size - 0.5) on every axis) takes the
 * nearest edge value where it lies beyond the outer voxel centres; farther out it is 0.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <math.h>
#include <stdint.h>

typedef struct {
    double max_norm_sq;
    double sum_norm;
    double det_min;
    double det_max;
    long long folded;
} Stats;

/* Take a C-contiguous buffer of `ndim` axes whose items are `kind` ('f': float32, 'q': int64): shapes and
   types come from the buffer itself, so no size the caller states can disagree with the memory. */
static int get_array(PyObject *object, Py_buffer *view, int ndim, char kind, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous%s array", name, writable ? ", writable" : "");
        return 0;
    }
    const char *format = view->format ? view->format : "B";
    if (*format == '<' || *format == '=' || *format == '@') ++format;  /* native little-endian is what we use */
    const int itemsize_ok = kind == 'f' ? view->itemsize == 4 : view->itemsize == 8;
    const int format_ok = kind == 'f' ? (format[0] == 'f' && format[1] == '\0')
                                      : ((format[0] == 'q' || format[0] == 'l') && format[1] == '\0');
    if (view->ndim != ndim || !itemsize_ok || !format_ok) {
        PyErr_Format(PyExc_ValueError, "%s must be a %d-D %s array", name, ndim, kind == 'f' ? "float32" : "int64");
        PyBuffer_Release(view);
        view->obj = NULL;
        return 0;
    }
    return 1;
}

/* (1 - t) a + t b, as a weighted sum (an inf neighbour gives inf, as in scipy, not inf - inf = NaN), and a
   tap of weight 0 is not read: a NaN or inf neighbour of a sample taken at a whole index (every untouched
   axis of the through-plane path) must not reach it. */
static inline float lerp(float a, float b, float t) {
    return t == 0.0f ? a : (t == 1.0f ? b : (1.0f - t) * a + t * b);
}

static inline float clamp_index(float x, Py_ssize_t size) {
    return x < 0.0f ? 0.0f : (x > (float)(size - 1) ? (float)(size - 1) : x);
}

/* Trilinear sample at continuous index (x0, x1, x2): 0 outside [-0.5, size - 0.5), the edge value between
   there and the outer voxel centres (ITK's rule, so a single slice is sampled and its edges are kept). */
static inline float sample(const float *source, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2, float x0, float x1,
                           float x2) {
    /* Most samples lie between the outer voxel centres; only the rest pay for the border rule. */
    if (!(x0 >= 0.0f && x0 <= (float)(s0 - 1) && x1 >= 0.0f && x1 <= (float)(s1 - 1) && x2 >= 0.0f &&
          x2 <= (float)(s2 - 1))) {
        if (!(x0 >= -0.5f && x0 < (float)s0 - 0.5f && x1 >= -0.5f && x1 < (float)s1 - 0.5f && x2 >= -0.5f &&
              x2 < (float)s2 - 0.5f)) {
            return 0.0f;
        }
        x0 = clamp_index(x0, s0);
        x1 = clamp_index(x1, s1);
        x2 = clamp_index(x2, s2);
    }
    /* The lower corner stays one below the last index, so x == size - 1 takes weight 1 on the last sample;
       an axis of size 1 has no upper neighbour (its step is 0). */
    Py_ssize_t i0 = (Py_ssize_t)x0, i1 = (Py_ssize_t)x1, i2 = (Py_ssize_t)x2;
    if (i0 > s0 - 2) i0 = s0 > 1 ? s0 - 2 : 0;
    if (i1 > s1 - 2) i1 = s1 > 1 ? s1 - 2 : 0;
    if (i2 > s2 - 2) i2 = s2 > 1 ? s2 - 2 : 0;
    const float t0 = x0 - (float)i0, t1 = x1 - (float)i1, t2 = x2 - (float)i2;
    const Py_ssize_t step2 = s2 > 1 ? 1 : 0;
    const Py_ssize_t step1 = s1 > 1 ? s2 : 0;
    const Py_ssize_t step0 = s0 > 1 ? s1 * s2 : 0;
    const float *p = source + (i0 * s1 + i1) * s2 + i2;
    /* The plain blend first (exact on constant regions, no branches); only a non-finite result, rare, pays
       for the careful one, which does not read taps of weight 0. */
    const float f00 = p[0] + t2 * (p[step2] - p[0]);
    const float f01 = p[step1] + t2 * (p[step1 + step2] - p[step1]);
    const float f10 = p[step0] + t2 * (p[step0 + step2] - p[step0]);
    const float f11 = p[step0 + step1] + t2 * (p[step0 + step1 + step2] - p[step0 + step1]);
    const float f0 = f00 + t1 * (f01 - f00), f1 = f10 + t1 * (f11 - f10);
    const float fast = f0 + t0 * (f1 - f0);
    if (isfinite(fast)) return fast;
    if (t0 == 0.0f && t1 == 0.0f) return lerp(p[0], p[step2], t2);
    const float c00 = lerp(p[0], p[step2], t2);
    const float c01 = lerp(p[step1], p[step1 + step2], t2);
    const float c10 = lerp(p[step0], p[step0 + step2], t2);
    const float c11 = lerp(p[step0 + step1], p[step0 + step1 + step2], t2);
    return lerp(lerp(c00, c01, t1), lerp(c10, c11, t1), t0);
}

/* One output line (i, j, 0..ok-1) of spline component c: four scaled node lines, vectorisable. */
static inline void upsample_line(float *restrict line, const float *restrict v0, const float *restrict v1,
                                 const float *restrict m0, const float *restrict m1, const float *w, Py_ssize_t ok) {
    const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    for (Py_ssize_t k = 0; k < ok; ++k) {
        line[k] = w0 * v0[k] + w1 * v1[k] + w2 * m0[k] + w3 * m1[k];
    }
}

/* Rows sharing a spline interval are done together, line by line, so the four node lines of each component
   are read from memory once per interval rather than once per row (the loop is bound by memory otherwise). */
static int pull_back_rows(const float *source, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2, const float *values,
                          const float *moments, const int64_t *interval, const float *weights, float *out,
                          Py_ssize_t oj, Py_ssize_t ok, Py_ssize_t start, Py_ssize_t stop, int displacement_components,
                          int axis, int has_det, const double *a, const double *spacing_sq, double max_det,
                          Stats *stats) {
    const Py_ssize_t plane = oj * ok;
    const int components = displacement_components + (has_det ? 1 : 0);
    float *buffer = PyMem_RawMalloc(sizeof(float) * (size_t)ok * 7);
    if (buffer == NULL) return 0;
    /* Per line: three shifts (then sample positions), the determinant, the norm, and two positions along
       undisplaced axes for the one-component path. */
    float *shift[3] = {buffer, buffer + ok, buffer + 2 * ok};
    float *det = buffer + 3 * ok, *norm = buffer + 4 * ok;
    float *spare[2] = {buffer + 5 * ok, buffer + 6 * ok};
    const float *coordinate[3];
    const float scale[3] = {(float)spacing_sq[0], (float)spacing_sq[1], (float)spacing_sq[2]};
    for (Py_ssize_t first = start; first < stop;) {
        const int64_t node = interval[first];
        Py_ssize_t last = first;
        while (last < stop && interval[last] == node) ++last;
        const float *v0 = values + node * components * plane, *v1 = v0 + components * plane;
        const float *m0 = moments + node * components * plane, *m1 = m0 + components * plane;
        for (Py_ssize_t j = 0; j < oj; ++j) {
            for (Py_ssize_t i = first; i < last; ++i) {
                const float *w = weights + 4 * i;
                const Py_ssize_t line = j * ok;
                for (int c = 0; c < components; ++c) {
                    float *target = c < displacement_components ? shift[c] : det;
                    const Py_ssize_t at = c * plane + line;
                    upsample_line(target, v0 + at, v1 + at, m0 + at, m1 + at, w, ok);
                }
                if (displacement_components == 3) {
                    for (Py_ssize_t k = 0; k < ok; ++k) {
                        norm[k] = sqrtf(scale[0] * shift[0][k] * shift[0][k] + scale[1] * shift[1][k] * shift[1][k] +
                                        scale[2] * shift[2][k] * shift[2][k]);
                    }
                } else {
                    const float root = sqrtf(scale[axis]);
                    for (Py_ssize_t k = 0; k < ok; ++k) norm[k] = root * fabsf(shift[0][k]);
                }
                float largest = 0.0f;
                double sum = 0.0;
                for (Py_ssize_t k = 0; k < ok; ++k) {
                    largest = norm[k] > largest ? norm[k] : largest;
                    sum += (double)norm[k];
                }
                if ((double)largest * (double)largest > stats->max_norm_sq) {
                    stats->max_norm_sq = (double)largest * (double)largest;
                }
                stats->sum_norm += sum;
                /* The sample positions, in place of the shifts: base map plus displacement. */
                int spares_used = 0;
                for (int c = 0; c < 3; ++c) {
                    const double base = a[4 * c] * (double)i + a[4 * c + 1] * (double)j + a[4 * c + 3];
                    const double step = a[4 * c + 2];
                    float *position = displacement_components == 3 ? shift[c] : (c == axis ? shift[0] : spare[spares_used++]);
                    /* Single precision, as scipy's float32 coordinates: 6e-5 voxel at index 1000. */
                    const float first_position = (float)base, stride = (float)step;
                    const int count = (int)ok;
                    if (displacement_components == 3 || c == axis) {
                        for (int k = 0; k < count; ++k) position[k] += first_position + stride * (float)k;
                    } else {
                        for (int k = 0; k < count; ++k) position[k] = first_position + stride * (float)k;
                    }
                    coordinate[c] = position;
                }
                float *row_out = out + i * plane + line;
                for (Py_ssize_t k = 0; k < ok; ++k) {
                    row_out[k] = sample(source, s0, s1, s2, coordinate[0][k], coordinate[1][k], coordinate[2][k]);
                }
                if (has_det) {
                    float low = det[0], high = det[0];
                    long long folded = 0;
                    const float cap = (float)max_det;
                    for (Py_ssize_t k = 0; k < ok; ++k) {
                        const float d = det[k];
                        low = d < low ? d : low;
                        high = d > high ? d : high;
                        folded += d <= 0.0f;
                        row_out[k] *= d < 0.0f ? 0.0f : (d > cap ? cap : d);
                    }
                    if (low < stats->det_min) stats->det_min = low;
                    if (high > stats->det_max) stats->det_max = high;
                    stats->folded += folded;
                }
            }
        }
        first = last;
    }
    PyMem_RawFree(buffer);
    return 1;
}

static PyObject *pull_back(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *objects[6];
    Py_buffer source = {0}, values = {0}, moments = {0}, interval = {0}, weights = {0}, out = {0};
    Py_ssize_t start, stop;
    int axis, has_det;
    double a[12], spacing_sq[3], max_det;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOOOOnni(dddddddddddd)(ddd)pd:pull_back", &objects[0], &objects[1], &objects[2],
                          &objects[3], &objects[4], &objects[5], &start, &stop, &axis, &a[0], &a[1], &a[2], &a[3],
                          &a[4], &a[5], &a[6], &a[7], &a[8], &a[9], &a[10], &a[11], &spacing_sq[0], &spacing_sq[1],
                          &spacing_sq[2], &has_det, &max_det)) {
        return NULL;
    }
    if (!get_array(objects[0], &source, 3, 'f', 0, "source") ||
        !get_array(objects[1], &values, 3, 'f', 0, "node_values") ||
        !get_array(objects[2], &moments, 3, 'f', 0, "node_moments") ||
        !get_array(objects[3], &interval, 1, 'q', 0, "row_interval") ||
        !get_array(objects[4], &weights, 2, 'f', 0, "row_weights") || !get_array(objects[5], &out, 3, 'f', 1, "out")) {
        goto done;
    }
    const Py_ssize_t s0 = source.shape[0], s1 = source.shape[1], s2 = source.shape[2];
    const Py_ssize_t o0 = out.shape[0], o1 = out.shape[1], o2 = out.shape[2];
    const Py_ssize_t nodes = values.shape[0];
    const int displacement_components = axis < 0 ? 3 : 1;
    const Py_ssize_t components = displacement_components + (has_det ? 1 : 0);
    if (s0 < 1 || s1 < 1 || s2 < 1 || o0 < 1 || o1 < 1 || o2 < 1 || nodes < 2 || o2 > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "every axis needs a sample (rows below 2^31) and the spline 2 nodes");
        goto done;
    }
    if (axis > 2) {
        PyErr_SetString(PyExc_ValueError, "axis is -1 (three displacement components) or the one displaced axis");
        goto done;
    }
    if (values.shape[1] != components || values.shape[2] != o1 * o2 || moments.shape[0] != nodes ||
        moments.shape[1] != components || moments.shape[2] != o1 * o2) {
        PyErr_Format(PyExc_ValueError, "node_values and node_moments must be (nodes, %zd, %zd)", components, o1 * o2);
        goto done;
    }
    if (interval.shape[0] != o0 || weights.shape[0] != o0 || weights.shape[1] != 4) {
        PyErr_Format(PyExc_ValueError, "row_interval must be (%zd,) and row_weights (%zd, 4)", o0, o0);
        goto done;
    }
    if (start < 0 || stop > o0 || start > stop) {
        PyErr_SetString(PyExc_ValueError, "rows start:stop must lie inside the output");
        goto done;
    }
    if (!(max_det >= 0.0) || isinf(max_det)) {
        PyErr_SetString(PyExc_ValueError, "max_det must be finite and not negative");
        goto done;
    }
    const int64_t *rows = (const int64_t *)interval.buf;
    for (Py_ssize_t i = start; i < stop; ++i) {
        if (rows[i] < 0 || rows[i] > nodes - 2) {
            PyErr_Format(PyExc_ValueError, "row %zd refers to spline interval %lld of %zd nodes", i,
                         (long long)rows[i], nodes);
            goto done;
        }
    }
    Stats stats = {0.0, 0.0, INFINITY, -INFINITY, 0};
    int finished;
    Py_BEGIN_ALLOW_THREADS
    finished = pull_back_rows((const float *)source.buf, s0, s1, s2, (const float *)values.buf,
                              (const float *)moments.buf, rows, (const float *)weights.buf, (float *)out.buf, o1, o2,
                              start, stop, displacement_components, axis < 0 ? 0 : axis, has_det, a, spacing_sq,
                              max_det, &stats);
    Py_END_ALLOW_THREADS
    if (!finished) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_BuildValue("(ddddL)", stats.max_norm_sq, stats.sum_norm, stats.det_min, stats.det_max, stats.folded);
done:
    if (source.obj) PyBuffer_Release(&source);
    if (values.obj) PyBuffer_Release(&values);
    if (moments.obj) PyBuffer_Release(&moments);
    if (interval.obj) PyBuffer_Release(&interval);
    if (weights.obj) PyBuffer_Release(&weights);
    if (out.obj) PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"pull_back", pull_back, METH_VARARGS,
     "pull_back(source, node_values, node_moments, row_interval, row_weights, out, start, stop, axis, affine,\n"
     "          spacing_sq, has_det, max_det)\n"
     "-> (max_norm_sq, sum_norm, det_min, det_max, folded)\n\n"
     "Pull rows start:stop of out back from source through the upsampled field (see trueshape.correction)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_warp", .m_doc = "Fused pull-back resampling kernel.", .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__warp(void) { return PyModule_Create(&module); }
