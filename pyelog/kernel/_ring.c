// SPDX-License-Identifier: BSD-2-Clause
/*
 * The ring reader's hot path (pyelog/kernel/ring.py), in C:
 *
 * - take() and release(), the reader's two compare-and-swap loops on a
 *   CPU's state word (bpf/eventlog.h). Writers change that word with every
 *   reservation, so a CAS retried from Python (a microsecond per attempt,
 *   through ctypes) loses to them again and again: at 10 M events/s on one
 *   CPU, hundreds of attempts and most of the reader's time. Here an attempt
 *   takes nanoseconds.
 * - merge(), the k-way merge of per-CPU record sequences by timestamp: the
 *   one place where the capture path must look at every record.
 *
 * merge(): one call merges as much as fits into the caller's output buffer
 * and leaves each sequence's start where it stopped, so the caller merges a
 * drain of any size through one buffer of fixed size.
 *
 * The order: by timestamp, ties to the sequence listed first, each
 * sequence's own order kept (a stable sort by (timestamp, sequence)).
 * FreeBSD's eventlog_subscriber_read differs only in ties between CPUs.
 *
 * A tournament ("loser") tree over the sequences picks the next record:
 * after the winner advances, its new key is played once against the loser
 * kept at each node on its path to the root, one compare per level, so a
 * record costs log2(sequences) compares and no branch on data. Consecutive
 * records of one sequence are copied as one run (one memcpy); when the
 * CPUs interleave record by record, the worst case, every run is one
 * record long.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The record header (pyelog/records/format.py EVENT_HEADER): event_length
 * (u16) at 0, timestamp (u64) at 8, 32 bytes in all. */
#define HDR_SIZE 32
/* How far ahead in a sequence to prefetch when it advances: by the time it
 * wins again the others have had their turn, and with 100+ CPUs there are
 * more streams than the hardware prefetcher follows. */
#define PREFETCH_AHEAD 256

/* A sequence's key: its next timestamp above its index, so that one
 * 128-bit compare orders by timestamp and then sequence. An exhausted
 * sequence's key is all ones, above every real one (indices < MAX_SEQS). */
typedef unsigned __int128 merge_key;
#define IDX_BITS 16
#define MAX_SEQS ((1 << IDX_BITS) - 1)
#define DONE (~(merge_key)0)

struct seq {
    const uint8_t *p, *end;     /* next record, end of the sequence */
    unsigned len;               /* length of the record at p (checked whole) */
};

static inline uint16_t rec_len(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline uint64_t rec_ts(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p + 8, sizeof(v));
    return v;
}

/* Length of the whole record at p, or 0 if it is not one. */
static inline unsigned whole(const uint8_t *p, const uint8_t *end)
{
    unsigned len;
    if (end - p < HDR_SIZE)
        return 0;
    len = rec_len(p);
    if (len < HDR_SIZE || (Py_ssize_t)len > end - p)
        return 0;
    return len;
}

/* Copy a run (at least one record, so at least HDR_SIZE bytes): runs of
 * up to two headers' length, what interleaved CPUs make, as two fixed-size
 * moves instead of a call. */
static inline void copy_run(uint8_t *dst, const uint8_t *src, size_t n)
{
    if (n <= 2 * HDR_SIZE) {
        memcpy(dst, src, HDR_SIZE);
        memcpy(dst + n - HDR_SIZE, src + n - HDR_SIZE, HDR_SIZE);
    } else {
        memcpy(dst, src, n);
    }
}

/* The tree: leaves are the sequences 0..size-1 (size a power of two, the
 * ones past k exhausted from the start); node j in 1..size-1 keeps the
 * loser of the match played there, node 0 the overall winner. */
struct tree {
    Py_ssize_t size;
    uint32_t *node;
    merge_key *key;
};

static void build(struct tree *t, uint32_t *won)
{
    Py_ssize_t j;
    for (j = 0; j < t->size; j++)
        won[t->size + j] = j;
    for (j = t->size - 1; j >= 1; j--) {
        uint32_t a = won[2 * j], b = won[2 * j + 1];
        int b_wins = t->key[b] < t->key[a];
        won[j] = b_wins ? b : a;
        t->node[j] = b_wins ? a : b;
    }
    t->node[0] = won[1];
}

