/*
 * kanal_worker.native._maps: a poll's schemaless maps rebuilt by per-key-set plans.
 *
 * InsertField, ReplaceField and Cast turn each schemaless map into a new JavaHashMap
 * whose keys, items and table follow from the map's key set and table alone (plus the
 * transform's configuration), and, for Cast, from each item's type. In Python that is
 * a Java-order copy, a dict update and a cast lookup per map and item, most of a sink
 * task's CPU on such a chain. Here each transform gives a plan per key set (made and
 * cached in Python; records of a topic mostly share their keys, and orjson and the
 * transforms reuse the key objects, so a pointer comparison usually finds the plan again)
 * and the maps are built in C.
 *
 * A plan is a tuple (names, sources, constants, casts, table): output item j is named
 * names[j] and holds the input map's item at position sources[j] (in the map's insertion
 * order), or constants[j] when sources[j] is -1, cast to casts[j] when that is not 0
 * (the codes below); the new map is a JavaHashMap of that table. Items are set in order,
 * as dict.update does, so a name given twice keeps its first place and its last item.
 * A new map starts as a copy of a dict of the plan's names (one table of the right size,
 * filled in order) whose items are then replaced. A JavaHashMap the transform chain owns
 * (ConvertedBatch.chain_owned) whose keys begin the names, in order, is changed in place
 * instead, as JavaHashMap.copy_or_reuse reuses it.
 *
 * Only the schemaless casts that cannot fail are done here (what Cast's _EXACT_CASTS
 * does: Java's narrowing of longs and doubles, Long.toString, Double.toString through
 * the Python reference); a value of another type, a failing conversion, a row with a
 * schema, a map of another class, or a key set without plan goes to the caller's
 * fallback for that row, which runs the transform's per-value Python and raises exactly
 * as it does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* PyMember_GetOne, PyMember_SetOne */
#include <math.h>
#include <stdint.h>

/* casts[j]: Cast's target types (kanal_worker.transforms.cast.NATIVE_CASTS) */
enum { NO_CAST, TO_INT8, TO_INT16, TO_INT32, TO_INT64, TO_FLOAT32, TO_FLOAT64, TO_STRING,
       TO_OTHER /* only null is cast here (to null) */ };

#define LINKED (-1) /* the table key of a LinkedHashMap: insertion order, no table */
#define CACHED 8    /* key sets a call keeps plans for */

typedef struct {
    PyObject *keys;   /* tuple: the input key set, in insertion order; NULL: slot unused */
    Py_ssize_t table; /* the input's table, or LINKED */
    PyObject *plan;   /* the plan tuple, or None: every map of this key set falls back */
    Py_ssize_t size;  /* items of the new map */
    PyObject **names, **constants;
    Py_ssize_t *sources;
    int *casts;
    PyObject *new_table;
    PyObject *layout; /* a dict of the names (items None): each new map starts as its copy */
    PyObject **made;  /* the new items of the map being rebuilt */
    int in_place;     /* the input's keys begin the names, in order, each keeping its
                         item or taking a constant: an owned JavaHashMap may be changed */
} Plan;

typedef struct {
    PyObject *plan_for, *fallback, *double_to_string;
    int owned; /* nobody else holds the maps (ConvertedBatch.chain_owned) */
    PyTypeObject *java_hash_map, *linked_hash_map;
    PyMemberDef *table_member; /* JavaHashMap's "table" slot */
    Plan plans[CACHED];
    int next; /* the slot the next new plan takes */
    int last; /* the slot that served the last map */
} Rebuild;

static PyObject *empty_args; /* () for dict's tp_new */

static void forget(Plan *p) {
    Py_CLEAR(p->keys);
    Py_CLEAR(p->plan);
    PyMem_Free(p->sources);
    PyMem_Free(p->casts);
    PyMem_Free(p->made);
    p->sources = NULL;
    p->casts = NULL;
    p->made = NULL;
    Py_CLEAR(p->layout);
    p->names = p->constants = NULL; /* borrowed from the plan tuple */
    p->new_table = NULL;
}

/* Whether a map's keys (its first n, read by PyDict_Next) are the key set ``keys``;
   ``items`` gets the map's items. Pointers decide, then str equality. */
