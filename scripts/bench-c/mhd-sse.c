/* Baseline for scripts/bench-streams: a plain C libmicrohttpd server that streams the way MockShift does and
 * does nothing else. Same transport setup as MockShift's (internal polling thread, epoll, pool of 2,
 * suspend/resume, 32 KiB per connection, chunked body from a content reader with 16 KiB blocks), and:
 *
 *   POST /v1/pipeline/{id}/run        any body; answers text/event-stream: a `start` event, then after TTFT
 *                                     one `stream` event per token at RATE tokens/s (token k due at
 *                                     start + TTFT + k / RATE, as MockShift's EngineSettings.due), then a
 *                                     `result` event with the whole text, and the end of the body. The token
 *                                     count is N of "Write N words" in the body, else DEFAULT_TOKENS.
 *   POST /v1/pipeline/{id}/terminate  body {"run_id":"..."}: the stream gets its `result` event (terminated)
 *                                     and ends; answers 200 JSON.
 *
 * A stream is parked (MHD_suspend_connection in the content reader) while it has nothing to send. One timer
 * thread keeps a deadline heap of the streams; when a deadline passes it appends that stream's next event and
 * resumes the connection. Events have MockShift's framing and the byte size of its `stream` event
 * (`event: stream\ndata: {"type":"stream","output_name":"output_0","output_value":TOKEN,"run_id":ID,
 * "task_id":ID}\n\n`, a 24-character id). What MockShift does beside that (storage, run records, the hang-up
 * watcher, keep-alive comments, metrics) is left out on purpose: the gap between the two is its cost.
 *
 * Usage: mhd-sse PORT [TTFT_MS] [TOKENS_PER_S] [DEFAULT_TOKENS] [TOKEN_TEXT] [TICK_MS]
 *   (defaults 100, 20, 400, "word ", 0). TICK_MS > 0 makes the timer wake only at multiples of TICK_MS and serve
 *   every stream due by then in one go (fewer, larger batches of resumes, each event up to a tick late); 0, the
 *   default, wakes at each deadline as MockShift's scheduler does.
 * Listens on 127.0.0.1 (PORT 0: any free port); prints "ready PORT" once listening; stops on SIGINT/SIGTERM. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct Stream {
    pthread_mutex_t lock;          /* guards everything below up to `start_ns` */
    struct MHD_Connection *conn;   /* NULL once the response is released */
    char *buf;                     /* bytes not yet handed to libmicrohttpd: buf[off..len) */
    size_t len, off, cap;
    int suspended, finished;
    long sent, total;              /* tokens written, tokens in the answer */
    uint64_t start_ns;
    unsigned id;                   /* under g_lock: slot in g_table */
    atomic_int refs;               /* the response, its heap entry (or a firing batch), a terminate going on */
    char run_id[25];
} Stream;

/* A request in progress: what route it is and its body so far. */
typedef struct {
    enum { ROUTE_RUN, ROUTE_TERMINATE, ROUTE_OTHER } route;
    char body[4096];
    size_t body_len;
} Request;

static double g_ttft_ms = 100, g_rate = 20;
static long g_default_tokens = 400;
static uint64_t g_tick_ns;         /* 0: wake at each deadline; else at the end of the tick that holds it */
static const char *g_token = "word ";
static char g_token_json[256];     /* the token as a JSON string, quotes included */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;   /* the heap and the table */
static pthread_cond_t g_wakeup;
static long g_heap_len, g_heap_cap;
static Stream **g_table;           /* live streams by id (a run id is its slot number, hex) */
static unsigned g_table_cap, g_next_id;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static uint64_t due(const Stream *s, long k) {   /* token k (1-based) */
    return s->start_ns + (uint64_t) ((g_ttft_ms + (double) k * 1000.0 / g_rate) * 1e6);
}

static void release(Stream *s) {
    if (atomic_fetch_sub(&s->refs, 1) == 1) {
        pthread_mutex_destroy(&s->lock);
        free(s->buf);
        free(s);
    }
}

