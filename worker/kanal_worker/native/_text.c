/*
 * kanal_worker.native._text: a poll's values printed as Java's String.valueOf, as UTF-8
 * lines.
 *
 * FileStreamSink prints each schemaless JSON value as Java's HashMap.toString(). In
 * Python that is a template fill, a type check and an orjson call per map, which is most
 * of a sink task's CPU. This module prints the common values in C straight into one
 * UTF-8 buffer: maps of str keys whose items are str, int, bool, None or doubles in
 * Double.toString's plain range [1e-3, 1e7) (where it and Python's repr write the same
 * shortest digits), such scalars alone, and structs of such items under a schema of
 * plain fields. Everything else is printed by the Python reference
 * (kanal_worker.api.java_text.java_string), called for that value only.
 *
 * A map is an exact dict (JsonConverter's new HashMap<>()), JavaHashMap (a transform's
 * HashMap with a table size of its own) or LinkedHashMap (insertion order). Java's
 * iteration order of a key set in a table comes from Python (one call per key set and
 * table not seen recently in this poll): records of a topic mostly share their keys, and
 * orjson and the transforms reuse the key objects, so a pointer comparison usually finds
 * the cached order. A struct is an exact dict under a struct schema; which fields are
 * printed comes from Python too, once per schema object in a poll.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* what printing one value gave */
#define PRINTED 0
#define UNHANDLED 1   /* not a form printed here: the Python reference prints it */
#define IN_PYTHON 2   /* the caller prints the whole poll in Python: text with lone
                         surrogates (its encode raises the reference's own error), or
                         lists of unequal length */
#define FAILED (-1)   /* a Python exception is set */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buffer;

static int put(Buffer *b, const char *s, Py_ssize_t n) {
    if (n == 0)
        return PRINTED; /* the buffer may not exist yet, and memcpy wants one */
    if (n > b->cap - b->len) {
        Py_ssize_t cap = b->cap ? b->cap : 1 << 16;
        while (n > cap - b->len) {
            if (cap > PY_SSIZE_T_MAX / 2) {
                PyErr_NoMemory();
                return FAILED;
            }
            cap *= 2;
        }
        char *data = PyMem_Realloc(b->data, (size_t)cap);
        if (data == NULL) {
            PyErr_NoMemory();
            return FAILED;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return PRINTED;
}

static int put_text(Buffer *b, PyObject *text) {
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &n);
    if (utf8 == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return FAILED;
        PyErr_Clear();
        return IN_PYTHON;
    }
    return put(b, utf8, n);
}

/* A value that is printed here when it stands alone or as a map's item. */
static int is_scalar(PyObject *v) {
    return PyUnicode_CheckExact(v) || PyLong_CheckExact(v) || PyFloat_CheckExact(v) ||
           PyBool_Check(v) || v == Py_None;
}

/* Writes the decimal digits of v backwards, `width` at least (zero-padded), ending
 * before end; returns where they start. snprintf costs more than the rest of an item. */
static char *digits_before(char *end, unsigned long long v, int width) {
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (--width > 0 || v);
    return end;
}

/* repr's text of x (1e-3 <= |x| < 1e7) when it has at most 8 digits after the point,
 * ending before end (room for 32); where it starts, or NULL for dtoa to find it. The
 * text is the decimal m / 10^k with the fewest k that reads back as x: m and 10^k are
 * exact doubles and division is correctly rounded, so m / 10^k == x is exactly "strtod
 * reads it back as x". Below 1e7 neighbouring doubles are closer than 1e-8, so at each
 * k at most one m reads back as x, and the first k where one does holds the shortest
 * digits, which are repr's. Readings mostly have a few decimals: this is a few
 * multiplications where dtoa is bignum arithmetic. */
static char *short_double(double x, char *end) {
#if FLT_EVAL_METHOD != 0
    return NULL; /* the check needs each operation rounded to a double (x87 is wider) */
#endif
    static const unsigned long long powers[] = {1, 10, 100, 1000, 10000, 100000, 1000000,
                                                10000000, 100000000};
    double magnitude = fabs(x);
    for (int k = 0; k <= 8; k++) {
        double scale = (double)powers[k];
        double m = rint(magnitude * scale); /* below 1e15: an exact integer */
        if (m / scale != magnitude)
            continue;
        unsigned long long digits = (unsigned long long)m;
        if (k > 0 && digits % 10 == 0)
            return NULL; /* a shorter k missed by rounding: let dtoa decide */
        char *at = digits_before(end, k ? digits % powers[k] : 0, k);
        *--at = '.';
        at = digits_before(at, digits / powers[k], 1);
        if (x < 0)
            *--at = '-';
        return at;
    }
    return NULL;
}

static int put_scalar(Buffer *b, PyObject *v) {
    if (PyUnicode_CheckExact(v))
        return put_text(b, v);
    if (v == Py_None)
        return put(b, "null", 4);
    if (v == Py_True)
        return put(b, "true", 4);
    if (v == Py_False)
        return put(b, "false", 5);
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred())
            return FAILED;
        if (overflow)
            return UNHANDLED; /* beyond 64 bits: Python's str, and its digit limit */
        char text[24], *end = text + sizeof text;
        char *at = digits_before(end, x < 0 ? 0ULL - (unsigned long long)x
                                            : (unsigned long long)x, 1);
        if (x < 0)
            *--at = '-';
        return put(b, at, end - at);
    }
    if (PyFloat_CheckExact(v)) {
        double x = PyFloat_AS_DOUBLE(v), magnitude = fabs(x);
        if (!(magnitude >= 1e-3 && magnitude < 1e7)) /* NaN fails too */
            return UNHANDLED;
        char text[32], *end = text + sizeof text;
        char *at = short_double(x, end);
        if (at != NULL)
            return put(b, at, end - at);
        /* float.__repr__ is exactly this call */
        char *digits = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (digits == NULL)
            return FAILED;
        int printed = put(b, digits, (Py_ssize_t)strlen(digits));
        PyMem_Free(digits);
        return printed;
    }
    return UNHANDLED;
}