static int same_keys(PyObject *map, PyObject *keys, PyObject **items) {
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *item;
    while (PyDict_Next(map, &pos, &key, &item)) {
        PyObject *known = PyTuple_GET_ITEM(keys, i);
        if (key != known && !(PyUnicode_CheckExact(key) && PyUnicode_CheckExact(known) &&
                              PyUnicode_Compare(key, known) == 0))
            return 0;
        items[i++] = item;
    }
    return 1;
}

static int read_plan(Plan *p, PyObject *plan) {
    if (plan == Py_None) {
        p->size = 0;
        return 0;
    }
    if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) != 5)
        goto malformed;
    PyObject *names = PyTuple_GET_ITEM(plan, 0), *sources = PyTuple_GET_ITEM(plan, 1),
             *constants = PyTuple_GET_ITEM(plan, 2), *casts = PyTuple_GET_ITEM(plan, 3),
             *table = PyTuple_GET_ITEM(plan, 4);
    if (!PyTuple_Check(names) || !PyTuple_Check(sources) || !PyTuple_Check(constants) ||
        !PyTuple_Check(casts) || !PyLong_CheckExact(table))
        goto malformed;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (PyTuple_GET_SIZE(sources) != n || PyTuple_GET_SIZE(constants) != n ||
        PyTuple_GET_SIZE(casts) != n)
        goto malformed;
    p->size = n;
    p->names = &PyTuple_GET_ITEM(names, 0);
    p->constants = &PyTuple_GET_ITEM(constants, 0);
    p->new_table = table;
    p->sources = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    p->casts = PyMem_Malloc(sizeof(int) * (size_t)(n ? n : 1));
    p->made = PyMem_Malloc(sizeof(PyObject *) * (size_t)(n ? n : 1));
    if (p->sources == NULL || p->casts == NULL || p->made == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t inputs = PyTuple_GET_SIZE(p->keys);
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t source = PyLong_AsSsize_t(PyTuple_GET_ITEM(sources, j));
        long cast = PyLong_AsLong(PyTuple_GET_ITEM(casts, j));
        if (PyErr_Occurred())
            return -1;
        if (source < -1 || source >= inputs || cast < NO_CAST || cast > TO_OTHER)
            goto malformed;
        p->sources[j] = source;
        p->casts[j] = (int)cast;
    }
    p->in_place = n >= inputs;
    for (Py_ssize_t j = 0; j < inputs && p->in_place; j++)
        p->in_place = p->names[j] == PyTuple_GET_ITEM(p->keys, j) &&
                      (p->sources[j] == j || p->sources[j] == -1);
    p->layout = PyDict_New();
    if (p->layout == NULL)
        return -1;
    for (Py_ssize_t j = 0; j < n; j++)
        if (PyDict_SetItem(p->layout, p->names[j], Py_None) < 0)
            return -1;
    return 0;
malformed:
    PyErr_SetString(PyExc_TypeError,
                    "a map plan is (names, sources, constants, casts, table): tuples of one "
                    "length, sources and casts in range, and an int");
    return -1;
}

/* The plan for a map of n items in ``table``, from the cache or asked of Python; NULL
   with an exception set on failure. ``items`` gets the map's items. */
static Plan *plan_of(Rebuild *r, PyObject *map, Py_ssize_t n, Py_ssize_t table,
                     PyObject **items) {
    for (int k = 0; k < CACHED; k++) {
        Plan *p = &r->plans[(r->last + k) % CACHED];
        if (p->keys != NULL && p->table == table && PyTuple_GET_SIZE(p->keys) == n &&
            same_keys(map, p->keys, items)) {
            r->last = (r->last + k) % CACHED;
            return p;
        }
    }
    PyObject *keys = PyTuple_New(n);
    if (keys == NULL)
        return NULL;
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *item;
    while (PyDict_Next(map, &pos, &key, &item))
        PyTuple_SET_ITEM(keys, i++, Py_NewRef(key));
    PyObject *table_arg = table == LINKED ? Py_NewRef(Py_None) : PyLong_FromSsize_t(table);
    if (table_arg == NULL) {
        Py_DECREF(keys);
        return NULL;
    }
    PyObject *plan = PyObject_CallFunctionObjArgs(r->plan_for, keys, table_arg, NULL);
    Py_DECREF(table_arg);
    if (plan == NULL) {
        Py_DECREF(keys);
        return NULL;
    }
    Plan *p = &r->plans[r->next];
    forget(p);
    p->keys = keys;
    p->table = table;
    p->plan = plan;
    if (read_plan(p, plan) < 0) {
        forget(p);
        return NULL;
    }
    r->last = r->next;
    r->next = (r->next + 1) % CACHED;
    /* plan_for ran Python: read the items again rather than trust what was read before */
    same_keys(map, keys, items);
    return p;
}

