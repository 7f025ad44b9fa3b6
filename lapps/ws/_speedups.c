/* C helpers for the WebSocket hot path: payload masking, a scanner for the frames that
 * make up nearly all traffic, and framing a reply onto a connection's output buffer.
 *
 * Optional: lapps.ws.frames falls back to a pure-Python big-integer XOR and
 * lapps.ws.protocol to its Python parser when this module is not built. Masking is O(n)
 * per message, and in Python it costs four passes over the data (two int conversions,
 * the XOR, the conversion back); here it is one pass, eight bytes at a time.
 *
 * scan() takes only the frames whose handling has no decision in it: complete, masked,
 * unfragmented text or binary frames without RSV bits, within the size limit, text that
 * is valid UTF-8. At the first frame that is anything else (a control frame, a fragment,
 * a partial frame, an error) it stops and returns, and the Python parser takes that frame:
 * every rule of RFC 6455 keeps exactly one implementation, the Python one, and the scanner
 * only ever says "nothing to decide here".
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

/* XOR n bytes of src into dst with the 4-byte key k, starting at byte `offset` of the key
 * stream, eight bytes at a time. */
static void
xor_key(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *k,
        Py_ssize_t offset)
{
    unsigned char rotated[8];
    for (int i = 0; i < 8; i++)
        rotated[i] = k[(i + offset) & 3];
    uint64_t k64;
    memcpy(&k64, rotated, 8);
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ rotated[i & 7];
}

PyDoc_STRVAR(mask_doc,
"mask(data, key, offset=0) -> bytes\n\n"
"XOR data with the 4-byte key, starting at byte `offset` of the key stream.");

static PyObject *
speedups_mask(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, key;
    Py_ssize_t offset = 0;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "mask(data, key, offset=0)");
        return NULL;
    }
    if (nargs == 3) {
        offset = PyLong_AsSsize_t(args[2]);
        if (offset == -1 && PyErr_Occurred())
            return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    PyObject *result = NULL;
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask key must be 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL)
        goto done;
    const unsigned char *src = (const unsigned char *)data.buf;
    const unsigned char *k = (const unsigned char *)key.buf;
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    xor_key(dst, src, data.len, k, offset);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return result;
}

