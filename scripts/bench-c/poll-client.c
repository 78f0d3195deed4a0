/* Load client for scripts/bench-status: GET requests the way the VectorShift SDK's synchronous client polls,
 * a NEW TCP connection for every request (`requests.request()` builds a throw-away session: it connects, sends
 * one request with `Connection: keep-alive`, reads the answer and closes the socket). The request carries the
 * headers python-requests sends for the SDK (User-Agent, Accept-Encoding, Accept, Connection, Authorization,
 * Content-Type), in its order.
 *
 * CONNECTIONS requests are in flight at once, split over 2 threads (one epoll loop each, like `wrk -t2`). Each
 * slot: connect, write, read the head and Content-Length body, close (the client closes first, as requests
 * does), start over. Runs SECONDS, then prints one line of `key=value` figures: requests, requests_per_s,
 * non-200 answers, failed connects, latency (connect to last byte) p50/p99 in ms. Loopback only.
 *
 * Usage: poll-client HOST PORT PATH CONNECTIONS SECONDS [API_KEY] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define THREADS 2
#define MAX_SAMPLES 4000000

typedef struct {
    int fd;
    size_t written, got;
    double began;
    char buf[16384];
} Slot;

typedef struct {
    int slots;
    long requests, bad, connect_failures;
    double *latency;
    long latency_n;
} Worker;

static struct sockaddr_in g_addr;
static char g_request[2048];
static size_t g_request_len;
static double g_until;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

/* Opens the slot's next connection and registers it for writability (connect completes). */
static void open_slot(int ep, Worker *w, Slot *s) {
    for (int tries = 0; tries < 100; tries++) {
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s->written = s->got = 0;
        s->began = now_ms();
        if (connect(s->fd, (struct sockaddr *) &g_addr, sizeof g_addr) == 0 || errno == EINPROGRESS) {
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
            epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
            return;
        }
        w->connect_failures++;   /* e.g. no free local port for a moment */
        close(s->fd);
        usleep(1000);
    }
    s->fd = -1;
}

/* The whole answer is in: the head's end and Content-Length bytes after it. Returns the status, 0 if not yet. */
static int complete(Slot *s) {
    char *end = memmem(s->buf, s->got, "\r\n\r\n", 4);
    if (!end) return 0;
    char *cl = memmem(s->buf, (size_t) (end - s->buf), "\r\nContent-Length:", 17);
    if (!cl) cl = memmem(s->buf, (size_t) (end - s->buf), "\r\ncontent-length:", 17);
    long length = cl ? strtol(cl + 17, NULL, 10) : 0;
    if ((size_t) (end + 4 - s->buf) + (size_t) length > s->got) return 0;
    return atoi(s->buf + 9);
}

static void *run(void *arg) {
    Worker *w = arg;
    int ep = epoll_create1(0);
    Slot *slots = calloc((size_t) w->slots, sizeof *slots);
    w->latency = malloc(sizeof(double) * MAX_SAMPLES / THREADS);
    for (int i = 0; i < w->slots; i++) open_slot(ep, w, &slots[i]);
    struct epoll_event evs[256];
    while (now_ms() < g_until) {
        int k = epoll_wait(ep, evs, 256, 10);
        for (int e = 0; e < k; e++) {
            Slot *s = evs[e].data.ptr;
            if (s->written < g_request_len) {
                if (evs[e].events & (EPOLLERR | EPOLLHUP)) goto failed;
                ssize_t n = write(s->fd, g_request + s->written, g_request_len - s->written);
                if (n < 0 && errno == EAGAIN) continue;
                if (n <= 0) goto failed;
                s->written += (size_t) n;
                if (s->written == g_request_len) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
                    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                }
                continue;
            }
            ssize_t n = read(s->fd, s->buf + s->got, sizeof s->buf - s->got);
            if (n < 0 && errno == EAGAIN) continue;
            if (n <= 0) goto failed;
            s->got += (size_t) n;
            int status = complete(s);
            if (!status && s->got < sizeof s->buf) continue;
            w->requests++;
            if (status != 200) w->bad++;
            if (w->latency_n < MAX_SAMPLES / THREADS) w->latency[w->latency_n++] = now_ms() - s->began;
            close(s->fd);   /* the client closes first, as requests does when its session ends */
            open_slot(ep, w, s);
            continue;
        failed:
            w->bad++;
            close(s->fd);
            open_slot(ep, w, s);
        }
    }
    for (int i = 0; i < w->slots; i++) if (slots[i].fd >= 0) close(slots[i].fd);
    free(slots);
    close(ep);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: %s HOST PORT PATH CONNECTIONS SECONDS [API_KEY]\n", argv[0]); return 2; }
    const char *host = argv[1], *path = argv[3], *key = argc > 6 ? argv[6] : "bench";
    int port = atoi(argv[2]), connections = atoi(argv[4]);
    double seconds = atof(argv[5]);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((unsigned short) port);
    inet_pton(AF_INET, host, &g_addr.sin_addr);
    g_request_len = (size_t) snprintf(g_request, sizeof g_request,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: python-requests/2.34.2\r\nAccept-Encoding: gzip, deflate\r\n"
        "Accept: */*\r\nConnection: keep-alive\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n\r\n",
        path, host, port, key);

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    Worker workers[THREADS] = {0};
    pthread_t threads[THREADS];
    double t0 = now_ms();
    g_until = t0 + seconds * 1000;
    for (int i = 0; i < THREADS; i++) {
        workers[i].slots = connections / THREADS + (i < connections % THREADS);
        pthread_create(&threads[i], NULL, run, &workers[i]);
    }
    long requests = 0, bad = 0, connect_failures = 0, n = 0;
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    double took = (now_ms() - t0) / 1000;
    double *all = malloc(sizeof(double) * MAX_SAMPLES);
    for (int i = 0; i < THREADS; i++) {
        requests += workers[i].requests;
        bad += workers[i].bad;
        connect_failures += workers[i].connect_failures;
        memcpy(all + n, workers[i].latency, sizeof(double) * (size_t) workers[i].latency_n);
        n += workers[i].latency_n;
    }
    qsort(all, (size_t) n, sizeof(double), cmp_double);
    printf("requests=%ld requests_per_s=%.0f non_200=%ld connect_failures=%ld latency_p50_ms=%.2f latency_p99_ms=%.2f\n",
           requests, requests / took, bad, connect_failures,
           n ? all[(long) (0.5 * (n - 1) + 0.5)] : -1, n ? all[(long) (0.99 * (n - 1) + 0.5)] : -1);
    return 0;
}