/* A map's table: a JavaHashMap's size, or one of these */
#define DEFAULT_TABLE 0 /* a plain dict: new HashMap<>() */
#define LINKED (-1)     /* a LinkedHashMap: insertion order */

/* Java's order of a key set in a table: keys (a tuple, in insertion order) and the
 * position in keys of each key in Java's iteration order. */
typedef struct {
    PyObject *keys;
    Py_ssize_t table;
    Py_ssize_t *order;
} Order;

#define ORDERS 8 /* key sets remembered per poll: a topic may alternate a few */

/* A struct schema and the names of its fields when every one is printed here, else
 * None: the schema is held, so its identity stays its own while remembered. */
typedef struct {
    PyObject *schema, *names;
} Fields;

#define SCHEMAS 8

typedef struct {
    PyObject *order_of;     /* Python: keys tuple[, table] -> tuple of positions */
    PyObject *struct_names; /* Python: schema -> tuple of field names, or None */
    PyObject *hash_map, *linked; /* the types JavaHashMap and LinkedHashMap */
    Order orders[ORDERS];
    int last, next;
    Fields fields[SCHEMAS];
    int next_fields;
    /* a map's keys and items in insertion order, as strong references */
    PyObject **keys, **items;
    Py_ssize_t room;
} Printer;

static PyObject *table_name; /* "table", interned */

static void forget(Order *o) {
    Py_CLEAR(o->keys);
    PyMem_Free(o->order);
    o->order = NULL;
}

static int same_keys(PyObject *cached, PyObject **keys, Py_ssize_t n) {
    if (PyTuple_GET_SIZE(cached) != n)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *known = PyTuple_GET_ITEM(cached, i);
        /* both exact str, so the comparison runs no Python code and cannot fail */
        if (known != keys[i] && PyUnicode_Compare(known, keys[i]) != 0)
            return 0;
    }
    return 1;
}

/* The Order of keys[0..n) in a table (> 0, or DEFAULT_TABLE), from the poll's cache or
 * asked of Python; NULL on error. */