/* Is s[0:n] well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF)? ASCII runs are skipped eight bytes at a time. */
static int
utf8_valid(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* the lead byte fixes the sequence length and the allowed range of the 2nd byte */
        int len;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;          /* overlong */
            else if (c == 0xED) hi = 0x9F;     /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;          /* overlong */
            else if (c == 0xF4) hi = 0x8F;     /* past U+10FFFF */
        } else
            return 0;
        if (i + len > n)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (int j = 2; j < len; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

PyDoc_STRVAR(scan_doc,
"scan(data, pos, max_size) -> (messages, pos)\n\n"
"Unmask the simple frames of data from pos on: complete, masked, FIN, opcode 1 or 2,\n"
"no RSV bit, payload <= max_size and under 64 KiB, text valid UTF-8. messages is a list\n"
"of (opcode, payload bytes); pos is where the first other frame (or the end) begins.");

static PyObject *
speedups_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "scan(data, pos, max_size)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t max_size = PyLong_AsSsize_t(args[2]);
    if (max_size == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *buf = (const unsigned char *)data.buf;
    Py_ssize_t end = data.len;
    PyObject *messages = PyList_New(0);
    if (messages == NULL)
        goto fail;
    if (pos < 0)
        pos = 0;
    while (end - pos >= 6) {
        unsigned char b0 = buf[pos], b1 = buf[pos + 1];
        /* FIN, no RSV, text or binary; masked */
        if ((b0 != 0x81 && b0 != 0x82) || !(b1 & 0x80))
            break;
        Py_ssize_t len = b1 & 0x7F, hlen = 6;
        if (len == 126) {
            if (end - pos < 8)
                break;
            len = ((Py_ssize_t)buf[pos + 2] << 8) | buf[pos + 3];
            if (len < 126)
                break;                 /* not minimal: the Python parser says 1002 */
            hlen = 8;
        } else if (len == 127)
            break;
        if (len > max_size || end - pos - hlen < len)
            break;
        const unsigned char *src = buf + pos + hlen;
        PyObject *payload = PyBytes_FromStringAndSize(NULL, len);
        if (payload == NULL)
            goto fail;
        unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(payload);
        xor_key(dst, src, len, src - 4, 0);
        if (b0 == 0x81 && !utf8_valid(dst, len)) {
            Py_DECREF(payload);
            break;
        }
        PyObject *item = PyTuple_New(2);
        if (item == NULL) {
            Py_DECREF(payload);
            goto fail;
        }
        PyTuple_SET_ITEM(item, 0, PyLong_FromLong(b0 & 0x0F));   /* a cached small int */
        PyTuple_SET_ITEM(item, 1, payload);
        int err = PyList_Append(messages, item);
        Py_DECREF(item);
        if (err < 0)
            goto fail;
        pos += hlen + len;
    }
    PyBuffer_Release(&data);
    PyObject *result = PyTuple_New(2), *end_pos = PyLong_FromSsize_t(pos);
    if (result == NULL || end_pos == NULL) {
        Py_XDECREF(result);
        Py_XDECREF(end_pos);
        Py_DECREF(messages);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, messages);
    PyTuple_SET_ITEM(result, 1, end_pos);
    return result;
fail:
    Py_XDECREF(messages);
    PyBuffer_Release(&data);
    return NULL;
}

PyDoc_STRVAR(frame_into_doc,
"frame_into(out, opcode, data) -> None\n\n"
"Append one unmasked, final, uncompressed frame carrying data to the bytearray out.");

static PyObject *
speedups_frame_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyByteArray_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "frame_into(out: bytearray, opcode, data)");
        return NULL;
    }
    long opcode = PyLong_AsLong(args[1]);
    if (opcode == -1 && PyErr_Occurred())
        return NULL;
    if (opcode < 0 || opcode > 15) {
        PyErr_SetString(PyExc_ValueError, "opcode must be 0..15");
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[2], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    unsigned char head[10];
    Py_ssize_t hlen, n = data.len;
    head[0] = 0x80 | (unsigned char)opcode;
    if (n < 126) {
        head[1] = (unsigned char)n;
        hlen = 2;
    } else if (n < 65536) {
        head[1] = 126;
        head[2] = (unsigned char)(n >> 8);
        head[3] = (unsigned char)n;
        hlen = 4;
    } else {
        head[1] = 127;
        for (int i = 0; i < 8; i++)
            head[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hlen = 10;
    }
    PyObject *out = args[0];
    Py_ssize_t old = PyByteArray_GET_SIZE(out);
    if (PyByteArray_Resize(out, old + hlen + n) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    char *dst = PyByteArray_AS_STRING(out) + old;
    memcpy(dst, head, hlen);
    memcpy(dst + hlen, data.buf, n);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(utf8_doc, "utf8_valid(data) -> bool: is data well-formed UTF-8 (RFC 3629)?");

static PyObject *
speedups_utf8_valid(PyObject *self, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    int ok = utf8_valid((const unsigned char *)data.buf, data.len);
    PyBuffer_Release(&data);
    return PyBool_FromLong(ok);
}

/* ---- the LAppS request fast path (lapps/lapps_fastpath.py has its Python twin) ----
 *
 * request_args() reads the one request shape nearly every LAppS message has, a definite
 * CBOR map {lapps: 1, method: text, params: [scalars...], cid: int} (params and cid
 * optional, keys in any order), and returns what the worker hands to Lua for it. Anything
 * else (another encoding, a tag, null, a nested container, a float16, a duplicate or an
 * unknown key, an error of any kind) gives None and the full Python path decides: every
 * rule of DESIGN §4 keeps its one implementation in lapps_protocol.py. */

/* One CBOR head at *pp: major type, additional info (low five bits) and argument.
 * -1: truncated, indefinite or reserved. */
static int
cbor_head(const unsigned char **pp, const unsigned char *end, int *major, int *info, uint64_t *arg)
{
    const unsigned char *p = *pp;
    if (p >= end)
        return -1;
    unsigned char b = *p++;
    int extra;
    *major = b >> 5;
    *info = b & 31;
    if (*info < 24) {
        *arg = (uint64_t)*info;
        *pp = p;
        return 0;
    }
    if (*info == 24) extra = 1;
    else if (*info == 25) extra = 2;
    else if (*info == 26) extra = 4;
    else if (*info == 27) extra = 8;
    else return -1;
    if (end - p < extra)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < extra; i++)
        v = (v << 8) | p[i];
    *arg = v;
    *pp = p + extra;
    return 0;
}

/* A string item's bytes (major 2 or 3, text valid UTF-8) as bytes; NULL (no exception
 * set) when it is not one. */
static PyObject *
cbor_string(const unsigned char **pp, const unsigned char *end, int major, uint64_t len)
{
    const unsigned char *p = *pp;
    if (len > (uint64_t)(end - p))
        return NULL;
    if (major == 3 && !utf8_valid(p, (Py_ssize_t)len))
        return NULL;
    *pp = p + len;
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)len);
}

