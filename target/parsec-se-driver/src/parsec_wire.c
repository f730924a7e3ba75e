/*
 * Parsec wire protocol 1.0, client side.
 *
 * Every exchange has one deadline: PARSEC_SE_DRIVER_TIMEOUT_MS after it starts (on
 * CLOCK_MONOTONIC), connecting, sending the request and receiving the whole response must
 * be done. The connect waits at most the time left (SO_SNDTIMEO, set to it just before);
 * every later send and receive is preceded by poll() with the time left and does not block
 * (MSG_DONTWAIT), so a service that trickles its answer a byte at a time cannot stretch the
 * exchange beyond the deadline. Any failure to talk to the service is reported as
 * PSA_ERROR_COMMUNICATION_FAILURE (the driver fails closed).
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* SOCK_CLOEXEC, MSG_NOSIGNAL */

#include "parsec_wire.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/parsec/parsec.sock"
#define DEFAULT_APP_NAME "Parsec SE Driver"
#define DEFAULT_TIMEOUT_MS 5000

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t) v;
    p[1] = (uint8_t) (v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    put_u16(p, (uint16_t) v);
    put_u16(p + 2, (uint16_t) (v >> 16));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t) get_u16(p) | ((uint32_t) get_u16(p + 2) << 16);
}

void parsec_header_encode(const parsec_header_t *h, uint8_t out[PARSEC_WIRE_HEADER_SIZE])
{
    memset(out, 0, PARSEC_WIRE_HEADER_SIZE);
    put_u32(out, PARSEC_WIRE_MAGIC);
    put_u16(out + 4, 30);  /* bytes after the hdr_size field */
    out[6] = 1;            /* version 1.0 */
    out[7] = 0;
    put_u16(out + 8, 0);   /* flags */
    out[10] = h->provider;
    put_u32(out + 11, (uint32_t) h->session);
    put_u32(out + 15, (uint32_t) (h->session >> 32));
    out[19] = h->content_type;
    out[20] = h->accept_type;
    out[21] = h->auth_type;
    put_u32(out + 22, h->body_len);
    put_u16(out + 26, h->auth_len);
    put_u32(out + 28, h->opcode);
    put_u16(out + 32, h->status);
    /* out[34], out[35]: reserved, zero */
}

int parsec_header_decode(const uint8_t in[PARSEC_WIRE_HEADER_SIZE], parsec_header_t *h)
{
    if (get_u32(in) != PARSEC_WIRE_MAGIC || get_u16(in + 4) != 30 || in[6] != 1 || in[7] != 0 ||
        in[34] != 0 || in[35] != 0) {
        return -1;
    }
    h->provider = in[10];
    h->session = (uint64_t) get_u32(in + 11) | ((uint64_t) get_u32(in + 15) << 32);
    h->content_type = in[19];
    h->accept_type = in[20];
    h->auth_type = in[21];
    h->body_len = get_u32(in + 22);
    h->auth_len = get_u16(in + 26);
    h->opcode = get_u32(in + 28);
    h->status = get_u16(in + 32);
    return 0;
}

psa_status_t parsec_endpoint_from_env(parsec_endpoint_t *endpoint)
{
    const char *value = getenv("PARSEC_SERVICE_ENDPOINT");
    const char *path = DEFAULT_SOCKET;
    const char *auth = getenv("PARSEC_SE_DRIVER_AUTH");
    const char *timeout = getenv("PARSEC_SE_DRIVER_TIMEOUT_MS");

    memset(endpoint, 0, sizeof(*endpoint));
    if (value != NULL && value[0] != '\0') {
        if (strncmp(value, "unix:", 5) != 0) {
            return PSA_ERROR_INVALID_ARGUMENT;
        }
        path = value + 5;
    }
    if (strlen(path) >= sizeof(endpoint->socket_path)) {
        return PSA_ERROR_INVALID_ARGUMENT;
    }
    strcpy(endpoint->socket_path, path);

    if (auth == NULL || auth[0] == '\0' || strcmp(auth, "peer") == 0) {
        uint32_t uid = (uint32_t) getuid();
        endpoint->auth_type = PARSEC_AUTH_PEER_CREDENTIALS;
        put_u32(endpoint->auth, uid);
        endpoint->auth_len = 4;
    } else if (strcmp(auth, "direct") == 0) {
        const char *name = getenv("PARSEC_SE_DRIVER_APP_NAME");
        if (name == NULL || name[0] == '\0') {
            name = DEFAULT_APP_NAME;
        }
        if (strlen(name) > sizeof(endpoint->auth)) {
            return PSA_ERROR_INVALID_ARGUMENT;
        }
        endpoint->auth_type = PARSEC_AUTH_DIRECT;
        endpoint->auth_len = strlen(name);
        memcpy(endpoint->auth, name, endpoint->auth_len);
    } else {
        return PSA_ERROR_INVALID_ARGUMENT;
    }

    endpoint->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (timeout != NULL && timeout[0] != '\0') {
        char *end = NULL;
        long ms = strtol(timeout, &end, 10);
        if (*end != '\0' || ms <= 0 || ms > 600000) {
            return PSA_ERROR_INVALID_ARGUMENT;
        }
        endpoint->timeout_ms = (int) ms;
    }
    return PSA_SUCCESS;
}

