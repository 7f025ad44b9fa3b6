/* C helpers for the WebSocket hot path: payload masking.
 *
 * Optional: lapps.ws.frames falls back to a pure-Python big-integer XOR when this
 * module is not built. Masking is O(n) per message, and in Python it costs four passes
 * over the data (two int conversions, the XOR, the conversion back); here it is one pass,
 * eight bytes at a time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

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
    unsigned char rotated[8];
    for (int i = 0; i < 8; i++)
        rotated[i] = k[(i + offset) & 3];
    uint64_t k64;
    memcpy(&k64, rotated, 8);
    Py_ssize_t n = data.len, i = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ rotated[i & 7];
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"mask", (PyCFunction)(void (*)(void))speedups_mask, METH_FASTCALL, mask_doc},
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