static Order *order_of(Printer *p, PyObject **keys, Py_ssize_t n, Py_ssize_t table) {
    for (int k = 0; k < ORDERS; k++) {
        int at = (p->last + k) % ORDERS;
        Order *o = &p->orders[at];
        if (o->keys != NULL && o->table == table && same_keys(o->keys, keys, n)) {
            p->last = at;
            return o;
        }
    }
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(keys[i]));
    PyObject *positions = NULL;
    if (table == DEFAULT_TABLE) {
        positions = PyObject_CallOneArg(p->order_of, tuple);
    } else {
        PyObject *size = PyLong_FromSsize_t(table);
        if (size != NULL)
            positions = PyObject_CallFunctionObjArgs(p->order_of, tuple, size, NULL);
        Py_XDECREF(size);
    }
    Py_ssize_t *order = NULL;
    char *seen = NULL;
    if (positions == NULL)
        goto fail;
    if (!PyTuple_Check(positions) || PyTuple_GET_SIZE(positions) != n) {
        PyErr_SetString(PyExc_TypeError, "a key order must be a tuple of every position");
        goto fail;
    }
    order = PyMem_Malloc((size_t)n * sizeof *order);
    seen = PyMem_Calloc((size_t)n, 1);
    if (order == NULL || seen == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(positions, j));
        if (i == -1 && PyErr_Occurred())
            goto fail;
        /* checked: the positions index the key arrays */
        if (i < 0 || i >= n || seen[i]) {
            PyErr_SetString(PyExc_ValueError, "a key order must be a permutation");
            goto fail;
        }
        seen[i] = 1;
        order[j] = i;
    }
    PyMem_Free(seen);
    Py_DECREF(positions);
    Order *o = &p->orders[p->next];
    forget(o);
    o->keys = tuple;
    o->table = table;
    o->order = order;
    p->last = p->next;
    p->next = (p->next + 1) % ORDERS;
    return o;
fail:
    PyMem_Free(seen);
    PyMem_Free(order);
    Py_XDECREF(positions);
    Py_DECREF(tuple);
    return NULL;
}

/* Room for n keys and items in p. */
static int make_room(Printer *p, Py_ssize_t n) {
    if (n > p->room) {
        PyObject **keys = PyMem_Realloc(p->keys, (size_t)n * sizeof *keys);
        if (keys != NULL)
            p->keys = keys;
        PyObject **items = PyMem_Realloc(p->items, (size_t)n * sizeof *items);
        if (items != NULL)
            p->items = items;
        if (keys == NULL || items == NULL) {
            PyErr_NoMemory();
            return FAILED;
        }
        p->room = n;
    }
    return PRINTED;
}

/* The table a JavaHashMap started with, or 0 when it holds no size (then the reference
 * prints it). */
static Py_ssize_t table_of(PyObject *map) {
    PyObject *size = PyObject_GetAttr(map, table_name); /* a slot of an exact type */
    if (size == NULL) {
        PyErr_Clear(); /* unset: the reference's getattr default is not guessed here */
        return 0;
    }
    Py_ssize_t table = PyLong_CheckExact(size) ? PyLong_AsSsize_t(size) : 0;
    Py_DECREF(size);
    if (table == -1 && PyErr_Occurred())
        PyErr_Clear();
    return table > 0 ? table : 0;
}