#define FALLBACK ((PyObject *)1) /* a cast not done here: the row goes to the fallback */

/* Java's (byte), (short), (int) of a long, or the long itself */
static int64_t narrowed(int64_t value, int code) {
    switch (code) {
    case TO_INT8: return (int8_t)(uint8_t)((uint64_t)value & 0xff);
    case TO_INT16: return (int16_t)(uint16_t)((uint64_t)value & 0xffff);
    case TO_INT32: return (int32_t)(uint32_t)((uint64_t)value & 0xffffffff);
    default: return value;
    }
}

/* Number.longValue() (or intValue() below 64 bits, then narrowed) of a double: NaN is
   0, values beyond the range saturate. */
static int64_t double_to_long(double value, int code) {
    if (isnan(value))
        return 0;
    if (code == TO_INT64) {
        if (value <= -9223372036854775808.0)
            return INT64_MIN;
        if (value >= 9223372036854775808.0)
            return INT64_MAX;
        return (int64_t)value;
    }
    int64_t whole = value <= -2147483648.0 ? INT32_MIN
                    : value >= 2147483647.0 ? INT32_MAX : (int64_t)value;
    return narrowed(whole, code);
}

/* ``value`` cast to ``code`` as Cast's _EXACT_CASTS does (a new reference), FALLBACK
   when it is not done here, NULL with an exception set on failure. */
static PyObject *cast(Rebuild *r, PyObject *value, int code) {
    if (value == Py_None)
        return Py_NewRef(Py_None);
    if (PyLong_CheckExact(value)) {
        switch (code) {
        case TO_INT8: case TO_INT16: case TO_INT32: case TO_INT64: {
            int overflow;
            long long whole = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow)
                return FALLBACK; /* beyond a long: Python wraps it */
            if (whole == -1 && PyErr_Occurred())
                return NULL;
            return PyLong_FromLongLong(narrowed(whole, code));
        }
        case TO_FLOAT32: case TO_FLOAT64: {
            double number = PyLong_AsDouble(value);
            if (number == -1.0 && PyErr_Occurred()) {
                PyErr_Clear(); /* too big for a double: Python raises its own error */
                return FALLBACK;
            }
            return PyFloat_FromDouble(code == TO_FLOAT32 ? (double)(float)number : number);
        }
        case TO_STRING: {
            PyObject *text = PyObject_Str(value);
            if (text == NULL)
                PyErr_Clear(); /* past the digit limit: Python raises its own error */
            return text != NULL ? text : FALLBACK;
        }
        default:
            return FALLBACK;
        }
    }
    if (PyFloat_CheckExact(value)) {
        double number = PyFloat_AS_DOUBLE(value);
        switch (code) {
        case TO_INT8: case TO_INT16: case TO_INT32: case TO_INT64:
            return PyLong_FromLongLong(double_to_long(number, code));
        case TO_FLOAT32:
            return PyFloat_FromDouble((double)(float)number);
        case TO_FLOAT64:
            return Py_NewRef(value);
        case TO_STRING:
            return PyObject_CallOneArg(r->double_to_string, value);
        default:
            return FALLBACK;
        }
    }
    if (PyUnicode_CheckExact(value) && code == TO_STRING)
        return Py_NewRef(value);
    return FALLBACK;
}

static void release(PyObject **objects, Py_ssize_t from, Py_ssize_t to) {
    for (Py_ssize_t j = from; j < to; j++)
        Py_DECREF(objects[j]);
}

/* The items of the new map by plan ``p`` into p->made (new references): 0, FALLBACK's
   1, or -1 with an exception set (nothing is held then). All are made before any map
   changes, so that a row falling back finds its map as it was. */