/* A signed 64-bit integer item (major 0 or 1) as int; NULL when out of range. */
static PyObject *
cbor_int(int major, uint64_t arg)
{
    if (arg > (uint64_t)INT64_MAX)
        return NULL;
    return PyLong_FromLongLong(major == 0 ? (long long)arg : -1 - (long long)arg);
}

/* One item of params: text/bytes -> bytes, int, bool, float32/64 -> float; NULL else. */
static PyObject *
cbor_scalar(const unsigned char **pp, const unsigned char *end)
{
    int major, info;
    uint64_t arg;
    if (cbor_head(pp, end, &major, &info, &arg) < 0)
        return NULL;
    switch (major) {
    case 0: case 1:
        return cbor_int(major, arg);
    case 2: case 3:
        return cbor_string(pp, end, major, arg);
    case 7:
        if (info == 20) Py_RETURN_FALSE;
        if (info == 21) Py_RETURN_TRUE;
        if (info == 26) {
            uint32_t b32 = (uint32_t)arg;
            float f;
            memcpy(&f, &b32, 4);
            return PyFloat_FromDouble((double)f);
        }
        if (info == 27) {
            double d;
            memcpy(&d, &arg, 8);
            return PyFloat_FromDouble(d);
        }
        return NULL;                /* null, undefined, simple values, float16 */
    default:
        return NULL;                /* containers, tags */
    }
}

#define MAX_FAST_PARAMS 256   /* lapps/lua/values.py _MAX_VARARGS */

PyDoc_STRVAR(request_args_doc,
"request_args(data) -> tuple | None\n\n"
"The common LAppS request as the worker hands it to Lua: (msg_type, method bytes, cid or\n"
"None[, True, *params]), params as bytes/int/float/bool; None for anything else.");