/* A map in Java's order of its table (a JavaHashMap's size, DEFAULT_TABLE or LINKED). */
static int put_map(Buffer *b, Printer *p, PyObject *map, Py_ssize_t table) {
    Py_ssize_t n = PyDict_GET_SIZE(map);
    if (n == 0)
        return put(b, "{}", 2);
    if (make_room(p, n) == FAILED)
        return FAILED;
    /* strong references: asking Python for an order runs Python code */
    Py_ssize_t pos = 0, got = 0;
    PyObject *key, *item;
    int result = PRINTED;
    while (got < n && PyDict_Next(map, &pos, &key, &item)) {
        if (!PyUnicode_CheckExact(key) || !is_scalar(item)) {
            result = UNHANDLED;
            break;
        }
        p->keys[got] = Py_NewRef(key);
        p->items[got] = Py_NewRef(item);
        got++;
    }
    if (result == PRINTED && got != n)
        result = UNHANDLED;
    Order *o = result == PRINTED && table != LINKED ? order_of(p, p->keys, n, table) : NULL;
    if (result == PRINTED && table != LINKED && o == NULL)
        result = FAILED;
    if (result == PRINTED)
        result = put(b, "{", 1);
    for (Py_ssize_t j = 0; result == PRINTED && j < n; j++) {
        Py_ssize_t i = o != NULL ? o->order[j] : j;
        if (j > 0)
            result = put(b, ", ", 2);
        if (result == PRINTED)
            result = put_text(b, p->keys[i]);
        if (result == PRINTED)
            result = put(b, "=", 1);
        if (result == PRINTED)
            result = put_scalar(b, p->items[i]);
    }
    if (result == PRINTED)
        result = put(b, "}", 1);
    for (Py_ssize_t i = 0; i < got; i++) {
        Py_DECREF(p->keys[i]);
        Py_DECREF(p->items[i]);
    }
    return result;
}

/* The names of the fields of schema printed here (a tuple), or None: from the poll's
 * cache or asked of Python; a borrowed reference (the cache holds it), NULL on error. */
static PyObject *struct_names(Printer *p, PyObject *schema) {
    for (int k = 0; k < SCHEMAS; k++)
        if (p->fields[k].schema == schema)
            return p->fields[k].names;
    PyObject *names = PyObject_CallOneArg(p->struct_names, schema);
    if (names == NULL)
        return NULL;
    if (names != Py_None && !PyTuple_CheckExact(names)) {
        Py_DECREF(names);
        PyErr_SetString(PyExc_TypeError, "struct field names must be a tuple or None");
        return NULL;
    }
    for (Py_ssize_t i = 0; names != Py_None && i < PyTuple_GET_SIZE(names); i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(names, i))) {
            Py_DECREF(names);
            PyErr_SetString(PyExc_TypeError, "a struct field name must be a str");
            return NULL;
        }
    }
    Fields *f = &p->fields[p->next_fields];
    Py_XSETREF(f->schema, Py_NewRef(schema));
    Py_XSETREF(f->names, names);
    p->next_fields = (p->next_fields + 1) % SCHEMAS;
    return names;
}

/* Struct.toString of a struct (a dict) under schema: Struct{a=1,b=x}, the fields in the
 * schema's order, those without a value left out. */
static int put_struct(Buffer *b, Printer *p, PyObject *value, PyObject *schema) {
    PyObject *names = struct_names(p, schema);
    if (names == NULL)
        return FAILED;
    if (names == Py_None)
        return UNHANDLED;
    names = Py_NewRef(names); /* the cache may drop it if a field's lookup runs Python */
    int result = put(b, "Struct{", 7), first = 1;
    for (Py_ssize_t i = 0; result == PRINTED && i < PyTuple_GET_SIZE(names); i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        PyObject *item = PyDict_GetItemWithError(value, name);
        if (item == NULL && PyErr_Occurred()) {
            result = FAILED;
            break;
        }
        if (item == NULL || item == Py_None)
            continue;
        if (!is_scalar(item)) {
            result = UNHANDLED;
            break;
        }
        Py_INCREF(item);
        if (!first)
            result = put(b, ",", 1);
        first = 0;
        if (result == PRINTED)
            result = put_text(b, name);
        if (result == PRINTED)
            result = put(b, "=", 1);
        if (result == PRINTED)
            result = put_scalar(b, item);
        Py_DECREF(item);
    }
    if (result == PRINTED)
        result = put(b, "}", 1);
    Py_DECREF(names);
    return result;
}

