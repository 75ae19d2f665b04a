/* caudal's native drain of a librdkafka consumer queue (see kafka_native.py).
 *
 * Compiled on first use against the librdkafka that the confluent-kafka wheel ships, and
 * called through ctypes: a handful of calls per polled batch, none per message. Messages are
 * described (error, partition, offset, value and key lengths) into arrays, the kept ones are
 * copied into one buffer (JSON: each value followed by a newline, ready for Arrow's parser),
 * then destroyed. The consumer handle is caudal's own (no Python callbacks are set on it:
 * draining its queue never calls into Python).
 *
 * Only the public ABI of librdkafka is declared here (rdkafka.h is not shipped by the wheel).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_error_s rd_kafka_error_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;

typedef struct {
    int err;
    rd_kafka_topic_t *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rd_kafka_message_t;

typedef struct {
    char *topic;
    int32_t partition;
    int64_t offset;
    void *metadata;
    size_t metadata_size;
    void *opaque;
    int err;
    void *_private;
} rd_kafka_topic_partition_t;

typedef struct {
    int cnt;
    int size;
    rd_kafka_topic_partition_t *elems;
} rd_kafka_topic_partition_list_t;

rd_kafka_conf_t *rd_kafka_conf_new(void);
int rd_kafka_conf_set(rd_kafka_conf_t *, const char *, const char *, char *, size_t);
void rd_kafka_conf_destroy(rd_kafka_conf_t *);
void rd_kafka_conf_set_error_cb(rd_kafka_conf_t *,
                                void (*)(rd_kafka_t *, int, const char *, void *));
rd_kafka_t *rd_kafka_new(int, rd_kafka_conf_t *, char *, size_t);
int rd_kafka_poll_set_consumer(rd_kafka_t *);
rd_kafka_queue_t *rd_kafka_queue_get_consumer(rd_kafka_t *);
ssize_t rd_kafka_consume_batch_queue(rd_kafka_queue_t *, int, rd_kafka_message_t **, size_t);
void rd_kafka_message_destroy(rd_kafka_message_t *);
int64_t rd_kafka_message_timestamp(const rd_kafka_message_t *, int *);
rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_new(int);
rd_kafka_topic_partition_t *rd_kafka_topic_partition_list_add(
    rd_kafka_topic_partition_list_t *, const char *, int32_t);
void rd_kafka_topic_partition_list_destroy(rd_kafka_topic_partition_list_t *);
rd_kafka_error_t *rd_kafka_incremental_assign(rd_kafka_t *,
                                              const rd_kafka_topic_partition_list_t *);
const char *rd_kafka_error_string(const rd_kafka_error_t *);
void rd_kafka_error_destroy(rd_kafka_error_t *);
int rd_kafka_position(rd_kafka_t *, rd_kafka_topic_partition_list_t *);
int rd_kafka_commit(rd_kafka_t *, const rd_kafka_topic_partition_list_t *, int);

#define RD_KAFKA_CONSUMER 1
#define TIMESTAMP_NOT_AVAILABLE 0

/* librdkafka retries broker errors by itself; caudal's own calls fail with one line */
static void ignore_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk; (void)err; (void)reason; (void)opaque;
}

/* A consumer from n key/value settings; NULL with errstr set when a setting is refused. */
rd_kafka_t *caudal_consumer_new(const char **keys, const char **values, int n, char *errstr,
                                size_t errstr_size) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (int i = 0; i < n; i++) {
        if (rd_kafka_conf_set(conf, keys[i], values[i], errstr, errstr_size) != 0) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_error_cb(conf, ignore_error);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk); /* errors and events are served by the batch reads */
    return rk;
}

static rd_kafka_topic_partition_list_t *partition_list(const char *topic, const int32_t *parts,
                                                       const int64_t *offsets, int n) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(list, topic, parts[i])->offset =
            offsets ? offsets[i] : -1001;
    return list;
}

