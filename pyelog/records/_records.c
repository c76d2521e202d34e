// SPDX-License-Identifier: BSD-2-Clause
/*
 * The records layer's hot paths, in C: walking a chunk of a capture for its
 * whole records (pyelog/records/format.py ElogReader.runs) and printing
 * runs of records as elog(1) text lines (pyelog/records/text.py
 * TextPrinter.run_lines), the work of `pyelog -r`.
 *
 * Python decides what every kind of event prints; this file only follows
 * the decision. For each (provider id, event id) the printer hands over
 * the line's fixed parts (" [provider][", "]" or "][NAME]") and, when the
 * schema's format can be rendered here byte for byte as the generated
 * Python formatter renders it, a *plan*: a list of steps (literal text, an
 * integer field through a printf conversion, an enum/flag field through
 * its label dict, an address, a char[N]) compiled once into a capsule.
 * Everything else goes back to Python one record at a time (`slow`): kinds
 * without a plan (varlen arrays, %c, %p, floats, ...), and records whose
 * text would not be plain printable ASCII (Python escapes it), whose time
 * is out of the ordinary range, or whose text comes out empty.
 *
 * So the output is, by construction, the Python printer's; the tests
 * compare both on every event of the shipped schemas with random payloads
 * (tests/test_text_fast.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define HDR_SIZE 32
/* Payload bytes a plan reads at most (struct sizes: the DSL's structs are
 * far smaller); a shorter payload reads its missing tail as zeros. */
#define MAX_STRUCT 4096

/* OP_JSTR: a char[N] inside a JSON string: Python's unless no byte needs escaping. */
enum op_kind { OP_LIT, OP_INT, OP_TABLE, OP_IPV4, OP_IPV6, OP_CSTR, OP_JSTR };

struct op {
    enum op_kind kind;
    uint32_t offset, size;      /* field bytes in the payload */
    int field_signed;           /* read as a signed integer */
    int swap16;                 /* ntohs */
    int mask_bits;              /* 0: none; else keep the low bits ... */
    int to_signed;              /* ... and read them as signed */
    int print_signed;           /* fmt takes long long (else unsigned long long) */
    char fmt[24];               /* printf conversion with ll */
    int plain;                  /* fmt is "%lld", "%llu" or "0x%llx": no snprintf */
    const char *lit;            /* OP_LIT */
    Py_ssize_t lit_len;
    PyObject *dict, *fn;        /* OP_TABLE: {value: text}, value -> text */
};

struct plan {
    Py_ssize_t n;
    uint32_t struct_size;
    PyObject *keep;             /* the op tuple: owns literals, dicts, functions */
    struct op ops[];
};

static void plan_free(PyObject *capsule)
{
    struct plan *p = PyCapsule_GetPointer(capsule, "pyelog.text.plan");
    if (p) {
        Py_XDECREF(p->keep);
        PyMem_Free(p);
    }
}

PyDoc_STRVAR(compile_doc,
"compile(ops, struct_size) -> capsule\n\n"
"A plan from op tuples (pyelog/schema/textplan.py builds them):\n"
"('lit', bytes), ('int', offset, size, field_signed, swap16, mask_bits,\n"
"to_signed, print_signed, fmt), ('table', offset, size, field_signed,\n"
"dict, fn), ('ipv4', offset), ('ipv6', offset), ('cstr', offset, size),\n"
"('jstr', offset, size).");