static int made_items(Rebuild *r, Plan *p, PyObject **items) {
    for (Py_ssize_t j = 0; j < p->size; j++) {
        Py_ssize_t source = p->sources[j];
        PyObject *item = source < 0 ? p->constants[j] : items[source];
        if (p->casts[j] == NO_CAST) {
            p->made[j] = Py_NewRef(item);
            continue;
        }
        PyObject *cast_item = cast(r, item, p->casts[j]);
        if (cast_item == NULL || cast_item == FALLBACK) {
            release(p->made, 0, j);
            return cast_item == NULL ? -1 : 1;
        }
        p->made[j] = cast_item;
    }
    return 0;
}

/* ``map`` (a JavaHashMap nobody else holds, whose keys begin the plan's names in order)
   with the new items set in place, as ``JavaHashMap.copy_or_reuse`` reuses it. */
static PyObject *changed(Rebuild *r, Plan *p, PyObject *map, PyObject **items) {
    Py_ssize_t inputs = PyTuple_GET_SIZE(p->keys);
    for (Py_ssize_t j = 0; j < p->size; j++) {
        if (j < inputs && p->made[j] == items[j]) {
            Py_DECREF(p->made[j]); /* the item it holds already */
            continue;
        }
        int failed = PyDict_SetItem(map, p->names[j], p->made[j]);
        Py_DECREF(p->made[j]);
        if (failed) {
            release(p->made, j + 1, p->size);
            return NULL;
        }
    }
    if (PyMember_SetOne((char *)map, r->table_member, p->new_table) < 0)
        return NULL;
    return Py_NewRef(map);
}

/* The new map of ``items`` by plan ``p`` (``map`` itself, changed, when it is ``owned``
   and the plan allows), FALLBACK, or NULL with an exception set. */
static PyObject *rebuilt(Rebuild *r, Plan *p, PyObject *map, PyObject **items, int owned) {
    int outcome = made_items(r, p, items);
    if (outcome != 0)
        return outcome < 0 ? NULL : FALLBACK;
    if (owned && p->in_place && Py_TYPE(map) == r->java_hash_map)
        return changed(r, p, map, items);
    PyObject *made = PyDict_Type.tp_new(r->java_hash_map, empty_args, NULL);
    /* the layout's copy (one block, sized once), whose items are then replaced in place:
       cheaper than growing the table item by item */
    if (made == NULL || PyDict_Update(made, p->layout) < 0) {
        Py_XDECREF(made);
        release(p->made, 0, p->size);
        return NULL;
    }
    for (Py_ssize_t j = 0; j < p->size; j++) {
        int failed = PyDict_SetItem(made, p->names[j], p->made[j]);
        Py_DECREF(p->made[j]);
        if (failed) {
            release(p->made, j + 1, p->size);
            Py_DECREF(made);
            return NULL;
        }
    }
    if (PyMember_SetOne((char *)made, r->table_member, p->new_table) < 0) {
        Py_DECREF(made);
        return NULL;
    }
    return made;
}

/* The table key of a map rebuilt here, or 0 when its row falls back (a map of another
   class, or a JavaHashMap whose table is not a plain int); -2 with an exception set. */
