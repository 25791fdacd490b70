/*
 * kanal_worker.native._fetch: a whole poll of a confluent-kafka Consumer as a few buffers.
 *
 * confluent-kafka builds a Message object, a topic str and key and value bytes for every
 * record; a sink task then reads them back one by one. This module reads the same records
 * straight out of the librdkafka instance the Consumer runs: the task forwards each
 * assigned partition's queue to one application queue (librdkafka then leaves that queue
 * alone when it starts fetching: RD_KAFKA_Q_F_FWD_APP) and consumes it here, copying keys
 * and values into one contiguous buffer each. Group membership, rebalances, commits and
 * pause/resume stay with the Consumer.
 *
 * The few librdkafka symbols are resolved with dlsym in the library the Consumer already
 * loaded (RTLD_NOLOAD), so both use one instance; their prototypes and rd_kafka_message_t
 * are declared here from librdkafka's public, ABI-stable rdkafka.h, which keeps the build
 * free of a librdkafka development package.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;
typedef int rd_kafka_resp_err_t;
typedef struct rd_kafka_message_s {
    rd_kafka_resp_err_t err;
    rd_kafka_topic_t *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rd_kafka_message_t;

#define RD_KAFKA_RESP_ERR__PARTITION_EOF (-191)

static struct {
    void *(*opaque)(const rd_kafka_t *);
    rd_kafka_queue_t *(*queue_new)(rd_kafka_t *);
    rd_kafka_queue_t *(*queue_get_partition)(rd_kafka_t *, const char *, int32_t);
    void (*queue_forward)(rd_kafka_queue_t *, rd_kafka_queue_t *);
    void (*queue_destroy)(rd_kafka_queue_t *);
    ssize_t (*consume_batch_queue)(rd_kafka_queue_t *, int, rd_kafka_message_t **, size_t);
    void (*message_destroy)(rd_kafka_message_t *);
    const char *(*topic_name)(const rd_kafka_topic_t *);
    int64_t (*message_timestamp)(const rd_kafka_message_t *, int *);
    rd_kafka_resp_err_t (*message_headers)(const rd_kafka_message_t *, rd_kafka_headers_t **);
    size_t (*header_cnt)(const rd_kafka_headers_t *);
    rd_kafka_resp_err_t (*header_get_all)(const rd_kafka_headers_t *, size_t, const char **,
                                          const void **, size_t *);
    const char *(*err2str)(rd_kafka_resp_err_t);
} rd;

static int resolved = 0;

static int resolve(const char *path) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL) {
        PyErr_Format(PyExc_RuntimeError, "librdkafka %s is not loaded in this process", path);
        return -1;
    }
#define SYM(field, name)                                                                 \
    if ((*(void **)&rd.field = dlsym(lib, name)) == NULL) {                              \
        PyErr_Format(PyExc_RuntimeError, "librdkafka %s has no %s", path, name);         \
        return -1;                                                                       \
    }
    SYM(opaque, "rd_kafka_opaque")
    SYM(queue_new, "rd_kafka_queue_new")
    SYM(queue_get_partition, "rd_kafka_queue_get_partition")
    SYM(queue_forward, "rd_kafka_queue_forward")
    SYM(queue_destroy, "rd_kafka_queue_destroy")
    SYM(consume_batch_queue, "rd_kafka_consume_batch_queue")
    SYM(message_destroy, "rd_kafka_message_destroy")
    SYM(topic_name, "rd_kafka_topic_name")
    SYM(message_timestamp, "rd_kafka_message_timestamp")
    SYM(message_headers, "rd_kafka_message_headers")
    SYM(header_cnt, "rd_kafka_header_cnt")
    SYM(header_get_all, "rd_kafka_header_get_all")
    SYM(err2str, "rd_kafka_err2str")
#undef SYM
    resolved = 1;
    return 0;
}

/* confluent-kafka's Handle (src/confluent_kafka/src/confluent_kafka.h) starts with the
 * client; the client's opaque is the Handle itself, which attach() checks before use. */