static PyObject *compile_plan(PyObject *self, PyObject *args)
{
    PyObject *ops;
    unsigned struct_size;
    if (!PyArg_ParseTuple(args, "O!I", &PyTuple_Type, &ops, &struct_size))
        return NULL;
    if (struct_size > MAX_STRUCT) {
        PyErr_SetString(PyExc_ValueError, "struct too large for a plan");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(ops);
    struct plan *p = PyMem_Calloc(1, sizeof(*p) + n * sizeof(struct op));
    if (!p)
        return PyErr_NoMemory();
    p->n = n;
    p->struct_size = struct_size;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyTuple_GET_ITEM(ops, i);
        struct op *o = &p->ops[i];
        const char *name;
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 2
            || !(name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(t, 0))))
            goto bad;
        const char *fmt = NULL;
        Py_ssize_t fmt_len = 0;
        if (!strcmp(name, "lit")) {
            o->kind = OP_LIT;
            if (!PyArg_ParseTuple(t, "sy#", &name, &o->lit, &o->lit_len))
                goto fail;
        } else if (!strcmp(name, "int")) {
            o->kind = OP_INT;
            if (!PyArg_ParseTuple(t, "sIIppippy#", &name, &o->offset, &o->size, &o->field_signed,
                                  &o->swap16, &o->mask_bits, &o->to_signed, &o->print_signed,
                                  &fmt, &fmt_len))
                goto fail;
            if (fmt_len < 4 || fmt_len >= (Py_ssize_t)sizeof(o->fmt) || o->mask_bits < 0
                || o->mask_bits > 64)
                goto bad;
            memcpy(o->fmt, fmt, fmt_len);
            /* One conversion, "%[flags][width][.prec]ll{d,u,o,x,X}", possibly
             * after a literal "0x": nothing else reaches snprintf. */
            const char *pct = strchr(o->fmt, '%');
            if (!pct || (pct != o->fmt && (pct - o->fmt != 2 || strncmp(o->fmt, "0x", 2))))
                goto bad;
            const char *q = pct + 1 + strspn(pct + 1, "-0 +.0123456789");
            if (strncmp(q, "ll", 2) || !q[2] || !strchr("duoxX", q[2]) || q[3])
                goto bad;
            o->plain = !strcmp(o->fmt, "%lld") || !strcmp(o->fmt, "%llu") || !strcmp(o->fmt, "0x%llx");
        } else if (!strcmp(name, "table")) {
            o->kind = OP_TABLE;
            if (!PyArg_ParseTuple(t, "sIIpO!O", &name, &o->offset, &o->size, &o->field_signed,
                                  &PyDict_Type, &o->dict, &o->fn))
                goto fail;
        } else if (!strcmp(name, "ipv4") || !strcmp(name, "ipv6")) {
            o->kind = name[3] == '4' ? OP_IPV4 : OP_IPV6;
            o->size = o->kind == OP_IPV4 ? 4 : 16;
            if (!PyArg_ParseTuple(t, "sI", &name, &o->offset))
                goto fail;
        } else if (!strcmp(name, "cstr") || !strcmp(name, "jstr")) {
            o->kind = name[0] == 'c' ? OP_CSTR : OP_JSTR;
            if (!PyArg_ParseTuple(t, "sII", &name, &o->offset, &o->size))
                goto fail;
        } else {
            goto bad;
        }
        if (o->kind != OP_LIT) {
            if (o->kind == OP_INT || o->kind == OP_TABLE) {
                if (o->size != 1 && o->size != 2 && o->size != 4 && o->size != 8)
                    goto bad;
            }
            if ((uint64_t)o->offset + o->size > struct_size)
                goto bad;
        }
    }
    Py_INCREF(ops);
    p->keep = ops;
    PyObject *cap = PyCapsule_New(p, "pyelog.text.plan", plan_free);
    if (!cap) {
        Py_DECREF(ops);
        PyMem_Free(p);
    }
    return cap;
bad:
    PyErr_SetString(PyExc_ValueError, "malformed plan step");
fail:
    PyMem_Free(p);
    return NULL;
}

/* ---- output buffer ---------------------------------------------------- */

struct out {
    char *buf;
    size_t len, cap;
};