psa_status_t parsec_request_bytes(const parsec_endpoint_t *endpoint, uint8_t provider,
                                  uint32_t opcode, const uint8_t *body, size_t body_len,
                                  int with_auth, uint8_t **request, size_t *request_len)
{
    parsec_header_t header;
    size_t auth_len = with_auth ? endpoint->auth_len : 0;
    size_t total = PARSEC_WIRE_HEADER_SIZE + body_len + auth_len;
    uint8_t *buffer;

    if (body_len > PARSEC_WIRE_MAX_BODY) {
        return PSA_ERROR_INVALID_ARGUMENT;
    }
    buffer = malloc(total);
    if (buffer == NULL) {
        return PSA_ERROR_INSUFFICIENT_MEMORY;
    }
    memset(&header, 0, sizeof(header));
    header.provider = provider;
    header.auth_type = with_auth ? endpoint->auth_type : PARSEC_AUTH_NONE;
    header.body_len = (uint32_t) body_len;
    header.auth_len = (uint16_t) auth_len;
    header.opcode = opcode;
    parsec_header_encode(&header, buffer);
    if (body_len > 0) {
        memcpy(buffer + PARSEC_WIRE_HEADER_SIZE, body, body_len);
    }
    if (auth_len > 0) {
        memcpy(buffer + PARSEC_WIRE_HEADER_SIZE + body_len, endpoint->auth, auth_len);
    }
    *request = buffer;
    *request_len = total;
    return PSA_SUCCESS;
}

int parsec_quiet(void)
{
    const char *quiet = getenv("PARSEC_SE_DRIVER_QUIET");
    return quiet != NULL && strcmp(quiet, "1") == 0;
}

void parsec_log(const char *format, ...)
{
    char line[512];
    va_list args;

    if (parsec_quiet()) {
        return;
    }
    va_start(args, format);
    vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    fprintf(stderr, "parsec-se-driver: %s\n", line);
}

/* One line on stderr when the service cannot be reached or answers badly, so that a failed
 * handshake says why. PARSEC_SE_DRIVER_QUIET=1 silences it. */
static void report(const parsec_endpoint_t *endpoint, const char *what, int error)
{
    parsec_log("%s the Parsec service at %s: %s", what, endpoint->socket_path,
               error == EAGAIN || error == EWOULDBLOCK || error == ETIMEDOUT
                   ? "timed out"
                   : strerror(error));
}

/* --- the deadline of one exchange --------------------------------------------------------- */

typedef struct {
    struct timespec end;
} deadline_t;

static int64_t monotonic_ns(void)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) {
        return -1;
    }
    return (int64_t) now.tv_sec * 1000000000 + now.tv_nsec;
}

static int deadline_start(deadline_t *deadline, int timeout_ms)
{
    int64_t now = monotonic_ns();
    int64_t end;
    if (now < 0) {
        return -1;
    }
    end = now + (int64_t) timeout_ms * 1000000;
    deadline->end.tv_sec = (time_t) (end / 1000000000);
    deadline->end.tv_nsec = (long) (end % 1000000000);
    return 0;
}

/* Nanoseconds left before the deadline; 0 once it has passed (or the clock fails). */
static int64_t deadline_left_ns(const deadline_t *deadline)
{
    int64_t now = monotonic_ns();
    int64_t end = (int64_t) deadline->end.tv_sec * 1000000000 + deadline->end.tv_nsec;
    return now < 0 || now >= end ? 0 : end - now;
}

/* Wait until fd is ready for `events` or the deadline passes: 0 when ready, -1 with errno
 * ETIMEDOUT (or poll's error) otherwise. poll() gets the time left rounded up to the
 * millisecond, so it never wakes before the deadline; waking after it ends the loop. */