static Py_ssize_t table_key(Rebuild *r, PyObject *value) {
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyDict_Type)
        return 16; /* new HashMap<>() */
    if (type == r->linked_hash_map)
        return LINKED;
    if (type != r->java_hash_map)
        return 0;
    PyObject *table = PyMember_GetOne((char *)value, r->table_member);
    if (table == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -2;
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t size = PyLong_CheckExact(table) ? PyLong_AsSsize_t(table) : 0;
    Py_DECREF(table);
    if (size == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return size > 0 ? size : 0;
}

static PyObject *row(Rebuild *r, PyObject *value, PyObject *schema, Py_ssize_t index,
                     PyObject ***items, Py_ssize_t *capacity) {
    if (value == Py_None)
        return Py_NewRef(Py_None);
    if (schema == Py_None) {
        Py_ssize_t table = table_key(r, value);
        if (table == -2)
            return NULL;
        if (table != 0) {
            Py_ssize_t n = PyDict_GET_SIZE(value);
            if (n > *capacity) {
                PyObject **grown = PyMem_Realloc(*items, sizeof(PyObject *) * (size_t)n);
                if (grown == NULL)
                    return PyErr_NoMemory();
                *items = grown;
                *capacity = n;
            }
            Plan *p = plan_of(r, value, n, table, *items);
            if (p == NULL)
                return NULL;
            if (p->plan != Py_None) {
                PyObject *made = rebuilt(r, p, value, *items, r->owned);
                if (made != FALLBACK)
                    return made;
            }
        }
    }
    PyObject *at = PyLong_FromSsize_t(index);
    if (at == NULL)
        return NULL;
    PyObject *result = PyObject_CallOneArg(r->fallback, at);
    Py_DECREF(at);
    return result;
}

static PyObject *rebuild(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "rebuild(values, schemas, owned, plan_for, fallback, JavaHashMap, "
                        "LinkedHashMap, double_to_string)");
        return NULL;
    }
    PyObject *values = args[0], *schemas = args[1];
    if (!PyList_Check(values) || !PyList_Check(schemas) || !PyBool_Check(args[2]) ||
        !PyType_Check(args[5]) || !PyType_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "values and schemas are lists, owned a bool, the maps types");
        return NULL;
    }
    Rebuild r = {.owned = args[2] == Py_True, .plan_for = args[3], .fallback = args[4],
                 .double_to_string = args[7], .java_hash_map = (PyTypeObject *)args[5],
                 .linked_hash_map = (PyTypeObject *)args[6]};
    if (!PyType_IsSubtype(r.java_hash_map, &PyDict_Type)) {
        PyErr_SetString(PyExc_TypeError, "JavaHashMap is a dict");
        return NULL;
    }
    PyObject *slot = PyObject_GetAttrString(args[5], "table");
    if (slot == NULL)
        return NULL;
    if (!Py_IS_TYPE(slot, &PyMemberDescr_Type)) {
        Py_DECREF(slot);
        PyErr_SetString(PyExc_TypeError, "JavaHashMap's table is a slot");
        return NULL;
    }
    r.table_member = ((PyMemberDescrObject *)slot)->d_member; /* lives with the type */
    Py_DECREF(slot);

    PyObject **items = NULL;
    Py_ssize_t capacity = 0;
    PyObject *result = PyList_New(0);
    for (Py_ssize_t i = 0; result != NULL && i < PyList_GET_SIZE(values); i++) {
        if (i >= PyList_GET_SIZE(schemas)) {
            PyErr_SetString(PyExc_ValueError, "values and schemas differ in length");
            Py_CLEAR(result);
            break;
        }
        PyObject *value = Py_NewRef(PyList_GET_ITEM(values, i));
        PyObject *schema = Py_NewRef(PyList_GET_ITEM(schemas, i));
        PyObject *updated = row(&r, value, schema, i, &items, &capacity);
        Py_DECREF(value);
        Py_DECREF(schema);
        if (updated == NULL || PyList_Append(result, updated) < 0)
            Py_CLEAR(result);
        Py_XDECREF(updated);
    }
    if (result != NULL && PyList_GET_SIZE(schemas) != PyList_GET_SIZE(values)) {
        PyErr_SetString(PyExc_ValueError, "values and schemas differ in length");
        Py_CLEAR(result);
    }
    PyMem_Free(items);
    for (int k = 0; k < CACHED; k++)
        forget(&r.plans[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"rebuild", (PyCFunction)(void (*)(void))rebuild, METH_FASTCALL,
     "rebuild(values, schemas, owned, plan_for, fallback, JavaHashMap, LinkedHashMap, "
     "double_to_string) -> list\n\n"
     "The new values of a column: None stays None; a schemaless dict, JavaHashMap or "
     "LinkedHashMap is rebuilt by plan_for(keys, table or None) (a plan tuple, or None "
     "for none), an owned JavaHashMap changed in place where the plan allows; every "
     "other row is fallback(index)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_maps",
    "A poll's schemaless maps rebuilt by per-key-set plans (InsertField, ReplaceField, "
    "Cast).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__maps(void) {
    empty_args = PyTuple_New(0);
    if (empty_args == NULL)
        return NULL;
    return PyModule_Create(&module);
}
