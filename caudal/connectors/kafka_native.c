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
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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

/* ---- the typed JSON decoder ------------------------------------------------------------
 *
 * Decodes a batch of JSON messages laid end to end (message i ends at ends[i], its last
 * byte the newline separator) straight into Arrow buffers: one flat object per message whose
 * keys are the declared columns (any order; a missing key is NULL; any other key is checked
 * to be valid JSON and skipped, as Arrow's parser ignores it). It accepts a strict subset of
 * what caudal's JSON decoder (Arrow's parser and its conversions) accepts, and gives the same
 * values for it: anything it is not certain about (an escaped key, a duplicate column, a
 * value of another JSON type, a number out of range or with a fraction for an integer,
 * NaN/Infinity, invalid UTF-8, a raw control character, a lone surrogate, a timestamp form
 * outside the common ones, white space before the object, anything after it) makes it give
 * up on the whole batch (returns the failing row, >= 0), and the caller decodes the batch the
 * usual way, so results and bad_data handling stay those of Arrow's path. */

enum { K_I8 = 1, K_I16, K_I32, K_I64, K_F64, K_BOOL, K_STR, K_TS };

typedef struct {
    int kind;
    const char *name;     /* UTF-8, not NUL-terminated */
    int64_t name_len;
    uint8_t *validity;    /* bit per row, zeroed by the caller */
    void *values;         /* int8..int64 / double / bit per row (bool) / int32 offsets */
    char *data;           /* strings: bytes; capacity data_cap */
    int64_t data_cap;
    int64_t data_len;     /* out: bytes written */
    int64_t nulls;        /* out */
} caudal_column;

#define WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n')

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && WS(*p))
        p++;
    return p;
}

/* The length of a valid UTF-8 sequence at p (first byte >= 0x80), 0 when not valid (overlong
 * forms, surrogates, above U+10FFFF, cut short). */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    if (c >= 0xC2 && c <= 0xDF) {
        if (end - p < 2 || (p[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0)
            return 0;
        if (c == 0xED && p[1] >= 0xA0)
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90)
            return 0;
        if (c == 0xF4 && p[1] >= 0x90)
            return 0;
        return 4;
    }
    return 0;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* A JSON string at p (just after its opening quote), unescaped into out (when out is not
 * NULL; room for as many bytes as the escaped text holds). Returns the position after the
 * closing quote and sets *len, or NULL to give up. */
static const char *read_string(const char *p, const char *end, char *out, int64_t *len) {
    int64_t n = 0;
    for (;;) {
        const char *run = p;
        /* 8 bytes at a time while none is a quote, a backslash, a control or non-ASCII
         * byte (the usual case: plain ASCII text) */
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
            uint64_t quote = w ^ (ones * '"'), slash = w ^ (ones * '\\');
            uint64_t special = ((quote - ones) & ~quote) | ((slash - ones) & ~slash) |
                               (w - ones * 0x20) | w;
            if (special & highs)
                break;
            p += 8;
        }
        while (p < end) {
            unsigned char c = (unsigned char)*p;
            if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
                break;
            p++;
        }
        if (out && p > run) {
            memcpy(out + n, run, (size_t)(p - run));
        }
        n += p - run;
        if (p >= end)
            return NULL;
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *len = n;
            return p + 1;
        }
        if (c < 0x20)
            return NULL;
        if (c >= 0x80) {
            int k = utf8_len((const unsigned char *)p, (const unsigned char *)end);
            if (!k)
                return NULL;
            if (out)
                memcpy(out + n, p, (size_t)k);
            n += k;
            p += k;
            continue;
        }
        /* an escape */
        if (end - p < 2)
            return NULL;
        char e = p[1], ch;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (end - p < 6 || !hex4(p + 2, &cp))
                return NULL;
            p += 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return NULL;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return NULL;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            char buf[4];
            int k;
            if (cp < 0x80) { buf[0] = (char)cp; k = 1; }
            else if (cp < 0x800) {
                buf[0] = (char)(0xC0 | (cp >> 6)); buf[1] = (char)(0x80 | (cp & 0x3F)); k = 2;
            } else if (cp < 0x10000) {
                buf[0] = (char)(0xE0 | (cp >> 12)); buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[2] = (char)(0x80 | (cp & 0x3F)); k = 3;
            } else {
                buf[0] = (char)(0xF0 | (cp >> 18)); buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); buf[3] = (char)(0x80 | (cp & 0x3F));
                k = 4;
            }
            if (out)
                memcpy(out + n, buf, (size_t)k);
            n += k;
            continue;
        }
        default:
            return NULL;
        }
        if (out)
            out[n] = ch;
        n++;
        p += 2;
    }
}

