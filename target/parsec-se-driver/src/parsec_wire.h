/*
 * Parsec wire protocol 1.0, client side: one request per connection over a Unix socket.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PARSEC_WIRE_H
#define PARSEC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <psa/crypto.h>

#define PARSEC_WIRE_HEADER_SIZE 36u
#define PARSEC_WIRE_MAGIC 0x5EC0A710u
#define PARSEC_WIRE_MAX_BODY (1024u * 1024u)
#define PARSEC_AUTH_NONE 0u
#define PARSEC_AUTH_DIRECT 1u
#define PARSEC_AUTH_PEER_CREDENTIALS 3u
#define PARSEC_MAX_AUTH 256u
#define PARSEC_MAX_PATH 108u

/* Opcodes the driver sends. */
enum parsec_opcode {
    PARSEC_OPCODE_PSA_GENERATE_KEY = 0x02,
    PARSEC_OPCODE_PSA_DESTROY_KEY = 0x03,
    PARSEC_OPCODE_PSA_SIGN_HASH = 0x04,
    PARSEC_OPCODE_PSA_VERIFY_HASH = 0x05,
    PARSEC_OPCODE_PSA_IMPORT_KEY = 0x06,
    PARSEC_OPCODE_PSA_EXPORT_PUBLIC_KEY = 0x07,
    PARSEC_OPCODE_LIST_PROVIDERS = 0x08,
    PARSEC_OPCODE_LIST_KEYS = 0x1A
};

/* Parsec response statuses the driver treats specially. */
#define PARSEC_STATUS_SUCCESS 0
#define PARSEC_STATUS_CONNECTION_ERROR 15

typedef struct {
    uint8_t provider;
    uint64_t session;
    uint8_t content_type;
    uint8_t accept_type;
    uint8_t auth_type;
    uint32_t body_len;
    uint16_t auth_len;
    uint32_t opcode;
    uint16_t status;
} parsec_header_t;

typedef struct {
    char socket_path[PARSEC_MAX_PATH];
    uint8_t auth_type;
    uint8_t auth[PARSEC_MAX_AUTH];
    size_t auth_len;
    int timeout_ms;
} parsec_endpoint_t;

/* Encode a full request header (magic, size, version 1.0, reserved bytes zero). */
void parsec_header_encode(const parsec_header_t *header, uint8_t out[PARSEC_WIRE_HEADER_SIZE]);

/* Decode a response header; returns 0, or -1 if magic, size, version or reserved bytes are
 * wrong. */
int parsec_header_decode(const uint8_t in[PARSEC_WIRE_HEADER_SIZE], parsec_header_t *header);

/* True when PARSEC_SE_DRIVER_QUIET=1: the driver then writes nothing to stderr. */
int parsec_quiet(void);

/* One line on stderr, "parsec-se-driver: " and the formatted message, unless quiet. */
void parsec_log(const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Read the endpoint configuration from the environment (see parsec_se_driver.h). */
psa_status_t parsec_endpoint_from_env(parsec_endpoint_t *endpoint);

/*
 * Send one request and receive its response. On PSA_SUCCESS, *parsec_status holds the
 * service's status and *response (malloc'd, owned by the caller; NULL for an empty body) its
 * body. The whole exchange (connect, send the request, receive the full response) ends
 * within endpoint->timeout_ms, measured on CLOCK_MONOTONIC from the call. A failure to reach
 * the service, a deadline that passes or a malformed response is
 * PSA_ERROR_COMMUNICATION_FAILURE.
 */
psa_status_t parsec_exchange(const parsec_endpoint_t *endpoint, uint8_t provider, uint32_t opcode,
                             const uint8_t *body, size_t body_len, int with_auth,
                             int *parsec_status, uint8_t **response, size_t *response_len);

/* Build the bytes of a request exactly as parsec_exchange sends them (for tests). */
psa_status_t parsec_request_bytes(const parsec_endpoint_t *endpoint, uint8_t provider,
                                  uint32_t opcode, const uint8_t *body, size_t body_len,
                                  int with_auth, uint8_t **request, size_t *request_len);

#endif /* PARSEC_WIRE_H */