/* One value in C, or UNHANDLED. */
static int put_value(Buffer *b, Printer *p, PyObject *value, PyObject *schema) {
    if (schema != Py_None)
        return PyDict_CheckExact(value) ? put_struct(b, p, value, schema) : UNHANDLED;
    if (PyDict_CheckExact(value))
        return put_map(b, p, value, DEFAULT_TABLE);
    if (Py_IS_TYPE(value, (PyTypeObject *)p->hash_map)) {
        Py_ssize_t table = table_of(value);
        return table > 0 ? put_map(b, p, value, table) : UNHANDLED;
    }
    if (Py_IS_TYPE(value, (PyTypeObject *)p->linked))
        return put_map(b, p, value, LINKED);
    return put_scalar(b, value);
}

static int put_reference(Buffer *b, PyObject *print, PyObject *value, PyObject *schema) {
    PyObject *text = PyObject_CallFunctionObjArgs(print, value, schema, NULL);
    if (text == NULL)
        return FAILED;
    int result;
    if (PyUnicode_Check(text)) {
        result = put_text(b, text);
    } else {
        PyErr_Format(PyExc_TypeError, "a printed value must be str, not %.100s",
                     Py_TYPE(text)->tp_name);
        result = FAILED;
    }
    Py_DECREF(text);
    return result;
}

static PyObject *java_lines(PyObject *module, PyObject *args) {
    PyObject *values, *schemas, *print, *order, *names, *hash_map, *linked;
    if (!PyArg_ParseTuple(args, "O!O!OOOO!O!:java_lines", &PyList_Type, &values,
                          &PyList_Type, &schemas, &print, &order, &names, &PyType_Type,
                          &hash_map, &PyType_Type, &linked))
        return NULL;
    Buffer b = {NULL, 0, 0};
    Printer p = {.order_of = order, .struct_names = names, .hash_map = hash_map,
                 .linked = linked};
    int result = PRINTED;
    /* sizes are read again each time: the Python reference may run any code */
    for (Py_ssize_t i = 0; result == PRINTED && i < PyList_GET_SIZE(values); i++) {
        if (i >= PyList_GET_SIZE(schemas)) {
            result = IN_PYTHON;
            break;
        }
        PyObject *value = Py_NewRef(PyList_GET_ITEM(values, i));
        PyObject *schema = Py_NewRef(PyList_GET_ITEM(schemas, i));
        Py_ssize_t start = b.len;
        result = put_value(&b, &p, value, schema);
        if (result == UNHANDLED) {
            b.len = start; /* a map may have been printed in part */
            result = put_reference(&b, print, value, schema);
        }
        if (result == PRINTED)
            result = put(&b, "\n", 1);
        Py_DECREF(value);
        Py_DECREF(schema);
    }
    if (result == PRINTED && PyList_GET_SIZE(schemas) != PyList_GET_SIZE(values))
        result = IN_PYTHON;
    for (int k = 0; k < ORDERS; k++)
        forget(&p.orders[k]);
    for (int k = 0; k < SCHEMAS; k++) {
        Py_XDECREF(p.fields[k].schema);
        Py_XDECREF(p.fields[k].names);
    }
    PyMem_Free(p.keys);
    PyMem_Free(p.items);
    PyObject *lines = NULL;
    if (result == PRINTED)
        lines = PyBytes_FromStringAndSize(b.data ? b.data : "", b.len);
    else if (result == IN_PYTHON)
        lines = Py_NewRef(Py_None);
    PyMem_Free(b.data);
    return lines;
}

static PyMethodDef methods[] = {
    {"java_lines", java_lines, METH_VARARGS,
     "java_lines(values, schemas, print, order_of, struct_names, JavaHashMap, "
     "LinkedHashMap): each value printed and a newline, as UTF-8 bytes; None when the "
     "poll must be printed in Python.\n\n"
     "print(value, schema) prints a value this module does not; order_of(keys[, table]) "
     "gives the positions of a map's keys in Java's HashMap order (a plain dict's: the "
     "default table); struct_names(schema) gives the names of a struct schema's fields "
     "when this module prints its structs, else None."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_text",
    "A poll's values printed as Java's String.valueOf, as UTF-8 lines.", -1, methods,
};

PyMODINIT_FUNC PyInit__text(void) {
    if (table_name == NULL && (table_name = PyUnicode_InternFromString("table")) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