/* ---- deadline heap, under g_lock: entries hold their deadline (due of the stream's next token), so sifting
 * touches only the array. A stream that ends (terminated, or its client gone) stays in the heap until its entry
 * comes up, and is dropped then (as MockShift's scheduler skips cancelled timers). ---- */

typedef struct { uint64_t at; Stream *s; } Entry;
static Entry *g_heap;

static void heap_push(Stream *s) {
    if (g_heap_len == g_heap_cap) {
        g_heap_cap = g_heap_cap ? g_heap_cap * 2 : 1024;
        g_heap = realloc(g_heap, sizeof *g_heap * (size_t) g_heap_cap);
    }
    Entry e = {due(s, s->sent + 1), s};
    long i = g_heap_len++;
    while (i > 0 && g_heap[(i - 1) / 2].at > e.at) { g_heap[i] = g_heap[(i - 1) / 2]; i = (i - 1) / 2; }
    g_heap[i] = e;
}

static Stream *heap_pop(void) {
    Stream *top = g_heap[0].s;
    Entry e = g_heap[--g_heap_len];
    long i = 0;
    for (;;) {
        long l = 2 * i + 1, r = l + 1, m = -1;
        uint64_t at = e.at;
        if (l < g_heap_len && g_heap[l].at < at) { m = l; at = g_heap[l].at; }
        if (r < g_heap_len && g_heap[r].at < at) m = r;
        if (m < 0) break;
        g_heap[i] = g_heap[m];
        i = m;
    }
    if (g_heap_len > 0) g_heap[i] = e;
    return top;
}

/* ---- a stream's bytes, under its lock ---- */

static void append(Stream *s, const char *bytes, size_t n) {
    if (s->len + n > s->cap) {
        if (s->off > 0) { memmove(s->buf, s->buf + s->off, s->len - s->off); s->len -= s->off; s->off = 0; }
        if (s->len + n > s->cap) {
            s->cap = (s->len + n) * 2;
            s->buf = realloc(s->buf, s->cap);
        }
    }
    memcpy(s->buf + s->len, bytes, n);
    s->len += n;
}

/* Lets libmicrohttpd ask for data again (never resumes twice, never after release). */
static void wake(Stream *s) {
    if (s->suspended && s->conn) {
        s->suspended = 0;
        MHD_resume_connection(s->conn);
    }
}

static void append_event(Stream *s, const char *type, const char *fields) {
    char head[64];
    int n = snprintf(head, sizeof head, "event: %s\ndata: {", type);
    append(s, head, (size_t) n);
    append(s, fields, strlen(fields));
    char tail[128];
    n = snprintf(tail, sizeof tail, "\"run_id\":\"%s\",\"task_id\":\"%s\"}\n\n", s->run_id, s->run_id);
    append(s, tail, (size_t) n);
}

static void append_result(Stream *s, const char *status) {
    size_t token_len = strlen(g_token_json) - 2;
    size_t cap = (size_t) s->sent * token_len + 256;
    char *fields = malloc(cap);
    size_t n = (size_t) snprintf(fields, cap, "\"status\":\"%s\",\"type\":\"result\",\"%s\":{\"output_0\":\"", status,
                                 strcmp(status, "completed") ? "partial_outputs" : "outputs");
    for (long k = 0; k < s->sent; k++) { memcpy(fields + n, g_token_json + 1, token_len); n += token_len; }
    n += (size_t) snprintf(fields + n, cap - n, "\"},");
    append_event(s, "result", fields);
    free(fields);
    s->finished = 1;
}

/* ---- the timer thread ---- */