/* The extent of a JSON number at p (strict grammar); NULL to give up. *is_int: no fraction
 * and no exponent. Long numbers and large exponents are given up on (rapidjson refuses some
 * of those as too big where a plain conversion would not). */
static const char *number_end(const char *p, const char *end, int *is_int) {
    const char *s = p;
    *is_int = 1;
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return NULL;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (p < end && *p == '.') {
        *is_int = 0;
        p++;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *is_int = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == d || p - d > 2)   /* |exponent| < 100 */
            return NULL;
    }
    if (p - s > 40)
        return NULL;
    return p;
}

static const char *skip_value(const char *p, const char *end, int depth);

static const char *skip_container(const char *p, const char *end, int depth, char close) {
    /* p just after '{' or '[' */
    if (depth > 32)
        return NULL;
    p = skip_ws(p, end);
    if (p < end && *p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            int64_t len;
            if (p >= end || *p != '"')
                return NULL;
            p = read_string(p + 1, end, NULL, &len);
            if (!p)
                return NULL;
            p = skip_ws(p, end);
            if (p >= end || *p != ':')
                return NULL;
            p = skip_ws(p + 1, end);
        }
        p = skip_value(p, end, depth + 1);
        if (!p)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == close)
            return p + 1;
        if (*p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
    }
}

static int literal(const char *p, const char *end, const char *word, size_t n) {
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0;
}

/* Checks and skips one JSON value (a key no column is declared for). */
static const char *skip_value(const char *p, const char *end, int depth) {
    int64_t len;
    int is_int;
    if (p >= end)
        return NULL;
    switch (*p) {
    case '"': return read_string(p + 1, end, NULL, &len);
    case '{': return skip_container(p + 1, end, depth, '}');
    case '[': return skip_container(p + 1, end, depth, ']');
    case 't': return literal(p, end, "true", 4) ? p + 4 : NULL;
    case 'f': return literal(p, end, "false", 5) ? p + 5 : NULL;
    case 'n': return literal(p, end, "null", 4) ? p + 4 : NULL;
    default: return number_end(p, end, &is_int);
    }
}

static const int64_t INT_MIN_OF[] = {0, INT8_MIN, INT16_MIN, INT32_MIN, INT64_MIN};
static const int64_t INT_MAX_OF[] = {0, INT8_MAX, INT16_MAX, INT32_MAX, INT64_MAX};

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* A timestamp text as Arrow's ISO-8601 parser reads it into microseconds (a form it reads:
 * YYYY-MM-DD, then optionally [T or space]HH[:MM[:SS[.f{1,6}]]], then optionally Z, +HH,
 * +HHMM or +HH:MM); 0 to give up. */
static int parse_timestamp(const char *s, int64_t n, int64_t *out) {
    int y, mo, d, h = 0, mi = 0, se = 0, us = 0;
    if (n < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d))
        return 0;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mo < 1 || mo > 12 || d < 1)
        return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return 0;
    int64_t i = 10;
    int64_t offset = 0;
    if (i < n) {
        if (s[i] != 'T' && s[i] != ' ')
            return 0;
        i++;
        if (n - i < 2 || !digits(s + i, 2, &h) || h > 23)
            return 0;
        i += 2;
        if (i < n && s[i] == ':') {
            if (n - i < 3 || !digits(s + i + 1, 2, &mi) || mi > 59)
                return 0;
            i += 3;
            if (i < n && s[i] == ':') {
                if (n - i < 3 || !digits(s + i + 1, 2, &se) || se > 59)
                    return 0;
                i += 3;
                if (i < n && s[i] == '.') {
                    i++;
                    int k = 0;
                    while (i < n && s[i] >= '0' && s[i] <= '9' && k < 7) {
                        us = us * 10 + (s[i] - '0');
                        i++;
                        k++;
                    }
                    if (k == 0 || k > 6)
                        return 0;
                    for (; k < 6; k++)
                        us *= 10;
                }
            }
        }
        if (i < n) {
            if (s[i] == 'Z') {
                i++;
            } else if (s[i] == '+' || s[i] == '-') {
                int sign = s[i] == '-' ? -1 : 1, oh, om = 0;
                i++;
                if (n - i < 2 || !digits(s + i, 2, &oh) || oh > 23)
                    return 0;
                i += 2;
                if (i < n && s[i] == ':') {
                    if (n - i < 3 || !digits(s + i + 1, 2, &om) || om > 59)
                        return 0;
                    i += 3;
                } else if (n - i >= 2 && s[i] >= '0' && s[i] <= '9') {
                    if (!digits(s + i, 2, &om) || om > 59)
                        return 0;
                    i += 2;
                }
                offset = sign * ((int64_t)oh * 3600 + om * 60);
            } else {
                return 0;
            }
            if (i != n)
                return 0;
        }
    }
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset;
    *out = secs * 1000000 + us;
    return 1;
}

