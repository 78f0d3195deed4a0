#ifndef CMICROHTTPD_SHIM_H
#define CMICROHTTPD_SHIM_H
/* Helpers for what Swift cannot call directly: the variadic MHD_start_daemon, MHD_get_daemon_info and
 * MHD_upgrade_action, and macros that do not import. No logic beyond argument marshalling lives here. */
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <netdb.h>
#include <microhttpd.h>

static const uint64_t CMHD_SIZE_UNKNOWN = MHD_SIZE_UNKNOWN;

/* The signature MHD_OPTION_UNESCAPE_CALLBACK expects (microhttpd.h names no type for it): decode the
 * 0-terminated `s` in place, return its new length. */
typedef size_t (*cmhd_unescape_callback)(void *cls, struct MHD_Connection *connection, char *s);

/* Starts a daemon bound to host:port (host resolved with getaddrinfo, IPv4 preferred).
 * Returns NULL when the host does not resolve or MHD cannot start (port in use, ...). */
static inline struct MHD_Daemon *
cmhd_start(unsigned int flags, const char *host, uint16_t port,
           MHD_AccessHandlerCallback handler, void *handler_cls,
           MHD_RequestCompletedCallback completed, void *completed_cls,
           unsigned int thread_pool_size, unsigned int connection_limit,
           unsigned int connection_timeout_s, size_t connection_memory_limit,
           cmhd_unescape_callback unescape)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct sockaddr_storage addr;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned) port);
    if (getaddrinfo(host, service, &hints, &res) != 0 || res == NULL) return NULL;
    ai = res;
    for (struct addrinfo *p = res; p; p = p->ai_next) { if (p->ai_family == AF_INET) { ai = p; break; } }
    memset(&addr, 0, sizeof addr);
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    freeaddrinfo(res);

    struct MHD_OptionItem ops[12]; int i = 0;
    ops[i].option = MHD_OPTION_SOCK_ADDR; ops[i].value = 0; ops[i].ptr_value = &addr; i++;
    if (completed) { ops[i].option = MHD_OPTION_NOTIFY_COMPLETED; ops[i].value = (intptr_t) completed; ops[i].ptr_value = completed_cls; i++; }
    if (thread_pool_size > 1) { ops[i].option = MHD_OPTION_THREAD_POOL_SIZE; ops[i].value = thread_pool_size; ops[i].ptr_value = NULL; i++; }
    if (connection_limit) { ops[i].option = MHD_OPTION_CONNECTION_LIMIT; ops[i].value = connection_limit; ops[i].ptr_value = NULL; i++; }
    if (connection_timeout_s) { ops[i].option = MHD_OPTION_CONNECTION_TIMEOUT; ops[i].value = connection_timeout_s; ops[i].ptr_value = NULL; i++; }
    if (connection_memory_limit) { ops[i].option = MHD_OPTION_CONNECTION_MEMORY_LIMIT; ops[i].value = (intptr_t) connection_memory_limit; ops[i].ptr_value = NULL; i++; }
    if (unescape) { ops[i].option = MHD_OPTION_UNESCAPE_CALLBACK; ops[i].value = (intptr_t) unescape; ops[i].ptr_value = NULL; i++; }
    ops[i].option = MHD_OPTION_LISTEN_BACKLOG_SIZE; ops[i].value = 4096; ops[i].ptr_value = NULL; i++;
    ops[i].option = MHD_OPTION_END; ops[i].value = 0; ops[i].ptr_value = NULL;
    return MHD_start_daemon(flags, port, NULL, NULL, handler, handler_cls, MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
}

/* The port the daemon is bound to (useful with port 0), or 0 when unknown. */
static inline uint16_t cmhd_bound_port(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : 0;
}

/* The socket of a connection, or -1. */
static inline int cmhd_connection_fd(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info ? (int) info->connect_fd : -1;
}

/* Sets one connection's idle timeout in seconds (MHD_set_connection_option is variadic). */
static inline void cmhd_set_connection_timeout(struct MHD_Connection *connection, unsigned int seconds) {
    MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT, seconds);
}

/* Hands an upgraded (WebSocket) connection's socket back to libmicrohttpd, which closes it and then sends the
 * request's completion notice (MHD_upgrade_action is variadic). Never close() the socket directly. */
static inline enum MHD_Result cmhd_upgrade_close(struct MHD_UpgradeResponseHandle *urh) {
    return MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

/* Number of open connections (for stats). */
static inline unsigned int cmhd_current_connections(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}
#endif