static void *timer_loop(void *unused) {
    (void) unused;
    Stream **batch = NULL;
    long batch_cap = 0;
    char fields[512];
    snprintf(fields, sizeof fields, "\"type\":\"stream\",\"output_name\":\"output_0\",\"output_value\":%s,", g_token_json);
    pthread_mutex_lock(&g_lock);
    for (;;) {
        uint64_t t = now_ns();
        long batch_len = 0;
        while (g_heap_len > 0 && g_heap[0].at <= t) {   /* every stream due now: take it out (its heap ref too) */
            Stream *s = heap_pop();
            if (batch_len == batch_cap) {
                batch_cap = batch_cap ? batch_cap * 2 : 1024;
                batch = realloc(batch, sizeof *batch * (size_t) batch_cap);
            }
            batch[batch_len++] = s;
        }
        if (batch_len == 0) {
            if (g_heap_len == 0) { pthread_cond_wait(&g_wakeup, &g_lock); continue; }
            uint64_t next = g_heap[0].at;
            if (g_tick_ns) next = (next + g_tick_ns - 1) / g_tick_ns * g_tick_ns;   /* wake on tick boundaries only */
            struct timespec until = {.tv_sec = (time_t) (next / 1000000000u), .tv_nsec = (long) (next % 1000000000u)};
            pthread_cond_timedwait(&g_wakeup, &g_lock, &until);
            continue;
        }
        pthread_mutex_unlock(&g_lock);
        for (long i = 0; i < batch_len; i++) {             /* one event each, then resume */
            Stream *s = batch[i];
            pthread_mutex_lock(&s->lock);
            if (!s->finished && s->conn) {
                s->sent++;
                append_event(s, "stream", fields);
                if (s->sent >= s->total) append_result(s, "completed");
                wake(s);
            }
            int again = !s->finished && s->conn;
            pthread_mutex_unlock(&s->lock);
            if (!again) { release(s); batch[i] = NULL; }
        }
        pthread_mutex_lock(&g_lock);
        for (long i = 0; i < batch_len; i++) if (batch[i]) heap_push(batch[i]);   /* keeps its heap ref */
    }
    return NULL;
}

/* ---- libmicrohttpd callbacks ---- */

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max) {
    (void) pos;
    Stream *s = cls;
    pthread_mutex_lock(&s->lock);
    size_t available = s->len - s->off;
    if (available > 0) {
        size_t n = available < max ? available : max;
        memcpy(out, s->buf + s->off, n);
        s->off += n;
        if (s->off == s->len) s->off = s->len = 0;
        pthread_mutex_unlock(&s->lock);
        return (ssize_t) n;
    }
    if (s->finished) { pthread_mutex_unlock(&s->lock); return MHD_CONTENT_READER_END_OF_STREAM; }
    s->suspended = 1;
    MHD_suspend_connection(s->conn);   /* allowed inside the content reader; 0 without it would spin */
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void released(void *cls) {
    Stream *s = cls;
    pthread_mutex_lock(&g_lock);
    if (g_table[s->id] == s) g_table[s->id] = NULL;
    pthread_mutex_unlock(&g_lock);
    pthread_mutex_lock(&s->lock);
    s->conn = NULL;   /* its heap entry, if any, is dropped when it comes up */
    s->suspended = 0;
    pthread_mutex_unlock(&s->lock);
    release(s);       /* the response's ref */
}

static long words_asked(const Request *rq) {
    const char *w = memmem(rq->body, rq->body_len, "Write ", 6);
    if (!w) return g_default_tokens;
    long n = strtol(w + 6, NULL, 10);
    return n > 0 ? n : g_default_tokens;
}

static enum MHD_Result answer_json(struct MHD_Connection *conn, unsigned code, const char *json) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), (void *) json, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result start_stream(struct MHD_Connection *conn, const Request *rq) {
    Stream *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->conn = conn;
    s->total = words_asked(rq);
    atomic_init(&s->refs, 2);   /* the response and the heap */
    pthread_mutex_lock(&g_lock);
    if (g_next_id == g_table_cap) {
        g_table_cap = g_table_cap ? g_table_cap * 2 : 4096;
        g_table = realloc(g_table, sizeof *g_table * g_table_cap);
    }
    s->id = g_next_id++;
    g_table[s->id] = s;
    pthread_mutex_unlock(&g_lock);
    snprintf(s->run_id, sizeof s->run_id, "%024x", s->id);
    s->start_ns = now_ns();
    append_event(s, "start", "\"status\":\"in_progress\",\"type\":\"start\",");

    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, reader, s, released);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);

    pthread_mutex_lock(&g_lock);
    int first = 0;
    if (g_table[s->id] == s) {   /* not already released (a failed queue frees the response at once) */
        heap_push(s);
        first = g_heap[0].s == s;
    } else {
        release(s);
    }
    if (first) pthread_cond_signal(&g_wakeup);
    pthread_mutex_unlock(&g_lock);
    return ret;
}