static int out_reserve(struct out *o, size_t more)
{
    if (o->len + more <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 1 << 16;
    while (cap < o->len + more)
        cap *= 2;
    char *b = PyMem_Realloc(o->buf, cap);
    if (!b) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = b;
    o->cap = cap;
    return 0;
}

static inline int out_put(struct out *o, const char *s, size_t n)
{
    if (out_reserve(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return 0;
}

/* Append the UTF-8 of a str (surrogatepass, so any str Python makes
 * round-trips through the final decode). */
static int out_str(struct out *o, PyObject *s)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u)
        return out_put(o, u, n);
    PyErr_Clear();
    PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
    if (!b)
        return -1;
    int r = out_put(o, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
    Py_DECREF(b);
    return r;
}

/* ---- fields ----------------------------------------------------------- */

/* Decimal and hex digits without snprintf (which costs more than the rest
 * of a line's work together): the plain conversions of most fields. */
static inline char *put_dec(char *d, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = '0' + v % 10;
        v /= 10;
    } while (v);
    while (n)
        *d++ = tmp[--n];
    return d;
}

static inline char *put_sdec(char *d, int64_t v)
{
    if (v < 0) {
        *d++ = '-';
        return put_dec(d, -(uint64_t)v);
    }
    return put_dec(d, v);
}

static inline char *put_hex(char *d, uint64_t v)
{
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        *d++ = tmp[--n];
    return d;
}

static inline uint64_t read_u(const uint8_t *p, unsigned size, int is_signed)
{
    switch (size) {
    case 1: return is_signed ? (uint64_t)(int64_t)*(const int8_t *)p : *p;
    case 2: { uint16_t v; memcpy(&v, p, 2); return is_signed ? (uint64_t)(int64_t)(int16_t)v : v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return is_signed ? (uint64_t)(int64_t)(int32_t)v : v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
}

/* Whether o->buf[from:] is printable ASCII: what the text of a label or a
 * char[N] must be for this file to render it (Python escapes the rest).
 * Literals were checked when the plan was made; numbers and addresses are
 * ASCII by construction. */
static inline int printable_since(const struct out *o, size_t from)
{
    for (size_t i = from; i < o->len; i++) {
        unsigned char c = o->buf[i];
        if (c < 0x20 || c > 0x7e)
            return 0;
    }
    return 1;
}

/* Render one plan into o; 1: done, 0: Python must render this record
 * (text not plain ASCII, or empty), -1: error. */
static int render(struct out *o, const struct plan *p, const uint8_t *payload, size_t size)
{
    uint8_t scratch[MAX_STRUCT];
    const uint8_t *s = payload;
    if (size < p->struct_size) {
        memcpy(scratch, payload, size);
        memset(scratch + size, 0, p->struct_size - size);
        s = scratch;
    }
    size_t start = o->len;
    for (Py_ssize_t i = 0; i < p->n; i++) {
        const struct op *op = &p->ops[i];
        const uint8_t *f = s + op->offset;
        switch (op->kind) {
        case OP_LIT:
            if (out_put(o, op->lit, op->lit_len) < 0)
                return -1;
            break;
        case OP_INT: {
            uint64_t v = read_u(f, op->size, op->field_signed);
            if (op->swap16)
                v = ((v & 0xFF) << 8) | ((v >> 8) & 0xFF);
            if (op->mask_bits && op->mask_bits < 64) {
                v &= ((uint64_t)1 << op->mask_bits) - 1;
                if (op->to_signed && (v >> (op->mask_bits - 1)) & 1)
                    v |= ~(((uint64_t)1 << op->mask_bits) - 1);
            }
            if (out_reserve(o, 96) < 0)
                return -1;
            if (op->plain) {
                char *d = o->buf + o->len;
                if (op->fmt[0] == '0') {
                    *d++ = '0';
                    *d++ = 'x';
                    d = put_hex(d, v);
                } else {
                    d = op->print_signed ? put_sdec(d, (int64_t)v) : put_dec(d, v);
                }
                o->len = d - o->buf;
                break;
            }
            int n = op->print_signed ? snprintf(o->buf + o->len, 96, op->fmt, (long long)v)
                                     : snprintf(o->buf + o->len, 96, op->fmt, (unsigned long long)v);
            if (n < 0 || n >= 96)
                return 0;               /* a width beyond the room: Python's */
            o->len += n;
            break;
        }
        case OP_TABLE: {
            uint64_t v = read_u(f, op->size, op->field_signed);
            PyObject *key = op->field_signed ? PyLong_FromLongLong((long long)v)
                                             : PyLong_FromUnsignedLongLong(v);
            if (!key)
                return -1;
            PyObject *text = PyDict_GetItemWithError(op->dict, key);   /* borrowed */
            size_t from = o->len;
            if (text && PyUnicode_Check(text) && PyUnicode_GET_LENGTH(text)) {
                Py_DECREF(key);
                if (out_str(o, text) < 0)
                    return -1;
                if (!printable_since(o, from))
                    return 0;
                break;
            }
            if (PyErr_Occurred()) {
                Py_DECREF(key);
                return -1;
            }
            text = PyObject_CallOneArg(op->fn, key);
            Py_DECREF(key);
            if (!text)
                return -1;
            int r = PyUnicode_Check(text) ? out_str(o, text) : -2;
            Py_DECREF(text);
            if (r == -2)
                return 0;               /* not text: Python's to render */
            if (r < 0)
                return -1;
            if (!printable_since(o, from))
                return 0;
            break;
        }
        case OP_IPV4:
        case OP_IPV6: {
            char a[INET6_ADDRSTRLEN];
            if (!inet_ntop(op->kind == OP_IPV4 ? AF_INET : AF_INET6, f, a, sizeof(a)))
                return 0;
            if (out_put(o, a, strlen(a)) < 0)
                return -1;
            break;
        }
        case OP_CSTR:
        case OP_JSTR: {
            const uint8_t *end = memchr(f, 0, op->size);
            size_t n = end ? (size_t)(end - f) : op->size;
            if (op->kind == OP_JSTR && (memchr(f, '"', n) || memchr(f, '\\', n)))
                return 0;
            size_t from = o->len;
            if (out_put(o, (const char *)f, n) < 0)
                return -1;
            if (!printable_since(o, from))
                return 0;
            break;
        }
        }
    }
    if (o->len == start)
        return 0;                       /* empty text: "[UNKNOWN_EVENT_ID:..]" is Python's */
    return 1;
}


/* ---- lines ------------------------------------------------------------ */

/* One record's header, as the walk hands it to a line renderer. */
struct rec {
    uint16_t len, cpu, provider, reserved;
    uint64_t ts, session;
    uint32_t event_id;
    int32_t tid;
    const uint8_t *payload;
    size_t size;
};

/* Appends one record's line (without the newline) for the kind's entry
 * tuple; 1: done, 0: the record is Python's, -1: error. */
typedef int (*line_fn)(struct out *o, const struct rec *r, PyObject *entry, void *ctx);

/* Output per call, about: the lines of as many records as fill it. Pieces
 * this small come from (and go back to) malloc's heap; pieces of a whole
 * 1 MiB run (10 MB of JSON) were mapped fresh each time, and their page
 * faults cost a third of the time. */
#define PIECE (60 * 1024)

/* The walk both printers share: each record's kind entry from ``kinds``
 * (built by its __missing__ on first sight), the line from ``fn`` or else
 * from ``slow(record bytes)``, one newline each, until about PIECE bytes
 * are out: (str, records done, bytes of buf done). */
static PyObject *walk_lines(Py_buffer *view, Py_ssize_t count, PyObject *kinds, PyObject *slow,
                            line_fn fn, void *ctx)
{
    const uint8_t *p = view->buf, *end = p + view->len;
    Py_ssize_t i;
    /* The output buffer is kept from call to call: fresh memory per call
     * cost page faults. Callbacks into Python (slow(), a label function)
     * may let another thread in, and into this function: that call gets a
     * buffer of its own. */
    static struct out kept;
    static int kept_busy;
    int mine = !kept_busy;
    struct out o = {0};
    if (mine) {
        kept_busy = 1;
        o = kept;
    }
    o.len = 0;
    uint64_t last_key = ~(uint64_t)0;
    PyObject *entry = NULL;             /* a reference of ours: the dict may not keep it */
    PyObject *result = NULL;

    for (i = 0; i < count && o.len < PIECE; i++) {
        struct rec r;
        if (end - p < HDR_SIZE)
            goto corrupt;
        memcpy(&r.len, p, 2);
        memcpy(&r.cpu, p + 2, 2);
        memcpy(&r.provider, p + 4, 2);
        memcpy(&r.reserved, p + 6, 2);
        memcpy(&r.ts, p + 8, 8);
        memcpy(&r.session, p + 16, 8);
        memcpy(&r.event_id, p + 24, 4);
        memcpy(&r.tid, p + 28, 4);
        if (r.len < HDR_SIZE || r.len > end - p)
            goto corrupt;
        r.payload = p + HDR_SIZE;
        r.size = r.len - HDR_SIZE;
        uint64_t key = (uint64_t)r.provider << 32 | r.event_id;
        if (key != last_key || !entry) {
            PyObject *k = PyLong_FromUnsignedLongLong(key);
            if (!k)
                goto done;
            Py_XSETREF(entry, PyObject_GetItem(kinds, k));
            Py_DECREF(k);
            if (!entry)
                goto done;
            last_key = key;
        }
        size_t line_start = o.len;
        int r_fn = 0;
        if (PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 3 && PyTuple_GET_ITEM(entry, 2) != Py_None)
            r_fn = fn(&o, &r, entry, ctx);
        if (r_fn < 0)
            goto done;
        if (r_fn == 0) {
            o.len = line_start;
            PyObject *raw = PyBytes_FromStringAndSize((const char *)p, r.len);
            if (!raw)
                goto done;
            PyObject *line = PyObject_CallOneArg(slow, raw);
            Py_DECREF(raw);
            if (!line)
                goto done;
            int rs = PyUnicode_Check(line) ? out_str(&o, line) : -2;
            Py_DECREF(line);
            if (rs == -2)
                PyErr_SetString(PyExc_TypeError, "slow() must return str");
            if (rs < 0)
                goto done;
        }
        if (out_put(&o, "\n", 1) < 0)
            goto done;
        p += r.len;
    }
    PyObject *text = PyUnicode_DecodeUTF8(o.buf ? o.buf : "", o.len, "surrogatepass");
    if (text)
        result = Py_BuildValue("Nnn", text, i, (Py_ssize_t)(p - (const uint8_t *)view->buf));
    goto done;
corrupt:
    PyErr_SetString(PyExc_ValueError, "records cut short or malformed in the run");
done:
    Py_XDECREF(entry);
    if (!mine || o.cap > (64u << 20)) {     /* not the kept one, or huge: give it back */
        PyMem_Free(o.buf);
        o.buf = NULL;
        o.cap = 0;
    }
    if (mine) {
        kept = o;
        kept_busy = 0;
    }
    return result;
}

/* The entry's (bytes, bytes, plan capsule), or 0 (leave it to Python). */
static int entry_parts(PyObject *entry, PyObject **a, PyObject **b, const struct plan **plan)
{
    *a = PyTuple_GET_ITEM(entry, 0);
    *b = PyTuple_GET_ITEM(entry, 1);
    *plan = PyCapsule_GetPointer(PyTuple_GET_ITEM(entry, 2), "pyelog.text.plan");
    if (!*plan || !PyBytes_Check(*a) || !PyBytes_Check(*b)) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* -- text: "[%2u]%04x::TIME [provider][session][NAME] payload" -- */

struct text_ctx {
    long long offset;
    int anchored, date;
    int64_t cached_sec;
    char sec_text[48];
    size_t sec_len;
};

static int text_line(struct out *o, const struct rec *r, PyObject *entry, void *vctx)
{
    struct text_ctx *c = vctx;
    PyObject *head, *close;
    const struct plan *plan;
    if (!entry_parts(entry, &head, &close, &plan))
        return 0;
    /* The time: UTC when anchored (years 1000-9999; others are Python's). */
    __int128 utc = (__int128)r->ts + (c->anchored ? c->offset : 0);
    if (utc < 0 || utc >= (__int128)INT64_MAX)
        return 0;
    int64_t sec = (int64_t)(utc / 1000000), us = (int64_t)(utc % 1000000);
    if (sec != c->cached_sec) {
        if (c->anchored) {
            time_t t = (time_t)sec;
            struct tm tm;
            if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 1000 || tm.tm_year + 1900 > 9999)
                return 0;
            if (c->date)
                c->sec_len = snprintf(c->sec_text, sizeof(c->sec_text), "%04d-%02d-%02d %02d:%02d:%02d.",
                                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                                      tm.tm_hour, tm.tm_min, tm.tm_sec);
            else
                c->sec_len = snprintf(c->sec_text, sizeof(c->sec_text), "%02d:%02d:%02d.",
                                      tm.tm_hour, tm.tm_min, tm.tm_sec);
        } else {
            c->sec_len = snprintf(c->sec_text, sizeof(c->sec_text), "%02lld:%02lld:%02lld.",
                                  (long long)(sec / 3600), (long long)(sec / 60 % 60),
                                  (long long)(sec % 60));
        }
        c->cached_sec = sec;
    }
    /* By hand: snprintf would cost more than the rest of the line. */
    if (out_reserve(o, 128 + c->sec_len) < 0)
        return -1;
    char *d = o->buf + o->len;
    uint32_t tid = (uint32_t)r->tid;
    *d++ = '[';
    if (r->cpu < 10)
        *d++ = ' ';
    d = put_dec(d, r->cpu);
    *d++ = ']';
    if (tid >> 16)                                  /* %04x: 4 digits at least */
        d = put_hex(d, tid >> 16);
    for (int shift = 12; shift >= 0; shift -= 4)
        *d++ = "0123456789abcdef"[(tid >> shift) & 15];
    *d++ = ':';
    *d++ = ':';
    memcpy(d, c->sec_text, c->sec_len);
    d += c->sec_len;
    for (int div = 100000; div; div /= 10)
        *d++ = '0' + (us / div) % 10;
    o->len = d - o->buf;
    if (out_put(o, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head)) < 0 || out_reserve(o, 24) < 0)
        return -1;
    o->len = put_dec(o->buf + o->len, r->session) - o->buf;
    if (out_put(o, PyBytes_AS_STRING(close), PyBytes_GET_SIZE(close)) < 0 || out_put(o, " ", 1) < 0)
        return -1;
    return render(o, plan, r->payload, r->size);
}

PyDoc_STRVAR(lines_doc,
"lines(buf, count, kinds, slow, offset, anchored, date) -> (str, n, used)\n\n"
"The text lines (each ending in a newline) of the first ``n`` of ``count``\n"
"whole records at the start of ``buf`` (as many as fill about 60 KiB;\n"
"``used``: their bytes). ``kinds[provider_id << 32 | event_id]`` is\n"
"(head: bytes, close: bytes, plan capsule or None); ``slow(record)`` (the\n"
"record's bytes) returns the line of a record this function does not\n"
"render. ``offset`` is added to timestamps (the capture's UTC anchor,\n"
"``anchored``), ``date`` prints YYYY-MM-DD before the time.");

static PyObject *lines(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t count;
    PyObject *kinds, *slow;
    struct text_ctx c = {.cached_sec = INT64_MIN};
    if (!PyArg_ParseTuple(args, "y*nOOLpp", &view, &count, &kinds, &slow, &c.offset, &c.anchored, &c.date))
        return NULL;
    PyObject *result = walk_lines(&view, count, kinds, slow, text_line, &c);
    PyBuffer_Release(&view);
    return result;
}

/* -- JSON: the object JsonEventFormatter.line builds, key for key -- */

/* Two hex digits per byte value, for the payload. */
static char HEX_PAIRS[256][2];

static void init_hex_pairs(void)
{
    for (int i = 0; i < 256; i++) {
        HEX_PAIRS[i][0] = "0123456789abcdef"[i >> 4];
        HEX_PAIRS[i][1] = "0123456789abcdef"[i & 15];
    }
}

static int json_line(struct out *o, const struct rec *r, PyObject *entry, void *ctx)
{
    PyObject *provider, *event;
    const struct plan *plan;
    if (!entry_parts(entry, &provider, &event, &plan))
        return 0;
    if (out_reserve(o, 200) < 0)
        return -1;
    char *d = o->buf + o->len;
#define LIT(s) (memcpy(d, s, sizeof(s) - 1), d += sizeof(s) - 1)
    LIT("{\"timestamp\": ");
    d = put_dec(d, r->ts);
    LIT(", \"cpu\": ");
    d = put_dec(d, r->cpu);
    LIT(", \"thread_id\": ");
    d = put_sdec(d, r->tid);
    LIT(", \"provider_id\": ");
    d = put_dec(d, r->provider);
    LIT(", \"provider\": ");
    o->len = d - o->buf;
    if (out_put(o, PyBytes_AS_STRING(provider), PyBytes_GET_SIZE(provider)) < 0 || out_reserve(o, 100) < 0)
        return -1;
    d = o->buf + o->len;
    LIT(", \"session_id\": ");
    d = put_dec(d, r->session);
    LIT(", \"event_id\": ");
    d = put_dec(d, r->event_id);
    LIT(", \"event\": ");
    o->len = d - o->buf;
    if (out_put(o, PyBytes_AS_STRING(event), PyBytes_GET_SIZE(event)) < 0 || out_reserve(o, 64) < 0)
        return -1;
    d = o->buf + o->len;
    LIT(", \"reserved\": ");
    d = put_dec(d, r->reserved);
    LIT(", \"fields\": ");
    o->len = d - o->buf;
    int rendered = render(o, plan, r->payload, r->size);
    if (rendered <= 0)
        return rendered;
    if (out_reserve(o, 2 * r->size + 20) < 0)
        return -1;
    d = o->buf + o->len;
    LIT(", \"payload\": \"");
    for (size_t i = 0; i < r->size; i++, d += 2)
        memcpy(d, HEX_PAIRS[r->payload[i]], 2);
    LIT("\"}");
#undef LIT
    o->len = d - o->buf;
    return 1;
}

PyDoc_STRVAR(json_lines_doc,
"json_lines(buf, count, kinds, slow) -> (str, n, used)\n\n"
"JSON lines of ``count`` whole records, as lines(): ``kinds`` entries are\n"
"(provider as JSON: bytes, event name as JSON: bytes, fields plan or None).");

static PyObject *json_lines(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t count;
    PyObject *kinds, *slow;
    if (!PyArg_ParseTuple(args, "y*nOO", &view, &count, &kinds, &slow))
        return NULL;
    PyObject *result = walk_lines(&view, count, kinds, slow, json_line, NULL);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(walk_doc,
"walk(buf) -> (count, end, bad)\n\n"
"The whole records at the start of ``buf``: how many, where they end, and\n"
"the offset of a record whose event_length is below 32 (-1: none; the\n"
"walk stops there).");

static PyObject *walk(PyObject *self, PyObject *args)
{
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view))
        return NULL;
    const uint8_t *b = view.buf;
    Py_ssize_t off = 0, n = 0, bad = -1, end = view.len;
    while (end - off >= HDR_SIZE) {
        uint16_t len;
        memcpy(&len, b + off, 2);
        if (len < HDR_SIZE) {
            bad = off;
            break;
        }
        if (len > end - off)
            break;
        off += len;
        n++;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nnn", n, off, bad);
}

PyDoc_STRVAR(index_doc,
"index(buf, count) -> (offsets, headers)\n\n"
"The first ``count`` records of ``buf`` for columnar readers (numpy's\n"
"frombuffer): ``offsets``, where each starts (little-endian uint32), and\n"
"``headers``, their 32-byte headers back to back. ``buf`` must hold that\n"
"many whole records (a run of runs()); ValueError otherwise.");

static PyObject *record_index(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t count;
    PyObject *offs = NULL, *heads = NULL;
    if (!PyArg_ParseTuple(args, "y*n", &view, &count))
        return NULL;
    if (count < 0 || view.len > UINT32_MAX || count > view.len / HDR_SIZE) {
        PyErr_SetString(PyExc_ValueError, "index: the buffer does not hold that many whole records");
        goto fail;
    }
    offs = PyBytes_FromStringAndSize(NULL, count * 4);
    heads = PyBytes_FromStringAndSize(NULL, count * HDR_SIZE);
    if (!offs || !heads)
        goto fail;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(offs), *h = (uint8_t *)PyBytes_AS_STRING(heads);
    const uint8_t *b = view.buf;
    Py_ssize_t off = 0, end = view.len;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint16_t len;
        if (end - off < HDR_SIZE)
            goto short_buf;
        memcpy(&len, b + off, 2);
        if (len < HDR_SIZE || len > end - off)
            goto short_buf;
        uint32_t v = (uint32_t)off;
        memcpy(o + 4 * i, &v, 4);   /* x86/arm64 Linux: little-endian, as elog(5) */
        memcpy(h + HDR_SIZE * i, b + off, HDR_SIZE);
        off += len;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("NN", offs, heads);
short_buf:
    PyErr_SetString(PyExc_ValueError, "index: the buffer does not hold that many whole records");
fail:
    PyBuffer_Release(&view);
    Py_XDECREF(offs);
    Py_XDECREF(heads);
    return NULL;
}

PyDoc_STRVAR(payloads_doc,
"payloads(buf, offsets, size) -> bytes\n\n"
"The payloads of the records of ``buf`` at ``offsets`` (native int64, from\n"
"index()), each cut or zero-filled to ``size`` bytes, back to back: what a\n"
"generated decoder reads of each (missing tail bytes read as 0).");

static PyObject *payloads(PyObject *self, PyObject *args)
{
    Py_buffer view, offv;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y*y*n", &view, &offv, &size))
        return NULL;
    Py_ssize_t n = offv.len / 8;
    PyObject *out = NULL;
    if (size < 0 || size > 65535) {
        PyErr_SetString(PyExc_ValueError, "payloads: size out of range");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, n * size);
    if (!out)
        goto done;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    const uint8_t *b = view.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t off;
        uint16_t len;
        memcpy(&off, (const uint8_t *)offv.buf + 8 * i, 8);
        if (off < 0 || off > view.len - HDR_SIZE)
            goto bad;
        memcpy(&len, b + off, 2);
        if (len < HDR_SIZE || len > view.len - off)
            goto bad;
        Py_ssize_t have = len - HDR_SIZE < size ? len - HDR_SIZE : size;
        memcpy(o + i * size, b + off + HDR_SIZE, have);
        memset(o + i * size + have, 0, size - have);
    }
    goto done;
bad:
    Py_CLEAR(out);
    PyErr_SetString(PyExc_ValueError, "payloads: an offset is not a whole record of the buffer");
done:
    PyBuffer_Release(&view);
    PyBuffer_Release(&offv);
    return out;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, walk_doc},
    {"index", record_index, METH_VARARGS, index_doc},
    {"payloads", payloads, METH_VARARGS, payloads_doc},
    {"compile", compile_plan, METH_VARARGS, compile_doc},
    {"lines", lines, METH_VARARGS, lines_doc},
    {"json_lines", json_lines, METH_VARARGS, json_lines_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pyelog.records._records",
    "The records layer's hot paths: the record walk of runs() and elog(1) text lines.",
    -1, methods,
};

PyMODINIT_FUNC PyInit__records(void)
{
    init_hex_pairs();
    return PyModule_Create(&module);
}
