/* Load client for scripts/bench-streams: N concurrent streaming runs over loopback, one epoll loop.
 *
 * Each connection POSTs {"inputs":{...},"stream":true} and reads the Server-Sent Events. Lateness of a token
 * event = its arrival - (arrival of the run's `start` event + the simulated schedule of that token:
 * TTFT + k / rate). Midway, M runs are terminated one at a time (on a separate connection) and the time from
 * sending the terminate to the arrival of that stream's terminal event is recorded.
 *
 * An arrival is the moment the bytes reached this client's socket: the kernel's receive timestamp of the read
 * (SO_TIMESTAMPNS; for TCP, that of the newest segment the read returned, so never early), not the moment this
 * loop got round to reading them. The client shares the machine's cores with the server; its own lag (read time
 * - receive time) is printed apart (`read_lag_*`), and is what the figures would add if arrivals were read times.
 *
 * Usage: stream-client HOST PORT PIPELINE_ID N TTFT_MS TOKENS_PER_S SECONDS TERMINATES
 * Prints one line of `key=value` figures (bytes_per_event: all bytes read / `stream` events, chunk framing and the
 * start and result events included: how two servers' events compare in size). Loopback only; stops by itself
 * after SECONDS + 30 s at most. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int sent;             /* request fully written */
    int started, done, terminated;
    double start_at;      /* arrival of the start event, ms */
    long tokens;          /* stream events seen */
    double terminate_at;  /* when its terminate was sent, ms (0 = none) */
    char run_id[25];
    char tail[256];       /* unparsed end of the previous read (a marker split across reads) */
    size_t tail_len;
} Stream;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* CLOCK_MONOTONIC - CLOCK_REALTIME in ms, taken at start: turns the kernel's receive timestamps (real time)
   into this client's clock. */
static double mono_minus_real;

static void clock_offset(void) {
    struct timespec r;
    clock_gettime(CLOCK_REALTIME, &r);
    mono_minus_real = now_ms() - (r.tv_sec * 1000.0 + r.tv_nsec / 1e6);
}

/* read() that also gives the kernel's receive time of the data (ms, this client's clock), or -1 without one. */
static ssize_t read_stamped(int fd, char *buf, size_t len, double *received) {
    char control[256];
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    ssize_t r = recvmsg(fd, &msg, 0);
    *received = -1;
    if (r <= 0) return r;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            *received = ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6 + mono_minus_real;
        }
    }
    return r;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, long n, double p) {
    if (n == 0) return -1;
    long i = (long) (p / 100.0 * (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static int connect_to(const char *host, int port, int nonblocking) {
    int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short) port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nonblocking) setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);  /* the streams' arrivals */
    if (connect(fd, (struct sockaddr *) &addr, sizeof addr) < 0 && errno != EINPROGRESS) { close(fd); return -1; }
    return fd;
}

/* The first `needle` in hay[0..len), or NULL. */
static const char *find(const char *hay, size_t len, const char *needle) {
    return memmem(hay, len, needle, strlen(needle));
}