static PyObject *
speedups_request_args(PyObject *self, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = (const unsigned char *)data.buf, *end = p + data.len;
    PyObject *method = NULL, *cid = NULL, *items[MAX_FAST_PARAMS];
    Py_ssize_t nitems = 0;
    int has_lapps = 0, has_params = 0, major, info;
    uint64_t n, v;
    PyObject *result = NULL;
    if (cbor_head(&p, end, &major, &info, &n) < 0 || major != 5 || n < 2 || n > 4)
        goto fail;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t klen;
        if (cbor_head(&p, end, &major, &info, &klen) < 0 || major != 3 || klen > (uint64_t)(end - p))
            goto fail;
        const unsigned char *key = p;
        p += klen;
        if (cbor_head(&p, end, &major, &info, &v) < 0)
            goto fail;
        if (klen == 5 && memcmp(key, "lapps", 5) == 0) {
            if (has_lapps || major != 0 || v != 1)
                goto fail;
            has_lapps = 1;
        } else if (klen == 6 && memcmp(key, "method", 6) == 0) {
            if (method != NULL || major != 3 || v == 0 || v > (uint64_t)(end - p)
                    || p[0] == '_' || memchr(p, '.', (size_t)v) != NULL)
                goto fail;
            if ((method = cbor_string(&p, end, major, v)) == NULL)
                goto fail;
        } else if (klen == 3 && memcmp(key, "cid", 3) == 0) {
            if (cid != NULL || (major != 0 && major != 1) || (cid = cbor_int(major, v)) == NULL)
                goto fail;
        } else if (klen == 6 && memcmp(key, "params", 6) == 0) {
            if (has_params || major != 4 || v > MAX_FAST_PARAMS)
                goto fail;
            has_params = 1;
            for (uint64_t j = 0; j < v; j++) {
                if ((items[nitems] = cbor_scalar(&p, end)) == NULL)
                    goto fail;
                nitems++;
            }
        } else
            goto fail;
    }
    if (!has_lapps || method == NULL || p != end)
        goto fail;
    result = PyTuple_New(3 + (has_params ? 1 + nitems : 0));
    if (result == NULL)
        goto fail;
    long msg_type = (cid != NULL ? 1 : 3) + (nitems ? 1 : 0);
    PyTuple_SET_ITEM(result, 0, PyLong_FromLong(msg_type));
    PyTuple_SET_ITEM(result, 1, method);
    if (cid == NULL) {
        Py_INCREF(Py_None);
        cid = Py_None;
    }
    PyTuple_SET_ITEM(result, 2, cid);
    if (has_params) {
        Py_INCREF(Py_True);
        PyTuple_SET_ITEM(result, 3, Py_True);
        for (Py_ssize_t j = 0; j < nitems; j++)
            PyTuple_SET_ITEM(result, 4 + j, items[j]);
    }
    PyBuffer_Release(&data);
    return result;
fail:
    Py_XDECREF(method);
    Py_XDECREF(cid);
    for (Py_ssize_t j = 0; j < nitems; j++)
        Py_DECREF(items[j]);
    PyBuffer_Release(&data);
    if (PyErr_Occurred())           /* out of memory: say so */
        return NULL;
    Py_RETURN_NONE;
}

/* ---- the usual LAppS answer, encoded (lapps_protocol.encode_answer_python is its twin) ---- */

/* A CBOR head (major type already shifted) for n, shortest form, at dst; its length. */
static Py_ssize_t
put_head(unsigned char *dst, unsigned char major, uint64_t n)
{
    if (n < 24) {
        dst[0] = major | (unsigned char)n;
        return 1;
    }
    int extra = n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x100000000ULL ? 4 : 8;
    dst[0] = major | (extra == 1 ? 24 : extra == 2 ? 25 : extra == 4 ? 26 : 27);
    for (int i = 0; i < extra; i++)
        dst[1 + i] = (unsigned char)(n >> (8 * (extra - 1 - i)));
    return 1 + extra;
}