/* The winner's key changed: play it up its path, keep the new winner. */
static inline void replay(struct tree *t)
{
    uint32_t cur = t->node[0];
    Py_ssize_t j;
    for (j = (t->size + cur) >> 1; j >= 1; j >>= 1) {
        uint32_t l = t->node[j];
        int l_wins = t->key[l] < t->key[cur];
        t->node[j] = l_wins ? cur : l;
        cur = l_wins ? l : cur;
    }
    t->node[0] = cur;
}

/* The state word's fields (bpf/eventlog.h, top comment). */
#define ST_ACTIVE(w) ((w) & 1)
#define ST_SWAP_OK(w) (((w) >> 1) & 1)
#define ST_POS(w) (((w) >> 2) & 0x3FFFFFFF)

/* The 64-bit word at byte `off` of a writable buffer, or NULL (exception set). */
static uint64_t *state_word(Py_buffer *b, Py_ssize_t off)
{
    if (off < 0 || off > b->len - 8 || (((uintptr_t)b->buf + off) & 7)) {
        PyErr_Format(PyExc_IndexError, "no aligned state word at offset %zd", off);
        return NULL;
    }
    return (uint64_t *)((char *)b->buf + off);
}

PyDoc_STRVAR(take_doc,
"take(state, offset) -> word\n\n"
"If the writers' buffer at this state word holds data and the reader's is\n"
"drained (swap_allowed), swap them: reader_len := commit_pos, commit_pos :=\n"
"0, swap_allowed := 0, active flipped, in one CAS (retried until it wins).\n"
"Returns the state word as it is after (reader_len 0: nothing to read).");