int main(int argc, char **argv) {
    if (argc < 9) { fprintf(stderr, "usage: %s HOST PORT PIPELINE N TTFT_MS RATE SECONDS TERMINATES\n", argv[0]); return 2; }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    const char *pipeline = argv[3];
    long n = atol(argv[4]);
    double ttft = atof(argv[5]), rate = atof(argv[6]), seconds = atof(argv[7]);
    long terminates = atol(argv[8]);

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    char body[256], request[1024];
    long words = (long) (rate * seconds);
    snprintf(body, sizeof body, "{\"inputs\":{\"input_0\":\"Write %ld words.\"},\"stream\":true}", words);
    int request_len = snprintf(request, sizeof request,
        "POST /v1/pipeline/%s/run HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer bench\r\n"
        "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
        pipeline, host, strlen(body), body);

    Stream *streams = calloc((size_t) n, sizeof *streams);
    long lateness_cap = (long) (n * (words + 20));
    double *lateness = malloc(sizeof(double) * (size_t) lateness_cap);
    /* The same, for tokens that arrive once every stream has started (+1 s): lateness in steady streaming,
       without the burst of run starts at the beginning. */
    double *steady = malloc(sizeof(double) * (size_t) lateness_cap);
    long steady_n = 0, started_n = 0;
    double all_started_at = 0;
    /* And for tokens that arrive before the first run ends by itself: lateness without the burst of runs
       ending (each end is a commit in MockShift) either. */
    double *mid = malloc(sizeof(double) * (size_t) lateness_cap);
    long mid_n = 0;
    double first_end_at = 0;
    double *term_latency = malloc(sizeof(double) * (size_t) (terminates + 1));
    double *term_answer = malloc(sizeof(double) * (size_t) (terminates + 1));  /* send -> answer read, closed */
    long term_answer_n = 0;
    long lateness_n = 0, term_n = 0, events = 0, failed_connect = 0, bytes = 0;
    double *read_lag = malloc(sizeof(double) * (size_t) lateness_cap);  /* per read: read time - receive time */
    long read_lag_n = 0;
    clock_offset();
    int ep = epoll_create1(0);
    for (long i = 0; i < n; i++) {
        streams[i].fd = connect_to(host, port, 1);
        if (streams[i].fd < 0) { failed_connect++; streams[i].done = 1; continue; }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = (uint64_t) i};
        epoll_ctl(ep, EPOLL_CTL_ADD, streams[i].fd, &ev);
    }

    double t0 = now_ms(), first_event = 0, last_event = 0;
    double terminate_from = t0 + seconds * 1000 * 0.5;
    long next_terminate = 0, open_streams = n - failed_connect;
    char buf[65536], combined[65536 + 256];
    struct epoll_event evs[256];
    while (open_streams > 0 && now_ms() - t0 < (seconds + 30) * 1000) {
        int k = epoll_wait(ep, evs, 256, 20);
        for (int e = 0; e < k; e++) {
            Stream *s = &streams[evs[e].data.u64];
            if (!s->sent && (evs[e].events & EPOLLOUT)) {
                if (write(s->fd, request, (size_t) request_len) == request_len) {
                    s->sent = 1;
                    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = evs[e].data.u64};
                    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                }
            }
            if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            double received;
            ssize_t r = read_stamped(s->fd, buf, sizeof buf, &received);
            double read_at = now_ms(), at = received >= 0 && received <= read_at ? received : read_at;
            if (r > 0 && read_lag_n < lateness_cap) read_lag[read_lag_n++] = read_at - at;
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                close(s->fd);
                s->done = 1;
                open_streams--;
                continue;
            }
            bytes += r;
            memcpy(combined, s->tail, s->tail_len);
            memcpy(combined + s->tail_len, buf, (size_t) r);
            size_t len = s->tail_len + (size_t) r, pos = 0, keep_from = len > 12 ? len - 12 : 0;
            for (;;) {
                const char *m = find(combined + pos, len - pos, "event: ");
                if (!m) break;
                size_t off = (size_t) (m - combined);
                if (off + 13 > len) { keep_from = off; break; }  /* the type is not all here: next read */
                if (!strncmp(m + 7, "start", 5)) {
                    const char *id = find(m, len - off, "\"run_id\":\"");
                    if (!id || (size_t) (id - combined) + 10 + 24 > len) { keep_from = off; break; }
                    memcpy(s->run_id, id + 10, 24);
                    s->run_id[24] = 0;
                    s->started = 1;
                    s->start_at = at;
                    if (++started_n == n - failed_connect) all_started_at = at;
                } else if (!strncmp(m + 7, "stream", 6)) {
                    s->tokens++;
                    events++;
                    if (!first_event) first_event = at;
                    last_event = at;
                    if (s->started && lateness_n < lateness_cap) {
                        double expected = s->start_at + ttft + s->tokens * 1000.0 / rate;
                        double late = at - expected;
                        lateness[lateness_n++] = late > 0 ? late : 0;
                        if (all_started_at > 0 && at > all_started_at + 1000) steady[steady_n++] = late > 0 ? late : 0;
                        if (all_started_at > 0 && at > all_started_at + 1000 && first_end_at == 0)
                            mid[mid_n++] = late > 0 ? late : 0;
                    }
                } else if (!strncmp(m + 7, "result", 6)) {
                    if (s->terminate_at > 0) term_latency[term_n++] = at - s->terminate_at;
                    else if (first_end_at == 0) first_end_at = at;
                }
                pos = off + 7;
                if (keep_from < pos) keep_from = pos;
            }
            if (len - keep_from > sizeof s->tail) keep_from = len - sizeof s->tail;
            s->tail_len = len - keep_from;
            memmove(s->tail, combined + keep_from, s->tail_len);
        }
        /* Terminate one run at a time, midway, while everything else keeps streaming. */
        if (next_terminate < terminates && now_ms() >= terminate_from) {
            long idx = (next_terminate * (n / (terminates ? terminates : 1))) % n;
            Stream *s = &streams[idx];
            if (s->started && !s->done && s->terminate_at == 0) {
                char tbody[64], treq[512], resp[1024];
                snprintf(tbody, sizeof tbody, "{\"run_id\":\"%s\"}", s->run_id);
                int tlen = snprintf(treq, sizeof treq,
                    "POST /v1/pipeline/%s/terminate HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer bench\r\n"
                    "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                    pipeline, host, strlen(tbody), tbody);
                int tfd = connect_to(host, port, 0);
                s->terminate_at = now_ms();
                if (tfd >= 0 && write(tfd, treq, (size_t) tlen) == tlen) {
                    while (read(tfd, resp, sizeof resp) > 0) {}
                    term_answer[term_answer_n++] = now_ms() - s->terminate_at;
                }
                if (tfd >= 0) close(tfd);
            }
            next_terminate++;
            terminate_from = now_ms() + 20;  /* spread them out */
        }
    }
    qsort(lateness, (size_t) lateness_n, sizeof(double), cmp_double);
    qsort(steady, (size_t) steady_n, sizeof(double), cmp_double);
    qsort(mid, (size_t) mid_n, sizeof(double), cmp_double);
    qsort(term_latency, (size_t) term_n, sizeof(double), cmp_double);
    qsort(term_answer, (size_t) term_answer_n, sizeof(double), cmp_double);
    qsort(read_lag, (size_t) read_lag_n, sizeof(double), cmp_double);
    double span = (last_event - first_event) / 1000.0;
    long not_done = 0;
    for (long i = 0; i < n; i++) if (!streams[i].done) not_done++;
    printf("streams=%ld connect_failures=%ld unfinished=%ld events=%ld events_per_s=%.0f bytes_per_event=%.0f "
           "lateness_p50_ms=%.1f lateness_p99_ms=%.1f lateness_max_ms=%.1f "
           "terminates=%ld terminate_to_result_p50_ms=%.2f terminate_to_result_p99_ms=%.2f "
           "steady_lateness_p50_ms=%.1f steady_lateness_p99_ms=%.1f start_span_ms=%.0f "
           "mid_lateness_p50_ms=%.1f mid_lateness_p99_ms=%.1f "
           "terminate_answer_p50_ms=%.2f terminate_answer_p99_ms=%.2f read_lag_p50_ms=%.1f read_lag_p99_ms=%.1f\n",
           n, failed_connect, not_done, events, span > 0 ? events / span : 0, events ? (double) bytes / events : 0,
           pct(lateness, lateness_n, 50), pct(lateness, lateness_n, 99), lateness_n ? lateness[lateness_n - 1] : -1,
           term_n, pct(term_latency, term_n, 50), pct(term_latency, term_n, 99),
           pct(steady, steady_n, 50), pct(steady, steady_n, 99),
           all_started_at > 0 ? all_started_at - t0 : -1, pct(mid, mid_n, 50), pct(mid, mid_n, 99),
           pct(term_answer, term_answer_n, 50), pct(term_answer, term_answer_n, 99),
           pct(read_lag, read_lag_n, 50), pct(read_lag, read_lag_n, 99));
    return 0;
}