static enum MHD_Result terminate(struct MHD_Connection *conn, const Request *rq) {
    const char *id = memmem(rq->body, rq->body_len, "\"run_id\":\"", 10);
    unsigned long slot = id ? strtoul(id + 10, NULL, 16) : (unsigned long) -1;
    pthread_mutex_lock(&g_lock);
    Stream *s = slot < g_next_id ? g_table[slot] : NULL;
    if (s) atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&g_lock);
    if (!s) return answer_json(conn, MHD_HTTP_BAD_REQUEST, "{\"status\":\"failed\",\"error\":\"no such run\"}");
    pthread_mutex_lock(&s->lock);
    int was_live = !s->finished;
    if (was_live) { append_result(s, "terminated"); wake(s); }
    pthread_mutex_unlock(&s->lock);
    release(s);
    return was_live ? answer_json(conn, MHD_HTTP_OK, "{\"status\":\"success\"}")
                    : answer_json(conn, MHD_HTTP_BAD_REQUEST, "{\"status\":\"failed\",\"error\":\"run already finished\"}");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **state) {
    (void) cls; (void) version;
    Request *rq = *state;
    if (!rq) {   /* first call: headers only */
        rq = calloc(1, sizeof *rq);
        size_t len = strlen(url);
        int post = !strcmp(method, "POST") && !strncmp(url, "/v1/pipeline/", 13);
        if (post && len > 4 && !strcmp(url + len - 4, "/run")) rq->route = ROUTE_RUN;
        else if (post && len > 10 && !strcmp(url + len - 10, "/terminate")) rq->route = ROUTE_TERMINATE;
        else rq->route = ROUTE_OTHER;
        *state = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t room = sizeof rq->body - rq->body_len, n = *upload_size < room ? *upload_size : room;
        memcpy(rq->body + rq->body_len, upload, n);
        rq->body_len += n;
        *upload_size = 0;
        return MHD_YES;
    }
    switch (rq->route) {
    case ROUTE_RUN: return start_stream(conn, rq);
    case ROUTE_TERMINATE: return terminate(conn, rq);
    default: return answer_json(conn, MHD_HTTP_NOT_FOUND, "{\"status\":\"failed\",\"error\":\"not found\"}");
    }
}

static void completed(void *cls, struct MHD_Connection *conn, void **state, enum MHD_RequestTerminationCode code) {
    (void) cls; (void) conn; (void) code;
    free(*state);
    *state = NULL;
}

int main(int argc, char **argv) {
    unsigned short port = argc > 1 ? (unsigned short) atoi(argv[1]) : 0;
    if (argc > 2) g_ttft_ms = atof(argv[2]);
    if (argc > 3) g_rate = atof(argv[3]);
    if (argc > 4) g_default_tokens = atol(argv[4]);
    if (argc > 5) g_token = argv[5];
    if (argc > 6) g_tick_ns = (uint64_t) (atof(argv[6]) * 1e6);
    snprintf(g_token_json, sizeof g_token_json, "\"%s\"", g_token);   /* plain words: nothing to escape */

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g_wakeup, &attr);
    pthread_t timer;
    pthread_create(&timer, NULL, timer_loop, NULL);

    /* Signals go to sigwait below, not to libmicrohttpd's threads (blocked before they start). */
    sigset_t set;
    int sig;
    sigemptyset(&set); sigaddset(&set, SIGINT); sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, port, NULL, NULL, handler, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_THREAD_POOL_SIZE, 2,
        MHD_OPTION_CONNECTION_LIMIT, 15000, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 32 * 1024,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096, MHD_OPTION_END);
    if (!d) { fprintf(stderr, "cannot start on port %u\n", port); return 1; }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("ready %u\n", info ? info->port : port);
    fflush(stdout);
    sigwait(&set, &sig);
    _exit(0);   /* a benchmark baseline: streams still parked are not wound up (MHD_stop_daemon would need that) */
}