static PyObject *take(PyObject *self, PyObject *args)
{
    Py_buffer b;
    Py_ssize_t off;
    uint64_t *w, old;

    if (!PyArg_ParseTuple(args, "w*n:take", &b, &off))
        return NULL;
    if (!(w = state_word(&b, off))) {
        PyBuffer_Release(&b);
        return NULL;
    }
    old = __atomic_load_n(w, __ATOMIC_SEQ_CST);
    while (ST_SWAP_OK(old) && ST_POS(old)) {
        uint64_t nw = ST_POS(old) << 32 | (ST_ACTIVE(old) ^ 1);
        if (__atomic_compare_exchange_n(w, &old, nw, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            old = nw;
            break;
        }
    }
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(old);
}

PyDoc_STRVAR(release_doc,
"release(state, offset)\n\n"
"The reader's buffer is consumed: reader_len := 0, swap_allowed := 1, in\n"
"one CAS (retried until it wins), leaving what writers reserved alone.");

static PyObject *release(PyObject *self, PyObject *args)
{
    Py_buffer b;
    Py_ssize_t off;
    uint64_t *w, old;

    if (!PyArg_ParseTuple(args, "w*n:release", &b, &off))
        return NULL;
    if (!(w = state_word(&b, off))) {
        PyBuffer_Release(&b);
        return NULL;
    }
    old = __atomic_load_n(w, __ATOMIC_SEQ_CST);
    while (!__atomic_compare_exchange_n(w, &old, (old & 0xFFFFFFFF) | 2, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(merge_doc,
"merge(src, regions, dst) -> (bytes, records)\n\n"
"Merge the record sequences ``regions`` of ``src`` (a list of [start, end]\n"
"lists, byte offsets; each sequence in timestamp order) into ``dst`` by\n"
"timestamp, ties to the earlier region, as many whole records as fit, and\n"
"advance each region's start past what was copied. Returns the bytes and\n"
"records written to ``dst``. Raises ValueError naming the offset in ``src``\n"
"of a record whose length is below the 32-byte header or runs past its\n"
"region's end (what was merged before it is accounted for in the starts).");

static PyObject *merge(PyObject *self, PyObject *args)
{
    PyObject *src_obj, *regions, *dst_obj;
    Py_buffer src, dst;
    Py_ssize_t k, i, copied = 0, records = 0, bad_at = -1;
    unsigned bad_len = 0;
    struct seq *seqs = NULL;
    struct tree t = {1, NULL, NULL};
    uint32_t *won = NULL;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "OO!O:merge", &src_obj, &PyList_Type, &regions, &dst_obj))
        return NULL;
    if (PyObject_GetBuffer(src_obj, &src, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(dst_obj, &dst, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    k = PyList_GET_SIZE(regions);
    if (k > MAX_SEQS) {
        PyErr_Format(PyExc_ValueError, "merge: at most %d sequences", MAX_SEQS);
        goto out;
    }
    while (t.size < k)
        t.size *= 2;
    seqs = PyMem_Calloc(t.size, sizeof(*seqs));
    t.node = PyMem_Calloc(t.size, sizeof(*t.node));
    t.key = PyMem_Calloc(t.size, sizeof(*t.key));
    won = PyMem_Calloc(2 * t.size, sizeof(*won));
    if (!seqs || !t.node || !t.key || !won) {
        PyErr_NoMemory();
        goto out;
    }
    for (i = 0; i < k; i++) {
        PyObject *r = PyList_GET_ITEM(regions, i);
        Py_ssize_t start, end;
        if (!PyList_Check(r) || PyList_GET_SIZE(r) != 2) {
            PyErr_SetString(PyExc_TypeError, "merge: each region is a [start, end] list");
            goto out;
        }
        start = PyLong_AsSsize_t(PyList_GET_ITEM(r, 0));
        end = PyLong_AsSsize_t(PyList_GET_ITEM(r, 1));
        if (PyErr_Occurred())
            goto out;
        if (start < 0 || start > end || end > src.len) {
            PyErr_Format(PyExc_IndexError, "merge: region [%zd, %zd) outside the source", start, end);
            goto out;
        }
        seqs[i].p = (const uint8_t *)src.buf + start;
        seqs[i].end = (const uint8_t *)src.buf + end;
    }

    Py_BEGIN_ALLOW_THREADS
    {
        uint8_t *out = dst.buf;
        Py_ssize_t room = dst.len;
        const uint8_t *bad = NULL, *bad_end = NULL;
        const uint8_t *run = NULL;      /* the run being gathered, not yet copied */
        Py_ssize_t run_len = 0;
        uint32_t run_seq = 0;

        for (i = 0; i < t.size; i++) {
            struct seq *s = &seqs[i];
            t.key[i] = DONE;
            if (i >= k || s->p == s->end)
                continue;
            if (!(s->len = whole(s->p, s->end))) {
                bad = s->p;
                bad_end = s->end;
                break;
            }
            t.key[i] = (merge_key)rec_ts(s->p) << IDX_BITS | i;
        }
        if (!bad)
            build(&t, won);
        while (!bad) {
            uint32_t w = t.node[0];
            struct seq *s = &seqs[w];
            if (t.key[w] == DONE || (Py_ssize_t)s->len > room)
                break;                      /* all merged, or dst full */
            if (w != run_seq || !run) {
                if (run)
                    copy_run(out, run, run_len);
                out += run_len;
                run = s->p;
                run_len = 0;
                run_seq = w;
            }
            run_len += s->len;
            room -= s->len;
            records++;
            s->p += s->len;
            if (s->p == s->end) {
                s->len = 0;
                t.key[w] = DONE;
            } else if (!(s->len = whole(s->p, s->end))) {
                bad = s->p;
                bad_end = s->end;
            } else {
                __builtin_prefetch(s->p + PREFETCH_AHEAD);
                t.key[w] = (merge_key)rec_ts(s->p) << IDX_BITS | w;
            }
            replay(&t);
        }
        if (run)
            copy_run(out, run, run_len);
        out += run_len;
        copied = out - (uint8_t *)dst.buf;
        if (bad) {
            bad_at = bad - (const uint8_t *)src.buf;
            bad_len = bad_end - bad >= 2 ? rec_len(bad) : 0;
        }
    }
    Py_END_ALLOW_THREADS

    /* Hand back where each sequence stopped, also after a bad record, so
     * that what was merged before it is accounted for. */
    for (i = 0; i < k; i++) {
        PyObject *start = PyLong_FromSsize_t(seqs[i].p - (const uint8_t *)src.buf);
        if (!start || PyList_SetItem(PyList_GET_ITEM(regions, i), 0, start) < 0)
            goto out;
    }
    if (bad_at >= 0) {
        PyErr_Format(PyExc_ValueError, "bad record length %u at mapping offset %zd",
                     bad_len, bad_at);
        goto out;
    }
    result = Py_BuildValue("(nn)", copied, records);
out:
    PyMem_Free(won);
    PyMem_Free(t.key);
    PyMem_Free(t.node);
    PyMem_Free(seqs);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    return result;
}

static PyMethodDef methods[] = {
    {"take", take, METH_VARARGS, take_doc},
    {"release", release, METH_VARARGS, release_doc},
    {"merge", merge, METH_VARARGS, merge_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pyelog.kernel._ring",
    "The ring reader's hot path: state-word swaps and the merge (see pyelog/kernel/ring.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__ring(void)
{
    return PyModule_Create(&module);
}