static int wait_ready(int fd, short events, const deadline_t *deadline)
{
    for (;;) {
        struct pollfd pfd;
        int64_t left = deadline_left_ns(deadline);
        int ready;
        if (left == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        ready = poll(&pfd, 1, (int) ((left + 999999) / 1000000));
        if (ready > 0) {
            return 0;  /* readable, writable, or an error/hang-up the next call reports */
        }
        if (ready < 0 && errno != EINTR) {
            return -1;
        }
    }
}

static int send_all(int fd, const uint8_t *data, size_t len, const deadline_t *deadline)
{
    while (len > 0) {
        ssize_t sent;
        if (wait_ready(fd, POLLOUT, deadline) != 0) {
            return -1;
        }
        sent = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
                continue;
            }
            return -1;
        }
        data += sent;
        len -= (size_t) sent;
    }
    return 0;
}

static int recv_all(int fd, uint8_t *data, size_t len, const deadline_t *deadline)
{
    while (len > 0) {
        ssize_t got;
        if (wait_ready(fd, POLLIN, deadline) != 0) {
            return -1;
        }
        got = recv(fd, data, len, MSG_DONTWAIT);
        if (got == 0) {
            errno = ECONNRESET;  /* the service closed the connection early */
            return -1;
        }
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
                continue;
            }
            return -1;
        }
        data += got;
        len -= (size_t) got;
    }
    return 0;
}

/* A connected socket, or -1 with errno set. A Unix stream connect blocks only while the
 * service's backlog is full; SO_SNDTIMEO bounds that wait by the time left. */
static int connect_before(const parsec_endpoint_t *endpoint, const deadline_t *deadline)
{
    struct sockaddr_un address;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    memcpy(address.sun_path, endpoint->socket_path, strlen(endpoint->socket_path) + 1);
    for (;;) {
        int64_t left = deadline_left_ns(deadline);
        int64_t left_us = (left + 999) / 1000;
        struct timeval tv;
        if (left == 0) {
            errno = ETIMEDOUT;
            break;
        }
        /* A zero timeval would mean "no timeout": left_us is at least 1 here. */
        tv.tv_sec = (time_t) (left_us / 1000000);
        tv.tv_usec = (suseconds_t) (left_us % 1000000);
        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
            break;
        }
        if (connect(fd, (const struct sockaddr *) &address, sizeof(address)) == 0) {
            return fd;
        }
        if (errno != EINTR) {
            break;  /* EAGAIN: the backlog stayed full until the deadline */
        }
        /* Interrupted before the connection was made: try again with the time left. */
    }
    {
        int error = errno;
        close(fd);
        errno = error;
    }
    return -1;
}

psa_status_t parsec_exchange(const parsec_endpoint_t *endpoint, uint8_t provider, uint32_t opcode,
                             const uint8_t *body, size_t body_len, int with_auth,
                             int *parsec_status, uint8_t **response, size_t *response_len)
{
    uint8_t *request = NULL;
    size_t request_len = 0;
    uint8_t raw_header[PARSEC_WIRE_HEADER_SIZE];
    parsec_header_t header;
    uint8_t *reply = NULL;
    deadline_t deadline;
    psa_status_t status;
    int fd;

    *response = NULL;
    *response_len = 0;
    if (deadline_start(&deadline, endpoint->timeout_ms) != 0) {
        return PSA_ERROR_COMMUNICATION_FAILURE;
    }
    status = parsec_request_bytes(endpoint, provider, opcode, body, body_len, with_auth,
                                  &request, &request_len);
    if (status != PSA_SUCCESS) {
        return status;
    }
    fd = connect_before(endpoint, &deadline);
    if (fd < 0) {
        report(endpoint, "cannot reach", errno);
        free(request);
        return PSA_ERROR_COMMUNICATION_FAILURE;
    }
    status = PSA_ERROR_COMMUNICATION_FAILURE;
    if (send_all(fd, request, request_len, &deadline) != 0 ||
        recv_all(fd, raw_header, sizeof(raw_header), &deadline) != 0) {
        report(endpoint, "no answer from", errno);
        goto exit;
    }
    if (parsec_header_decode(raw_header, &header) != 0 ||
        (header.status == PARSEC_STATUS_SUCCESS && header.opcode != opcode) ||
        header.body_len > PARSEC_WIRE_MAX_BODY) {
        report(endpoint, "malformed response from", EPROTO);
        goto exit;
    }
    if (header.body_len > 0) {
        reply = malloc(header.body_len);
        if (reply == NULL) {
            status = PSA_ERROR_INSUFFICIENT_MEMORY;
            goto exit;
        }
        if (recv_all(fd, reply, header.body_len, &deadline) != 0) {
            report(endpoint, "incomplete response from", errno);
            free(reply);
            reply = NULL;
            goto exit;
        }
    }
    *parsec_status = header.status;
    *response = reply;
    *response_len = header.body_len;
    status = PSA_SUCCESS;
exit:
    close(fd);
    free(request);
    return status;
}