typedef struct {
    PyObject_HEAD
    rd_kafka_t *rk;
} HandleHead;

/* ---- Column: the keys or the values of a poll, Arrow-like ------------------------- */

/* A poll's buffers are filled with the GIL released, so they come from malloc, not
 * PyMem (whose allocators need the GIL). */
typedef struct {
    char *data;
    size_t used, size;
    int64_t *offsets; /* count + 1 */
    uint8_t *present; /* 0: None */
} Column;

static int column_init(Column *c, size_t count) {
    c->used = 0;
    c->size = 0;
    c->data = NULL;
    c->offsets = calloc(count + 1, sizeof(int64_t));
    c->present = calloc(count ? count : 1, 1);
    return c->offsets && c->present ? 0 : -1;
}

static int column_add(Column *c, size_t i, const void *bytes, size_t len) {
    if (bytes != NULL) {
        if (c->used + len > c->size) {
            size_t size = (c->used + len) * 2 + 4096;
            char *grown = realloc(c->data, size);
            if (grown == NULL)
                return -1;
            c->data = grown;
            c->size = size;
        }
        memcpy(c->data + c->used, bytes, len);
        c->used += len;
        c->present[i] = 1;
    }
    c->offsets[i + 1] = (int64_t)c->used;
    return 0;
}

static void column_free(Column *c) {
    free(c->data);
    free(c->offsets);
    free(c->present);
}

/* ---- Poll --------------------------------------------------------------------------- */

/* Where each record came from stays in C arrays: most sinks read none of it per record
 * (the runtime asks for each partition's last offset and the runs of one topic), and
 * the lists a plugin reads are made when first asked for. */
typedef struct {
    PyObject_HEAD
    Py_ssize_t count;
    PyObject *topic_names;  /* list: the str of each topic index of the poll */
    int32_t *topic_of;      /* per record, an index into topic_names */
    int32_t *partitions;
    int64_t *offsets;
    int64_t *timestamps;
    int32_t *timestamp_types;
    PyObject *headers, *errors;
    Column keys, values;
} Poll;

static void poll_dealloc(Poll *self) {
    Py_XDECREF(self->topic_names);
    Py_XDECREF(self->headers);
    Py_XDECREF(self->errors);
    free(self->topic_of);
    free(self->partitions);
    free(self->offsets);
    free(self->timestamps);
    free(self->timestamp_types);
    column_free(&self->keys);
    column_free(&self->values);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t poll_len(Poll *self) { return self->count; }

static int check_range(Poll *self, Py_ssize_t *start, Py_ssize_t *end) {
    if (*end < 0 || *end > self->count)
        *end = self->count;
    if (*start < 0 || *start > *end) {
        PyErr_SetString(PyExc_IndexError, "poll range out of bounds");
        return -1;
    }
    return 0;
}

static PyObject *column_list(Poll *self, Column *c, PyObject *args) {
    Py_ssize_t start = 0, end = -1;
    if (!PyArg_ParseTuple(args, "|nn", &start, &end) || check_range(self, &start, &end))
        return NULL;
    PyObject *list = PyList_New(end - start);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = start; i < end; i++) {
        PyObject *item;
        if (c->present[i]) {
            item = PyBytes_FromStringAndSize(c->data + c->offsets[i],
                                             c->offsets[i + 1] - c->offsets[i]);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
        } else {
            item = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(list, i - start, item);
    }
    return list;
}

static PyObject *poll_keys(Poll *self, PyObject *args) {
    return column_list(self, &self->keys, args);
}

static PyObject *poll_values(Poll *self, PyObject *args) {
    return column_list(self, &self->values, args);
}

static PyObject *poll_topics(Poll *self, PyObject *unused) {
    PyObject *list = PyList_New(self->count);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->count; i++)
        PyList_SET_ITEM(list, i,
                        Py_NewRef(PyList_GET_ITEM(self->topic_names, self->topic_of[i])));
    return list;
}