static inline void set_bit(uint8_t *bits, int64_t i) { bits[i >> 3] |= (uint8_t)(1u << (i & 7)); }

/* One declared column's value at p into row `row`; NULL to give up. */
static const char *read_column(caudal_column *col, int64_t row, const char *p, const char *end) {
    if (p >= end)
        return NULL;
    if (*p == 'n') {
        if (!literal(p, end, "null", 4))
            return NULL;
        return p + 4;   /* NULL: validity bit stays 0, value slot written by the caller */
    }
    switch (col->kind) {
    case K_I8: case K_I16: case K_I32: case K_I64: {
        int is_int;
        const char *q = number_end(p, end, &is_int);
        if (!q || !is_int)
            return NULL;
        const char *s = p;
        int neg = *s == '-';
        if (neg)
            s++;
        uint64_t v = 0;
        for (; s < q; s++) {
            unsigned dgt = (unsigned)(*s - '0');
            if (v > (UINT64_MAX - dgt) / 10)
                return NULL;
            v = v * 10 + dgt;
        }
        int64_t x;
        if (neg) {
            if (v > (uint64_t)INT64_MAX + 1)
                return NULL;
            x = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
        } else {
            if (v > (uint64_t)INT64_MAX)
                return NULL;
            x = (int64_t)v;
        }
        if (x < INT_MIN_OF[col->kind] || x > INT_MAX_OF[col->kind])
            return NULL;
        switch (col->kind) {
        case K_I8: ((int8_t *)col->values)[row] = (int8_t)x; break;
        case K_I16: ((int16_t *)col->values)[row] = (int16_t)x; break;
        case K_I32: ((int32_t *)col->values)[row] = (int32_t)x; break;
        default: ((int64_t *)col->values)[row] = x; break;
        }
        set_bit(col->validity, row);
        return q;
    }
    case K_F64: {
        int is_int;
        const char *q = number_end(p, end, &is_int);
        if (!q)
            return NULL;
        char buf[48];
        memcpy(buf, p, (size_t)(q - p));
        buf[q - p] = 0;
        errno = 0;
        double v = strtod(buf, NULL);
        if (errno == ERANGE || !isfinite(v))
            return NULL;
        ((double *)col->values)[row] = v;
        set_bit(col->validity, row);
        return q;
    }
    case K_BOOL: {
        if (literal(p, end, "true", 4)) {
            set_bit((uint8_t *)col->values, row);
            set_bit(col->validity, row);
            return p + 4;
        }
        if (literal(p, end, "false", 5)) {
            set_bit(col->validity, row);
            return p + 5;
        }
        return NULL;
    }
    case K_STR: {
        if (*p != '"')
            return NULL;
        int64_t len;
        /* the unescaped text is never longer than the escaped one */
        int64_t room = col->data_cap - col->data_len;
        if (end - p > room)
            return NULL;
        const char *q = read_string(p + 1, end, col->data + col->data_len, &len);
        if (!q)
            return NULL;
        col->data_len += len;
        set_bit(col->validity, row);
        return q;
    }
    case K_TS: {
        if (*p != '"')
            return NULL;
        const char *s = p + 1, *q = s;
        while (q < end && *q != '"') {
            if (*q == '\\' || (unsigned char)*q < 0x20 || (unsigned char)*q >= 0x80)
                return NULL;
            q++;
        }
        if (q >= end)
            return NULL;
        int64_t us;
        if (!parse_timestamp(s, q - s, &us))
            return NULL;
        ((int64_t *)col->values)[row] = us;
        set_bit(col->validity, row);
        return q + 1;
    }
    }
    return NULL;
}