/* Adds partitions at the given offsets; 0, or -1 with errstr set. */
int caudal_assign(rd_kafka_t *rk, const char *topic, const int32_t *parts,
                  const int64_t *offsets, int n, char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *list = partition_list(topic, parts, offsets, n);
    rd_kafka_error_t *error = rd_kafka_incremental_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (error == NULL)
        return 0;
    strncpy(errstr, rd_kafka_error_string(error), errstr_size - 1);
    errstr[errstr_size - 1] = 0;
    rd_kafka_error_destroy(error);
    return -1;
}

/* Each partition's position (the offset after the last message handed over; < 0: none). */
int caudal_position(rd_kafka_t *rk, const char *topic, const int32_t *parts, int64_t *out,
                    int n) {
    rd_kafka_topic_partition_list_t *list = partition_list(topic, parts, NULL, n);
    int err = rd_kafka_position(rk, list);
    for (int i = 0; i < n; i++)
        out[i] = list->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(list);
    return err;
}

/* Commits offsets to the consumer group without waiting (lag monitoring only). */
int caudal_commit(rd_kafka_t *rk, const char *topic, const int32_t *parts,
                  const int64_t *offsets, int n) {
    rd_kafka_topic_partition_list_t *list = partition_list(topic, parts, offsets, n);
    int err = rd_kafka_commit(rk, list, 1);
    rd_kafka_topic_partition_list_destroy(list);
    return err;
}

/* Up to max messages from the queue into msgs (waiting up to timeout_ms for the first). */
ssize_t caudal_consume(rd_kafka_queue_t *queue, int timeout_ms, rd_kafka_message_t **msgs,
                       size_t max) {
    return rd_kafka_consume_batch_queue(queue, timeout_ms, msgs, max);
}

/* Each message's error code, partition, offset and value and key lengths (-1: none).
 * Returns how many of the values and keys hold a newline in *newlines. */
void caudal_describe(rd_kafka_message_t **msgs, int n, int32_t *err, int32_t *parts,
                     int64_t *offsets, int64_t *value_lens, int64_t *key_lens,
                     int64_t *newlines) {
    int64_t found = 0;
    for (int i = 0; i < n; i++) {
        const rd_kafka_message_t *m = msgs[i];
        err[i] = m->err;
        parts[i] = m->partition;
        offsets[i] = m->offset;
        value_lens[i] = m->payload ? (int64_t)m->len : -1;
        key_lens[i] = m->key ? (int64_t)m->key_len : -1;
        if (m->err == 0 && m->payload && memchr(m->payload, '\n', m->len))
            found++;
    }
    *newlines = found;
}

/* Copies the values of the kept messages one after another into values (each followed by
 * sep when sep >= 0), their end positions into value_ends, and, when keys is not NULL, the
 * keys likewise; when stamps is not NULL, each kept message's timestamp (ms, -1: none).
 * Then destroys every message (in the same pass, while each is in the cache). */
void caudal_take(rd_kafka_message_t **msgs, int n, const uint8_t *keep, char *values,
                 int64_t *value_ends, int sep, char *keys, int64_t *key_ends,
                 int64_t *stamps) {
    int64_t at = 0, key_at = 0;
    int row = 0;
    for (int i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        rd_kafka_message_t *m = msgs[i];
        if (m->payload) {
            memcpy(values + at, m->payload, m->len);
            at += (int64_t)m->len;
        }
        if (sep >= 0)
            values[at++] = (char)sep;
        value_ends[row] = at;
        if (keys) {
            if (m->key) {
                memcpy(keys + key_at, m->key, m->key_len);
                key_at += (int64_t)m->key_len;
            }
            key_ends[row] = key_at;
        }
        if (stamps) {
            int kind;
            int64_t ms = rd_kafka_message_timestamp(m, &kind);
            stamps[row] = kind == TIMESTAMP_NOT_AVAILABLE ? -1 : ms;
        }
        row++;
    }
    for (int i = 0; i < n; i++)
        rd_kafka_message_destroy(msgs[i]);
}

void caudal_destroy(rd_kafka_message_t **msgs, int n) {
    for (int i = 0; i < n; i++)
        rd_kafka_message_destroy(msgs[i]);
}
