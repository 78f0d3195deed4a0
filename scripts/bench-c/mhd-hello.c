/* Baseline for scripts/bench-status: the smallest useful libmicrohttpd server, configured like MockShift's
 * transport (internal polling thread, epoll, pool of 2, answer on the second handler call for keep-alive),
 * answering every request with a fixed small JSON body.
 * Usage: mhd-hello [PORT]   listens on 127.0.0.1 (PORT 0 or none: any free port), prints "ready PORT". */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char body[] = "{\"status\":\"completed\",\"task_id\":\"0123456789abcdef01234567\"}";
static int marker;

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **state) {
    (void) cls; (void) url; (void) method; (void) version; (void) upload;
    if (*state == NULL) { *state = &marker; return MHD_YES; }
    if (*upload_size) { *upload_size = 0; return MHD_YES; }
    struct MHD_Response *r = MHD_create_response_from_buffer(sizeof body - 1, (void *) body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv) {
    unsigned short port = argc > 1 ? (unsigned short) atoi(argv[1]) : 0;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, port, NULL, NULL,
                                            handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
                                            MHD_OPTION_THREAD_POOL_SIZE, 2,
                                            MHD_OPTION_CONNECTION_LIMIT, 15000, MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096,
                                            MHD_OPTION_END);
    if (!d) { fprintf(stderr, "cannot start on port %u\n", port); return 1; }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("ready %u\n", info ? info->port : port);
    fflush(stdout);
    sigset_t set; int sig;
    sigemptyset(&set); sigaddset(&set, SIGINT); sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