/* Decodes one message (p to end, no separator) into row `row` of the columns; 0 to give
 * up. */
static int decode_row(const char *p, const char *end, int64_t row, caudal_column *cols,
                      int ncols) {
    uint64_t seen = 0;
    int expect = 0;
    if (p >= end || *p != '{')
        return 0;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (p >= end || *p != '"')
                return 0;
            const char *k = ++p;
            while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) {
                if ((unsigned char)*p >= 0x80) {
                    int len = utf8_len((const unsigned char *)p, (const unsigned char *)end);
                    if (!len)
                        return 0;
                    p += len;
                } else {
                    p++;
                }
            }
            if (p >= end || *p != '"')
                return 0;   /* an escaped key: Arrow's path decides */
            int64_t klen = p - k;
            p = skip_ws(p + 1, end);
            if (p >= end || *p != ':')
                return 0;
            p = skip_ws(p + 1, end);
            int found = -1;
            if (expect < ncols && cols[expect].name_len == klen &&
                memcmp(cols[expect].name, k, (size_t)klen) == 0)
                found = expect;   /* keys usually come in the declared order */
            else for (int c = 0; c < ncols; c++) {
                if (cols[c].name_len == klen && memcmp(cols[c].name, k, (size_t)klen) == 0) {
                    found = c;
                    break;
                }
            }
            if (found < 0) {
                p = skip_value(p, end, 0);
            } else {
                if (seen & (1ull << found))
                    return 0;   /* Arrow refuses a key given twice */
                seen |= 1ull << found;
                expect = found + 1;
                p = read_column(&cols[found], row, p, end);
            }
            if (!p)
                return 0;
            p = skip_ws(p, end);
            if (p >= end)
                return 0;
            if (*p == '}') {
                p++;
                break;
            }
            if (*p != ',')
                return 0;
            p = skip_ws(p + 1, end);
        }
    }
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    if (p != end)
        return 0;
    for (int c = 0; c < ncols; c++) {
        caudal_column *col = &cols[c];
        int valid = (col->validity[row >> 3] >> (row & 7)) & 1;
        col->nulls += !valid;
        if (col->kind == K_STR) {
            if (col->data_len > INT32_MAX)
                return 0;
            ((int32_t *)col->values)[row + 1] = (int32_t)col->data_len;
        } else if (!valid) {   /* a NULL's slot holds 0, as Arrow's arrays do */
            switch (col->kind) {
            case K_I8: ((int8_t *)col->values)[row] = 0; break;
            case K_I16: ((int16_t *)col->values)[row] = 0; break;
            case K_I32: ((int32_t *)col->values)[row] = 0; break;
            case K_I64: case K_TS: ((int64_t *)col->values)[row] = 0; break;
            case K_F64: ((double *)col->values)[row] = 0; break;
            default: break;
            }
        }
    }
    return 1;
}

static void start_columns(caudal_column *cols, int ncols) {
    for (int c = 0; c < ncols; c++) {
        cols[c].data_len = 0;
        cols[c].nulls = 0;
        if (cols[c].kind == K_STR)
            ((int32_t *)cols[c].values)[0] = 0;
    }
}

/* Decodes n messages of data (message i ends at ends[i], its last byte a separator) into
 * the columns (validity and bool value bitmaps zeroed by the caller). Returns -1 when every
 * message was decoded, else the row where it gave up. */
int64_t caudal_json_decode(const char *data, const int64_t *ends, int64_t n,
                           caudal_column *cols, int ncols) {
    start_columns(cols, ncols);
    int64_t start = 0;
    for (int64_t row = 0; row < n; row++) {
        if (!decode_row(data + start, data + ends[row] - 1, row, cols, ncols))
            return row;
        start = ends[row];
    }
    return -1;
}

/* The same, straight from the kept messages of a polled batch (no copy of their values
 * first; the caller saw that none holds a line break); a message without a value is given
 * up on. */
int64_t caudal_json_decode_messages(rd_kafka_message_t **msgs, int n, const uint8_t *keep,
                                    caudal_column *cols, int ncols) {
    start_columns(cols, ncols);
    int64_t row = 0;
    for (int i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        const rd_kafka_message_t *m = msgs[i];
        if (!m->payload)
            return row;
        const char *p = (const char *)m->payload;
        if (!decode_row(p, p + m->len, row, cols, ncols))
            return row;
        row++;
    }
    return -1;
}