/* An int item (major 0, or 1 for -1 - n); -1 with OverflowError past 64 bits. */
static Py_ssize_t
put_int(unsigned char *dst, PyObject *v)
{
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (!overflow) {
        if (x == -1 && PyErr_Occurred())
            return -1;
        return x >= 0 ? put_head(dst, 0x00, (uint64_t)x) : put_head(dst, 0x20, (uint64_t)(-1 - x));
    }
    PyObject *magnitude = overflow > 0 ? (Py_INCREF(v), v) : PyNumber_Invert(v);   /* -1 - v */
    if (magnitude == NULL)
        return -1;
    unsigned long long u = PyLong_AsUnsignedLongLong(magnitude);
    Py_DECREF(magnitude);
    if (u == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    return put_head(dst, overflow > 0 ? 0x00 : 0x20, u);
}

static const unsigned char REPLY_HEAD[] = {   /* {"cid": 0, "status": 1, "result": as cbor2 writes it */
    0xa3, 0x63, 'c', 'i', 'd', 0x00, 0x66, 's', 't', 'a', 't', 'u', 's', 0x01,
    0x66, 'r', 'e', 's', 'u', 'l', 't'};

PyDoc_STRVAR(encode_answer_doc,
"encode_answer(values) -> bytes\n\n"
"CBOR of {cid: 0, status: 1, result: [values]}, values Lua scalars as lupa hands them\n"
"over (bytes, int, float, bool): lapps.lapps_protocol.encode_answer_python in C.");

static PyObject *
speedups_encode_answer(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "encode_answer(values): a tuple or list");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t cap = (Py_ssize_t)sizeof(REPLY_HEAD) + 9;
    for (Py_ssize_t i = 0; i < n; i++)
        cap += 9 + (PyBytes_CheckExact(items[i]) ? PyBytes_GET_SIZE(items[i]) : 0);
    PyObject *out = PyBytes_FromStringAndSize(NULL, cap);
    if (out == NULL)
        goto error;
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out), *start = dst;
    memcpy(dst, REPLY_HEAD, sizeof(REPLY_HEAD));
    dst += sizeof(REPLY_HEAD);
    dst += put_head(dst, 0x80, (uint64_t)n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = items[i];
        if (PyBytes_CheckExact(v)) {
            Py_ssize_t len = PyBytes_GET_SIZE(v);
            const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(v);
            dst += put_head(dst, utf8_valid(b, len) ? 0x60 : 0x40, (uint64_t)len);
            memcpy(dst, b, len);
            dst += len;
        } else if (PyBool_Check(v)) {
            *dst++ = v == Py_True ? 0xf5 : 0xf4;
        } else if (PyFloat_CheckExact(v)) {
            double d = PyFloat_AS_DOUBLE(v);
            if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
                long long x = (long long)d;   /* integral and in range: an integer, as from_lua makes it */
                dst += x >= 0 ? put_head(dst, 0x00, (uint64_t)x) : put_head(dst, 0x20, (uint64_t)(-1 - x));
            } else if (d != d) {
                *dst++ = 0xf9; *dst++ = 0x7e; *dst++ = 0x00;
            } else if (isinf(d)) {
                *dst++ = 0xf9; *dst++ = d > 0 ? 0x7c : 0xfc; *dst++ = 0x00;
            } else {
                uint64_t bits;
                memcpy(&bits, &d, 8);
                *dst++ = 0xfb;
                for (int j = 0; j < 8; j++)
                    *dst++ = (unsigned char)(bits >> (56 - 8 * j));
            }
        } else if (PyLong_CheckExact(v)) {
            Py_ssize_t k = put_int(dst, v);
            if (k < 0)
                goto error;
            dst += k;
        } else {
            PyErr_Format(PyExc_TypeError, "not a Lua scalar: %s", Py_TYPE(v)->tp_name);
            goto error;
        }
    }
    Py_DECREF(seq);
    if (_PyBytes_Resize(&out, dst - start) < 0)
        return NULL;
    return out;
error:
    Py_DECREF(seq);
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef speedups_methods[] = {
    {"mask", (PyCFunction)(void (*)(void))speedups_mask, METH_FASTCALL, mask_doc},
    {"scan", (PyCFunction)(void (*)(void))speedups_scan, METH_FASTCALL, scan_doc},
    {"utf8_valid", (PyCFunction)speedups_utf8_valid, METH_O, utf8_doc},
    {"frame_into", (PyCFunction)(void (*)(void))speedups_frame_into, METH_FASTCALL, frame_into_doc},
    {"request_args", (PyCFunction)speedups_request_args, METH_O, request_args_doc},
    {"encode_answer", (PyCFunction)speedups_encode_answer, METH_O, encode_answer_doc},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "lapps.ws._speedups",
    "C helpers for the WebSocket hot path (optional).", -1, speedups_methods
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