static PyObject *poll_partitions(Poll *self, PyObject *unused) {
    PyObject *list = PyList_New(self->count);
    for (Py_ssize_t i = 0; list != NULL && i < self->count; i++) {
        PyObject *item = PyLong_FromLong(self->partitions[i]);
        if (item == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *poll_offsets(Poll *self, PyObject *unused) {
    PyObject *list = PyList_New(self->count);
    for (Py_ssize_t i = 0; list != NULL && i < self->count; i++) {
        PyObject *item = PyLong_FromLongLong(self->offsets[i]);
        if (item == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *poll_timestamps(Poll *self, PyObject *unused) {
    PyObject *list = PyList_New(self->count);
    for (Py_ssize_t i = 0; list != NULL && i < self->count; i++) {
        PyObject *item = Py_BuildValue("(iL)", (int)self->timestamp_types[i],
                                       (long long)self->timestamps[i]);
        if (item == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* The end of each run of records of one topic-partition: [i, end). */
static Py_ssize_t partition_run_end(Poll *self, Py_ssize_t i) {
    Py_ssize_t end = i + 1;
    while (end < self->count && self->topic_of[end] == self->topic_of[i] &&
           self->partitions[end] == self->partitions[i])
        end++;
    return end;
}

static PyObject *poll_last_offsets(Poll *self, PyObject *unused) {
    PyObject *last = PyDict_New();
    for (Py_ssize_t i = 0, end; last != NULL && i < self->count; i = end) {
        end = partition_run_end(self, i);
        PyObject *key = Py_BuildValue("(Oi)", PyList_GET_ITEM(self->topic_names,
                                                              self->topic_of[i]),
                                      (int)self->partitions[i]);
        PyObject *offset = key ? PyLong_FromLongLong(self->offsets[end - 1]) : NULL;
        if (offset == NULL || PyDict_SetItem(last, key, offset) < 0)
            Py_CLEAR(last);
        Py_XDECREF(key);
        Py_XDECREF(offset);
    }
    return last;
}

static PyObject *poll_topic_runs(Poll *self, PyObject *unused) {
    PyObject *runs = PyList_New(0);
    for (Py_ssize_t i = 0, end; runs != NULL && i < self->count; i = end) {
        for (end = i + 1; end < self->count && self->topic_of[end] == self->topic_of[i]; end++)
            ;
        PyObject *run = Py_BuildValue("(Onn)", PyList_GET_ITEM(self->topic_names,
                                                               self->topic_of[i]), i, end);
        if (run == NULL || PyList_Append(runs, run) < 0)
            Py_CLEAR(runs);
        Py_XDECREF(run);
    }
    return runs;
}

/* The values of [start, end) joined: each followed by `suffix`, None written as `none`
 * (FileStreamSink's lines); or with `open`/`close` around and `sep` between (a JSON
 * array of a run of values, decoded in one call). */
static PyObject *poll_join_values(Poll *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"start", "end", "sep", "suffix", "none", "open", "close", NULL};
    Py_ssize_t start = 0, end = -1;
    const char *sep = "", *suffix = "", *none = "", *open = "", *close = "";
    Py_ssize_t sep_len = 0, suffix_len = 0, none_len = 0, open_len = 0, close_len = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|nny#y#y#y#y#", names, &start, &end, &sep,
                                     &sep_len, &suffix, &suffix_len, &none, &none_len, &open,
                                     &open_len, &close, &close_len) ||
        check_range(self, &start, &end))
        return NULL;
    Column *c = &self->values;
    Py_ssize_t n = end - start, size = open_len + close_len;
    if (n > 0) {
        size += (c->offsets[end] - c->offsets[start]) + n * suffix_len + (n - 1) * sep_len;
        for (Py_ssize_t i = start; i < end; i++)
            if (!c->present[i])
                size += none_len;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        return NULL;
    char *at = PyBytes_AS_STRING(out);
    memcpy(at, open, open_len);
    at += open_len;
    for (Py_ssize_t i = start; i < end; i++) {
        if (i > start) {
            memcpy(at, sep, sep_len);
            at += sep_len;
        }
        if (c->present[i]) {
            size_t len = c->offsets[i + 1] - c->offsets[i];
            memcpy(at, c->data + c->offsets[i], len);
            at += len;
        } else {
            memcpy(at, none, none_len);
            at += none_len;
        }
        memcpy(at, suffix, suffix_len);
        at += suffix_len;
    }
    memcpy(at, close, close_len);
    return out;
}

static PyObject *poll_value_buffer(Poll *self, PyObject *unused) {
    /* (data, offsets, present): the value column as three bytes objects */
    Column *c = &self->values;
    return Py_BuildValue("(y#y#y#)", c->data ? c->data : "", (Py_ssize_t)c->used,
                         (const char *)c->offsets, (Py_ssize_t)((self->count + 1) * 8),
                         (const char *)c->present, self->count);
}

static PyMethodDef poll_methods[] = {
    {"keys", (PyCFunction)poll_keys, METH_VARARGS,
     "keys([start, end]): the keys as bytes (None for a null key)"},
    {"values", (PyCFunction)poll_values, METH_VARARGS,
     "values([start, end]): the values as bytes (None for a tombstone)"},
    {"topics", (PyCFunction)poll_topics, METH_NOARGS,
     "the topic of each record (one str object per topic)"},
    {"partitions", (PyCFunction)poll_partitions, METH_NOARGS, "the partition of each record"},
    {"offsets", (PyCFunction)poll_offsets, METH_NOARGS, "the offset of each record"},
    {"timestamps", (PyCFunction)poll_timestamps, METH_NOARGS,
     "(type, ms) of each record, as Message.timestamp()"},
    {"last_offsets", (PyCFunction)poll_last_offsets, METH_NOARGS,
     "{(topic, partition): the offset of its last record}, in the order of their first "
     "records"},
    {"topic_runs", (PyCFunction)poll_topic_runs, METH_NOARGS,
     "[(topic, start, end)]: the runs of consecutive records of one topic"},
    {"join_values", (PyCFunction)(void (*)(void))poll_join_values,
     METH_VARARGS | METH_KEYWORDS, "a run of values joined into one bytes object"},
    {"value_buffer", (PyCFunction)poll_value_buffer, METH_NOARGS,
     "(data, int64 offsets, presence bytes) of the values"},
    {NULL},
};

#define POLL_MEMBER(name, doc) \
    {#name, T_OBJECT_EX, offsetof(Poll, name), READONLY, doc}
#include <structmember.h>
static PyMemberDef poll_members[] = {
    POLL_MEMBER(headers, "None when no record has headers, else each record's list of "
                         "(name, bytes) or None"),
    POLL_MEMBER(errors, "(topic, partition, offset, code, reason) of each consumer event "
                        "the poll returned instead of a record"),
    {"value_bytes", T_PYSSIZET, offsetof(Poll, values) + offsetof(Column, used), READONLY,
     "the bytes of all the values"},
    {NULL},
};

static PySequenceMethods poll_sequence = {.sq_length = (lenfunc)poll_len};

static PyTypeObject PollType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kanal_worker.native._fetch.Poll",
    .tp_basicsize = sizeof(Poll),
    .tp_dealloc = (destructor)poll_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The records of one native poll, column by column.",
    .tp_methods = poll_methods,
    .tp_members = poll_members,
    .tp_as_sequence = &poll_sequence,
};

/* ---- Fetcher ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *consumer; /* keeps the Handle (and so rk) alive */
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    PyObject *topic_names; /* dict: const char* address -> str, one str per topic */
} Fetcher;

static void fetcher_dealloc(Fetcher *self) {
    if (self->queue != NULL)
        rd.queue_destroy(self->queue);
    Py_XDECREF(self->consumer);
    Py_XDECREF(self->topic_names);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int fetcher_init(Fetcher *self, PyObject *args, PyObject *kwargs) {
    PyObject *consumer;
    const char *library;
    if (!PyArg_ParseTuple(args, "Os", &consumer, &library))
        return -1;
    if (!resolved && resolve(library) < 0)
        return -1;
    if (Py_TYPE(consumer)->tp_basicsize < (Py_ssize_t)sizeof(HandleHead)) {
        PyErr_SetString(PyExc_TypeError, "not a confluent_kafka client");
        return -1;
    }
    rd_kafka_t *rk = ((HandleHead *)consumer)->rk;
    if (rk == NULL || rd.opaque(rk) != (void *)consumer) {
        PyErr_SetString(PyExc_TypeError, "the client's layout is not confluent-kafka's Handle "
                                         "(its librdkafka opaque is not the client)");
        return -1;
    }
    self->rk = rk;
    self->queue = rd.queue_new(rk);
    self->topic_names = PyDict_New();
    if (self->queue == NULL || self->topic_names == NULL) {
        PyErr_SetString(PyExc_MemoryError, "no librdkafka queue");
        return -1;
    }
    self->consumer = Py_NewRef(consumer);
    return 0;
}

/* librdkafka wants every application queue destroyed before the client: the Consumer's
 * close() destroys it, so the fetcher is closed first. */
static PyObject *fetcher_close(Fetcher *self, PyObject *unused) {
    if (self->queue != NULL) {
        rd.queue_destroy(self->queue);
        self->queue = NULL;
    }
    Py_RETURN_NONE;
}

static int open_queue(Fetcher *self) {
    if (self->queue == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the fetcher is closed");
        return -1;
    }
    return 0;
}

static PyObject *forward(Fetcher *self, PyObject *args, int on) {
    const char *topic;
    int partition;
    if (!PyArg_ParseTuple(args, "si", &topic, &partition))
        return NULL;
    if (!on && self->queue == NULL) /* revoked by the Consumer's close() */
        Py_RETURN_FALSE;
    if (open_queue(self) < 0)
        return NULL;
    rd_kafka_queue_t *q = rd.queue_get_partition(self->rk, topic, partition);
    if (q == NULL)
        Py_RETURN_FALSE;
    rd.queue_forward(q, on ? self->queue : NULL);
    rd.queue_destroy(q);
    Py_RETURN_TRUE;
}

static PyObject *fetcher_forward(Fetcher *self, PyObject *args) { return forward(self, args, 1); }
static PyObject *fetcher_unforward(Fetcher *self, PyObject *args) { return forward(self, args, 0); }

static PyObject *topic_str(Fetcher *self, const rd_kafka_topic_t *rkt) {
    const char *name = rd.topic_name(rkt);
    PyObject *key = PyLong_FromVoidPtr((void *)name);
    if (key == NULL)
        return NULL;
    PyObject *found = PyDict_GetItemWithError(self->topic_names, key);
    if (found == NULL && !PyErr_Occurred()) {
        found = PyUnicode_FromString(name);
        if (found != NULL && PyDict_SetItem(self->topic_names, key, found) < 0)
            Py_CLEAR(found);
        Py_DECREF(key);
        return found;
    }
    Py_DECREF(key);
    return Py_XNewRef(found);
}

static PyObject *message_headers(rd_kafka_headers_t *hdrs) {
    size_t n = rd.header_cnt(hdrs);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        const char *name;
        const void *value;
        size_t size;
        rd.header_get_all(hdrs, i, &name, &value, &size);
        PyObject *item = value == NULL
                             ? Py_BuildValue("(sO)", name, Py_None)
                             : Py_BuildValue("(sy#)", name, (const char *)value,
                                             (Py_ssize_t)size);
        if (item == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

/* What copy_records found that needs Python objects: the distinct topic handles (in the
 * order of the topic indexes), whether any consumer event or record header came. */
typedef struct {
    const rd_kafka_topic_t **topics;
    int32_t topic_count, topic_size;
    int events, with_headers;
} Copied;

static int32_t topic_index(Copied *copied, const rd_kafka_topic_t *rkt) {
    for (int32_t t = copied->topic_count - 1; t >= 0; t--)
        if (copied->topics[t] == rkt)
            return t;
    if (copied->topic_count == copied->topic_size) {
        int32_t size = copied->topic_size * 2 + 4;
        const rd_kafka_topic_t **grown = realloc(copied->topics, sizeof(*grown) * size);
        if (grown == NULL)
            return -1;
        copied->topics = grown;
        copied->topic_size = size;
    }
    copied->topics[copied->topic_count] = rkt;
    return copied->topic_count++;
}

/* The records' columns, copied without Python objects (so without the GIL); -1 when out
 * of memory. */
static int copy_records(Poll *poll, rd_kafka_message_t **msgs, ssize_t n, Copied *copied) {
    Py_ssize_t count = 0;
    const rd_kafka_topic_t *last_rkt = NULL;
    int32_t last_topic = -1;
    for (ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        if (m->err) {
            copied->events = 1;
            continue;
        }
        if (m->rkt != last_rkt) {
            last_topic = topic_index(copied, m->rkt);
            if (last_topic < 0)
                return -1;
            last_rkt = m->rkt;
        }
        poll->topic_of[count] = last_topic;
        poll->partitions[count] = m->partition;
        poll->offsets[count] = m->offset;
        int type = 0;
        poll->timestamps[count] = rd.message_timestamp(m, &type);
        poll->timestamp_types[count] = type;
        if (column_add(&poll->keys, count, m->key, m->key_len) < 0 ||
            column_add(&poll->values, count, m->payload, m->len) < 0)
            return -1;
        rd_kafka_headers_t *hdrs = NULL;
        if (rd.message_headers(m, &hdrs) == 0 && hdrs != NULL)
            copied->with_headers = 1;
        count++;
    }
    poll->count = count;
    return 0;
}

/* The Python objects of a copied poll: its topics' str, its events and its headers. */
static int fill(Fetcher *self, Poll *poll, rd_kafka_message_t **msgs, ssize_t n,
                Copied *copied) {
    poll->topic_names = PyList_New(copied->topic_count);
    if (poll->topic_names == NULL)
        return -1;
    for (int32_t t = 0; t < copied->topic_count; t++) {
        PyObject *topic = topic_str(self, copied->topics[t]);
        if (topic == NULL)
            return -1;
        PyList_SET_ITEM(poll->topic_names, t, topic);
    }
    if (!copied->events && !copied->with_headers)
        return 0;
    if (copied->with_headers) {
        Py_SETREF(poll->headers, PyList_New(poll->count));
        if (poll->headers == NULL)
            return -1;
        for (Py_ssize_t j = 0; j < poll->count; j++)
            PyList_SET_ITEM(poll->headers, j, Py_NewRef(Py_None));
    }
    Py_ssize_t count = 0;
    for (ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        if (m->err) {
            PyObject *topic = m->rkt ? topic_str(self, m->rkt) : Py_NewRef(Py_None);
            if (topic == NULL)
                return -1;
            PyObject *error = Py_BuildValue("(NiLis)", topic, (int)m->partition,
                                            (long long)m->offset, (int)m->err,
                                            rd.err2str(m->err));
            if (error == NULL || PyList_Append(poll->errors, error) < 0) {
                Py_XDECREF(error);
                return -1;
            }
            Py_DECREF(error);
            continue;
        }
        rd_kafka_headers_t *hdrs = NULL;
        if (copied->with_headers && rd.message_headers(m, &hdrs) == 0 && hdrs != NULL) {
            PyObject *list = message_headers(hdrs);
            if (list == NULL)
                return -1;
            PyList_SetItem(poll->headers, count, list);
        }
        count++;
    }
    return 0;
}

static Poll *new_poll(ssize_t n) {
    Poll *poll = PyObject_New(Poll, &PollType);
    if (poll == NULL)
        return NULL;
    memset((char *)poll + sizeof(PyObject), 0, sizeof(Poll) - sizeof(PyObject));
    poll->headers = Py_NewRef(Py_None);
    poll->errors = PyList_New(0);
    size_t slots = n ? (size_t)n : 1;
    poll->topic_of = malloc(sizeof(int32_t) * slots);
    poll->partitions = malloc(sizeof(int32_t) * slots);
    poll->offsets = malloc(sizeof(int64_t) * slots);
    poll->timestamps = malloc(sizeof(int64_t) * slots);
    poll->timestamp_types = malloc(sizeof(int32_t) * slots);
    if (column_init(&poll->keys, (size_t)n) < 0 || column_init(&poll->values, (size_t)n) < 0 ||
        !poll->errors || !poll->topic_of || !poll->partitions || !poll->offsets ||
        !poll->timestamps || !poll->timestamp_types) {
        Py_DECREF(poll);
        PyErr_NoMemory();
        return NULL;
    }
    return poll;
}

static PyObject *fetcher_consume(Fetcher *self, PyObject *args) {
    Py_ssize_t max_messages;
    double timeout;
    if (!PyArg_ParseTuple(args, "nd", &max_messages, &timeout) || open_queue(self) < 0)
        return NULL;
    if (max_messages < 1) {
        PyErr_SetString(PyExc_ValueError, "max_messages must be at least 1");
        return NULL;
    }
    rd_kafka_message_t **msgs = PyMem_Malloc(sizeof(*msgs) * max_messages);
    if (msgs == NULL)
        return PyErr_NoMemory();
    ssize_t n;
    Py_BEGIN_ALLOW_THREADS
    n = rd.consume_batch_queue(self->queue, (int)(timeout * 1000), msgs, (size_t)max_messages);
    Py_END_ALLOW_THREADS
    if (n < 0) {
        PyMem_Free(msgs);
        return PyErr_Format(PyExc_RuntimeError, "librdkafka consume failed (%zd)", n);
    }
    Copied copied = {0};
    Poll *poll = new_poll(n);
    int failed = poll == NULL;
    if (!failed) {
        Py_BEGIN_ALLOW_THREADS
        failed = copy_records(poll, msgs, n, &copied) < 0;
        Py_END_ALLOW_THREADS
        if (failed)
            PyErr_NoMemory();
        else
            failed = fill(self, poll, msgs, n, &copied) < 0;
    }
    free(copied.topics);
    Py_BEGIN_ALLOW_THREADS
    for (ssize_t i = 0; i < n; i++)
        rd.message_destroy(msgs[i]);
    Py_END_ALLOW_THREADS
    PyMem_Free(msgs);
    if (failed) {
        Py_XDECREF(poll);
        return NULL;
    }
    return (PyObject *)poll;
}

static PyMethodDef fetcher_methods[] = {
    {"forward", (PyCFunction)fetcher_forward, METH_VARARGS,
     "forward(topic, partition): fetch the partition into this fetcher's queue"},
    {"unforward", (PyCFunction)fetcher_unforward, METH_VARARGS,
     "unforward(topic, partition): stop forwarding the partition (revoked or lost)"},
    {"consume", (PyCFunction)fetcher_consume, METH_VARARGS,
     "consume(max_messages, timeout): a Poll of at most max_messages records"},
    {"close", (PyCFunction)fetcher_close, METH_NOARGS,
     "release the queue; call before the Consumer's close()"},
    {NULL},
};

static PyTypeObject FetcherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kanal_worker.native._fetch.Fetcher",
    .tp_basicsize = sizeof(Fetcher),
    .tp_dealloc = (destructor)fetcher_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Fetcher(consumer, librdkafka_path): a consumer's data, a poll at a time.",
    .tp_methods = fetcher_methods,
    .tp_init = (initproc)fetcher_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fetch",
    "A whole poll of a confluent-kafka Consumer as buffers.", -1, NULL,
};

PyMODINIT_FUNC PyInit__fetch(void) {
    if (PyType_Ready(&PollType) < 0 || PyType_Ready(&FetcherType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Poll", (PyObject *)&PollType) < 0 ||
        PyModule_AddObjectRef(m, "Fetcher", (PyObject *)&FetcherType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
