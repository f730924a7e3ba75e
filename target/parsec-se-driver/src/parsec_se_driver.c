/*
 * The Parsec secure-element driver: a psa_drv_se_t (HAL version 5) whose keys live in the
 * Parsec service.
 *
 * Mbed TLS calls p_allocate for a new key in location PARSEC_SE_DRIVER_LOCATION, then
 * p_import or p_generate with the slot number it got; later operations name the key by that
 * slot alone. The driver forwards each call as one Parsec request (PsaImportKey,
 * PsaGenerateKey, PsaDestroyKey, PsaExportPublicKey, PsaSignHash, PsaVerifyHash).
 *
 * Key names. The Parsec key of slot N is "parsec-se-driver-key<N>" (N in decimal), so the
 * name follows from the slot, which is all a later call (or, for a persistent key, a later
 * process) has. A volatile key (the public keys Mbed TLS imports for one verification) is
 * "temporary/parsec-se-driver-key<N>": the Parsec service keeps such a key for the process
 * that made it alone (no other process, of the same application or not, can list, use,
 * destroy or replace it) and reclaims it once that process is gone, so a client that dies
 * mid-handshake leaves nothing behind. Volatile keys exist only in the process that made
 * them, so the driver knows each of its own from p_allocate on (the table below, where they
 * are never given up). Parsec keeps one key namespace per application, and the processes of one
 * application (same uid with peer credentials) may run in different containers and PID
 * namespaces, so the slot cannot come from the process id: p_allocate returns
 * nonce + counter (mod 2^64), where the nonce is 64 random bits drawn once per process from
 * getrandom(2) (/dev/urandom only where getrandom does not exist or is forbidden; with
 * neither, p_allocate fails with PSA_ERROR_INSUFFICIENT_ENTROPY) and the counter counts the
 * process's allocations. Slots are thus distinct within a process and, across processes,
 * collide only if two random 64-bit starting points fall within each other's allocation
 * counts. A forked child draws a nonce of its own before its first allocation
 * (pthread_atfork, and a change of getpid() for children made without fork()).
 *
 * The driver never destroys a key it did not create. If the service already holds a key of
 * the name (AlreadyExists on import or generate), the call fails with
 * PSA_ERROR_ALREADY_EXISTS and the existing key is left alone. A fresh name cannot be tried
 * from there: the slot, hence the name, was fixed by p_allocate before p_import or
 * p_generate runs, and the core stores it with the key.
 *
 * Replies are checked before anything reaches the caller: a public key must be exactly what
 * psa_export_public_key gives for the key's type and size (65 bytes for P-256, a DER
 * RSAPublicKey of the key's modulus size), a signature exactly PSA_SIGN_OUTPUT_SIZE bytes;
 * anything else, an empty body included, is PSA_ERROR_COMMUNICATION_FAILURE with one line on
 * stderr. p_sign and p_export_public get only the slot, so the driver keeps each key's type
 * and size in a small per-process table filled at import and generate time; a key it has not
 * seen in this process (a persistent key, or one evicted from the full table) is looked up
 * once with ListKeys.
 *
 * The driver is not thread-safe: one PSA crypto instance per process uses it, as Mbed TLS's
 * SE interface is driven.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
/* The driver table is a struct of the PSA SE HAL whose fields Mbed TLS marks private. */
#define MBEDTLS_ALLOW_PRIVATE_ACCESS

#include "parsec_se_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#if defined(PARSEC_SE_DRIVER_HAVE_GETRANDOM)
#include <sys/random.h>
#endif

#include "list_keys.pb-c.h"
#include "list_providers.pb-c.h"
#include "parsec_convert.h"
#include "parsec_wire.h"
#include "psa_destroy_key.pb-c.h"
#include "psa_export_public_key.pb-c.h"
#include "psa_generate_key.pb-c.h"
#include "psa_import_key.pb-c.h"
#include "psa_sign_hash.pb-c.h"
#include "psa_verify_hash.pb-c.h"

#define KEY_NAME_PREFIX "parsec-se-driver-key"
#define KEY_NAME_SIZE PARSEC_SE_DRIVER_KEY_NAME_SIZE
#define PROVIDER_UNKNOWN 0xFFFFu
#define PARSEC_STATUS_ALREADY_EXISTS 1139
#define PARSEC_STATUS_INVALID_SIGNATURE 1149
#define PARSEC_STATUS_PSA_COMMUNICATION_FAILURE 1145
#define KEY_TABLE_SIZE 64

/* What p_sign and p_export_public need to know about a key the driver holds, and whether it
 * is a volatile key (its name then is temporary; its entry stays until it is destroyed). */
typedef struct {
    int used;
    int temporary;
    psa_key_slot_number_t slot;
    psa_key_type_t type;
    size_t bits;
} key_info_t;

static struct {
    int configured;
    parsec_endpoint_t endpoint;
    unsigned int provider;
    int atfork_registered;
    pid_t nonce_pid;  /* the process the nonce was drawn in; 0: draw one first */
    uint64_t nonce;
    uint64_t counter;
    key_info_t keys[KEY_TABLE_SIZE];
    size_t next_victim;  /* the entry a full table gives up next */
    uint32_t refused_opcode;  /* the last refusal reported */
    int refused_status;
} driver_state;

static psa_status_t configure(void)
{
    psa_status_t status;
    if (driver_state.configured) {
        return PSA_SUCCESS;
    }
    driver_state.provider = PROVIDER_UNKNOWN;
    status = parsec_endpoint_from_env(&driver_state.endpoint);
    if (status != PSA_SUCCESS) {
        return status;
    }
    {
        const char *provider = getenv("PARSEC_SE_DRIVER_PROVIDER");
        if (provider != NULL && provider[0] != '\0') {
            char *end = NULL;
            long id = strtol(provider, &end, 0);
            if (*end != '\0' || id < 0 || id > 255) {
                return PSA_ERROR_INVALID_ARGUMENT;
            }
            driver_state.provider = (unsigned int) id;
        }
    }
    driver_state.configured = 1;
    return PSA_SUCCESS;
}

void parsec_se_driver_key_name(psa_key_slot_number_t slot, char *name, size_t size)
{
    snprintf(name, size, KEY_NAME_PREFIX "%llu", (unsigned long long) slot);
}

static key_info_t *known_key(psa_key_slot_number_t slot);

void parsec_se_driver_slot_name(psa_key_slot_number_t slot, char *name, size_t size)
{
    const key_info_t *known = known_key(slot);
    if (known != NULL && known->temporary) {
        snprintf(name, size, PARSEC_SE_DRIVER_TEMPORARY_PREFIX KEY_NAME_PREFIX "%llu",
                 (unsigned long long) slot);
    } else {
        parsec_se_driver_key_name(slot, name, size);
    }
}

static void key_name(psa_key_slot_number_t slot, char name[KEY_NAME_SIZE])
{
    parsec_se_driver_slot_name(slot, name, KEY_NAME_SIZE);
}

/* --- slot numbers ------------------------------------------------------------------------- */

/* Fill `buffer` with random bytes from the kernel: 0, or -1 if no source works. */
static int random_bytes(uint8_t *buffer, size_t size)
{
    size_t filled = 0;
    int fd;

#if defined(PARSEC_SE_DRIVER_HAVE_GETRANDOM)
    while (filled < size) {
        ssize_t got = getrandom(buffer + filled, size - filled, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        filled += (size_t) got;
    }
    if (filled == size) {
        return 0;
    }
    if (errno != ENOSYS && errno != EPERM) {
        return -1;  /* getrandom is there and failed: fail closed */
    }
    /* A kernel without getrandom, or a sandbox that forbids it: read the device instead. */
    filled = 0;
#endif
    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    while (filled < size) {
        ssize_t got = read(fd, buffer + filled, size - filled);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            break;
        }
        filled += (size_t) got;
    }
    close(fd);
    return filled == size ? 0 : -1;
}

/* In the child of a fork: draw a new nonce before the next allocation. */
static void forget_nonce_in_child(void)
{
    driver_state.nonce_pid = 0;
}

static psa_status_t next_slot(psa_key_slot_number_t *slot)
{
    pid_t pid = getpid();
    if (driver_state.nonce_pid != pid) {
        uint8_t random[8];
        uint64_t nonce = 0;
        size_t i;
        if (random_bytes(random, sizeof(random)) != 0) {
            parsec_log("no random numbers for key names (getrandom and /dev/urandom failed)");
            return PSA_ERROR_INSUFFICIENT_ENTROPY;
        }
        for (i = 0; i < sizeof(random); i++) {
            nonce = (nonce << 8) | random[i];
        }
        driver_state.nonce = nonce;
        driver_state.counter = 0;
        driver_state.nonce_pid = pid;
    }
    *slot = (psa_key_slot_number_t) (driver_state.nonce + driver_state.counter++);
    return PSA_SUCCESS;
}

/* --- what the driver knows of its keys ---------------------------------------------------- */

static key_info_t *known_key(psa_key_slot_number_t slot)
{
    size_t i;
    for (i = 0; i < KEY_TABLE_SIZE; i++) {
        if (driver_state.keys[i].used && driver_state.keys[i].slot == slot) {
            return &driver_state.keys[i];
        }
    }
    return NULL;
}

/* The entry for `slot`: its own, a free one, or a persistent key's that a full table gives
 * up (ListKeys finds that key again). NULL when every entry holds a volatile key. */
static key_info_t *table_entry(psa_key_slot_number_t slot)
{
    key_info_t *entry = known_key(slot);
    size_t i;
    for (i = 0; entry == NULL && i < KEY_TABLE_SIZE; i++) {
        if (!driver_state.keys[i].used) {
            entry = &driver_state.keys[i];
        }
    }
    for (i = 0; entry == NULL && i < KEY_TABLE_SIZE; i++) {
        key_info_t *victim = &driver_state.keys[driver_state.next_victim];
        driver_state.next_victim = (driver_state.next_victim + 1) % KEY_TABLE_SIZE;
        if (!victim->temporary) {
            entry = victim;
        }
    }
    return entry;
}

static void remember_key(psa_key_slot_number_t slot, psa_key_type_t type, size_t bits)
{
    key_info_t *entry = table_entry(slot);
    if (entry == NULL) {
        return;  /* only volatile keys, each with its entry: this one is found by ListKeys */
    }
    entry->used = 1;
    entry->slot = slot;
    entry->type = type;
    entry->bits = bits;
}

/* From p_allocate on, the slot of a volatile key is known to be temporary. */
static psa_status_t remember_temporary(psa_key_slot_number_t slot, psa_key_type_t type)
{
    key_info_t *entry = table_entry(slot);
    if (entry == NULL) {
        parsec_log("more than %d volatile keys at once in this process", KEY_TABLE_SIZE);
        return PSA_ERROR_INSUFFICIENT_MEMORY;
    }
    memset(entry, 0, sizeof(*entry));
    entry->used = 1;
    entry->temporary = 1;
    entry->slot = slot;
    entry->type = type;
    return PSA_SUCCESS;
}

static void forget_key(psa_key_slot_number_t slot)
{
    key_info_t *entry = known_key(slot);
    if (entry != NULL) {
        memset(entry, 0, sizeof(*entry));
    }
}

/* --- requests ----------------------------------------------------------------------------- */

static void report_refusal(uint32_t opcode, const ProtobufCMessage *message, int parsec_status);

/* The provider to send crypto requests to: the first one the service lists (as Parsec's
 * clients do), found once per process. */
static psa_status_t crypto_provider(uint8_t *provider)
{
    ListProviders__Operation operation = LIST_PROVIDERS__OPERATION__INIT;
    ListProviders__Result *result;
    uint8_t body[8];
    uint8_t *response = NULL;
    size_t response_len = 0;
    int parsec_status = 0;
    psa_status_t status;
    size_t i;

    if (driver_state.provider != PROVIDER_UNKNOWN) {
        *provider = (uint8_t) driver_state.provider;
        return PSA_SUCCESS;
    }
    status = parsec_exchange(&driver_state.endpoint, 0, PARSEC_OPCODE_LIST_PROVIDERS, body,
                             list_providers__operation__pack(&operation, body), 0,
                             &parsec_status, &response, &response_len);
    if (status != PSA_SUCCESS) {
        return status;
    }
    if (parsec_status != PARSEC_STATUS_SUCCESS) {
        free(response);
        report_refusal(PARSEC_OPCODE_LIST_PROVIDERS, &operation.base, parsec_status);
        return parsec_status_to_psa(parsec_status);
    }
    result = list_providers__result__unpack(NULL, response_len, response);
    free(response);
    if (result == NULL) {
        parsec_log("malformed ListProviders result from the Parsec service at %s",
                   driver_state.endpoint.socket_path);
        return PSA_ERROR_COMMUNICATION_FAILURE;
    }
    status = PSA_ERROR_NOT_SUPPORTED;
    for (i = 0; i < result->n_providers; i++) {
        if (result->providers[i]->id != 0) {  /* the first that is not the core provider */
            driver_state.provider = result->providers[i]->id & 0xFF;
            *provider = (uint8_t) driver_state.provider;
            status = PSA_SUCCESS;
            break;
        }
    }
    list_providers__result__free_unpacked(result, NULL);
    return status;
}

static const char *opcode_name(uint32_t opcode)
{
    switch (opcode) {
        case PARSEC_OPCODE_PSA_GENERATE_KEY: return "PsaGenerateKey";
        case PARSEC_OPCODE_PSA_DESTROY_KEY: return "PsaDestroyKey";
        case PARSEC_OPCODE_PSA_SIGN_HASH: return "PsaSignHash";
        case PARSEC_OPCODE_PSA_VERIFY_HASH: return "PsaVerifyHash";
        case PARSEC_OPCODE_PSA_IMPORT_KEY: return "PsaImportKey";
        case PARSEC_OPCODE_PSA_EXPORT_PUBLIC_KEY: return "PsaExportPublicKey";
        case PARSEC_OPCODE_LIST_PROVIDERS: return "ListProviders";
        case PARSEC_OPCODE_LIST_KEYS: return "ListKeys";
        default: return "a request";
    }
}

/* One line for a refusal, so that the user reads what the service refused before whatever
 * Mbed TLS makes of it ("X509 - Certificate verification failed" for a refused import). A
 * failed verification is an answer, not a refusal; AlreadyExists and a backend out of reach
 * have lines of their own. A refusal like the one before (Mbed TLS tries each candidate CA
 * key in turn) is not repeated. */
static void report_refusal(uint32_t opcode, const ProtobufCMessage *message, int parsec_status)
{
    const ProtobufCFieldDescriptor *field;
    const char *key = NULL;
    const char *hint = parsec_status_hint(parsec_status);
    char number[24];

    if (parsec_status == PARSEC_STATUS_SUCCESS || parsec_status == PARSEC_STATUS_INVALID_SIGNATURE ||
        parsec_status == PARSEC_STATUS_ALREADY_EXISTS ||
        parsec_status == PARSEC_STATUS_PSA_COMMUNICATION_FAILURE) {
        return;
    }
    if (driver_state.refused_opcode == opcode && driver_state.refused_status == parsec_status) {
        return;
    }
    driver_state.refused_opcode = opcode;
    driver_state.refused_status = parsec_status;
    field = protobuf_c_message_descriptor_get_field_by_name(message->descriptor, "key_name");
    if (field != NULL && field->type == PROTOBUF_C_TYPE_STRING) {
        key = *(char *const *) (const void *) ((const char *) message + field->offset);
    }
    parsec_log("the Parsec service at %s refused %s%s%s: %s%s%s%s",
               driver_state.endpoint.socket_path, opcode_name(opcode), key ? " of " : "",
               key ? key : "", parsec_status_name(parsec_status, number, sizeof(number)),
               hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
}

/* Pack `message`, send it as `opcode` (to the crypto provider, or to the core provider if
 * `core`), return the PSA status of the outcome and, on success, the response body (the
 * caller frees it; NULL when it is empty). */
static psa_status_t send_request(int core, uint32_t opcode, const ProtobufCMessage *message,
                                 uint8_t **response, size_t *response_len, int *parsec_status)
{
    size_t size = protobuf_c_message_get_packed_size(message);
    uint8_t *body = malloc(size > 0 ? size : 1);
    uint8_t provider = 0;
    psa_status_t status;

    *response = NULL;
    *response_len = 0;
    *parsec_status = PARSEC_STATUS_CONNECTION_ERROR;
    if (body == NULL) {
        return PSA_ERROR_INSUFFICIENT_MEMORY;
    }
    protobuf_c_message_pack(message, body);
    status = configure();
    if (status == PSA_SUCCESS && !core) {
        status = crypto_provider(&provider);
    }
    if (status == PSA_SUCCESS) {
        status = parsec_exchange(&driver_state.endpoint, provider, opcode, body, size, 1,
                                 parsec_status, response, response_len);
    }
    free(body);
    if (status != PSA_SUCCESS) {
        return status;
    }
    if (*parsec_status == PARSEC_STATUS_PSA_COMMUNICATION_FAILURE) {
        parsec_log("the Parsec service cannot reach its crypto backend "
                   "(PsaErrorCommunicationFailure)");
    }
    report_refusal(opcode, message, *parsec_status);
    status = parsec_status_to_psa(*parsec_status);
    if (status != PSA_SUCCESS) {
        free(*response);
        *response = NULL;
        *response_len = 0;
    }
    return status;
}

static psa_status_t request(uint32_t opcode, const ProtobufCMessage *message,
                            uint8_t **response, size_t *response_len, int *parsec_status)
{
    return send_request(0, opcode, message, response, response_len, parsec_status);
}

static psa_status_t simple_request(uint32_t opcode, const ProtobufCMessage *message)
{
    uint8_t *response;
    size_t response_len;
    int parsec_status;
    psa_status_t status = request(opcode, message, &response, &response_len, &parsec_status);
    free(response);
    return status;
}

/* A reply the driver refuses: one line on stderr, and the failure to return. */
static psa_status_t bad_reply(const char *operation, const char *name, const char *what,
                              size_t length)
{
    parsec_log("malformed %s result from the Parsec service at %s for %s: %s (%zu bytes)",
               operation, driver_state.endpoint.socket_path, name, what, length);
    return PSA_ERROR_COMMUNICATION_FAILURE;
}

/* The type and size of the key in `slot`: from this process's table, or asked of the
 * service (ListKeys) for a key created elsewhere. */
static psa_status_t key_info(psa_key_slot_number_t slot, const char *name, key_info_t *info)
{
    ListKeys__Operation operation = LIST_KEYS__OPERATION__INIT;
    ListKeys__Result *result;
    const key_info_t *known = known_key(slot);
    uint8_t *response;
    size_t response_len;
    int parsec_status;
    uint8_t provider = 0;
    psa_status_t status;
    size_t i;

    if (known != NULL) {
        *info = *known;
        return PSA_SUCCESS;
    }
    status = configure();
    if (status == PSA_SUCCESS) {
        status = crypto_provider(&provider);
    }
    if (status == PSA_SUCCESS) {
        status = send_request(1, PARSEC_OPCODE_LIST_KEYS, &operation.base, &response,
                              &response_len, &parsec_status);
    }
    if (status != PSA_SUCCESS) {
        return status;
    }
    result = list_keys__result__unpack(NULL, response_len, response);
    free(response);
    if (result == NULL) {
        return bad_reply("ListKeys", name, "not a ListKeys result", response_len);
    }
    status = PSA_ERROR_DOES_NOT_EXIST;
    for (i = 0; i < result->n_keys; i++) {
        const ListKeys__KeyInfo *entry = result->keys[i];
        psa_key_type_t type;
        if (entry->name == NULL || strcmp(entry->name, name) != 0 ||
            entry->provider_id != provider) {
            continue;
        }
        if (entry->attributes == NULL || entry->attributes->key_bits == 0 ||
            parsec_key_type_to_psa(entry->attributes->key_type, &type) != PSA_SUCCESS) {
            status = bad_reply("ListKeys", name, "no usable attributes", response_len);
            break;
        }
        remember_key(slot, type, entry->attributes->key_bits);
        *info = *known_key(slot);
        status = PSA_SUCCESS;
        break;
    }
    list_keys__result__free_unpacked(result, NULL);
    if (status == PSA_ERROR_DOES_NOT_EXIST) {
        /* Mbed TLS knows the key (a persistent key's record), the service does not: it was
         * destroyed elsewhere, or the record belongs to another application. */
        parsec_log("the Parsec service at %s holds no key named %s for this application",
                   driver_state.endpoint.socket_path, name);
    }
    return status;
}

/* --- driver entry points ------------------------------------------------------------------ */

/* Copies a checked byte field of a reply into the core's buffer, or says that it does not
 * fit. */
static psa_status_t copy_out(const ProtobufCBinaryData *field, uint8_t *buffer, size_t size,
                             size_t *length)
{
    if (field->len > size) {
        return PSA_ERROR_BUFFER_TOO_SMALL;
    }
    if (field->len > 0) {
        memcpy(buffer, field->data, field->len);
    }
    *length = field->len;
    return PSA_SUCCESS;
}

static psa_status_t parsec_init(psa_drv_se_context_t *drv_context, void *persistent_data,
                                psa_key_location_t location)
{
    (void) drv_context;
    (void) persistent_data;
    if (location != PARSEC_SE_DRIVER_LOCATION) {
        return PSA_ERROR_INVALID_ARGUMENT;
    }
    if (!driver_state.atfork_registered) {
        if (pthread_atfork(NULL, NULL, forget_nonce_in_child) != 0) {
            return PSA_ERROR_INSUFFICIENT_MEMORY;
        }
        driver_state.atfork_registered = 1;
    }
    driver_state.configured = 0;
    memset(driver_state.keys, 0, sizeof(driver_state.keys));
    driver_state.next_victim = 0;
    return configure();
}

static psa_status_t parsec_allocate(psa_drv_se_context_t *drv_context, void *persistent_data,
                                    const psa_key_attributes_t *attributes,
                                    psa_key_creation_method_t method,
                                    psa_key_slot_number_t *key_slot)
{
    psa_status_t status;
    (void) drv_context;
    (void) persistent_data;
    if (method == PSA_KEY_CREATION_REGISTER) {
        return PSA_ERROR_NOT_SUPPORTED;  /* keys must be created through the driver */
    }
    status = next_slot(key_slot);
    if (status == PSA_SUCCESS && PSA_KEY_LIFETIME_IS_VOLATILE(psa_get_key_lifetime(attributes))) {
        status = remember_temporary(*key_slot, psa_get_key_type(attributes));
    }
    return status;
}

static psa_status_t parsec_validate_slot_number(psa_drv_se_context_t *drv_context,
                                                void *persistent_data,
                                                const psa_key_attributes_t *attributes,
                                                psa_key_creation_method_t method,
                                                psa_key_slot_number_t key_slot)
{
    (void) drv_context;
    (void) persistent_data;
    (void) attributes;
    (void) key_slot;
    return method == PSA_KEY_CREATION_REGISTER ? PSA_ERROR_NOT_SUPPORTED : PSA_SUCCESS;
}

static psa_status_t parsec_destroy(psa_drv_se_context_t *drv_context, void *persistent_data,
                                   psa_key_slot_number_t key_slot)
{
    PsaDestroyKey__Operation operation = PSA_DESTROY_KEY__OPERATION__INIT;
    char name[KEY_NAME_SIZE];
    (void) drv_context;
    (void) persistent_data;
    key_name(key_slot, name);
    operation.key_name = name;
    forget_key(key_slot);
    return simple_request(PARSEC_OPCODE_PSA_DESTROY_KEY, &operation.base);
}

/* The outcome of creating the key `name`: AlreadyExists says that the name is taken by a key
 * the driver did not create in this slot, which it leaves alone. */
static psa_status_t created(psa_status_t status, int parsec_status, const char *name)
{
    if (parsec_status == PARSEC_STATUS_ALREADY_EXISTS) {
        parsec_log("the Parsec service already holds a key named %s; leaving it alone", name);
    }
    return status;
}

static psa_status_t parsec_import(psa_drv_se_context_t *drv_context,
                                  psa_key_slot_number_t key_slot,
                                  const psa_key_attributes_t *attributes, const uint8_t *data,
                                  size_t data_length, size_t *bits)
{
    PsaImportKey__Operation operation = PSA_IMPORT_KEY__OPERATION__INIT;
    parsec_key_attributes_t converted;
    char name[KEY_NAME_SIZE];
    size_t key_bits = psa_get_key_bits(attributes);
    uint8_t *response;
    size_t response_len;
    int parsec_status;
    psa_status_t status;
    (void) drv_context;

    if (key_bits == 0) {
        key_bits = parsec_key_bits_from_data(psa_get_key_type(attributes), data, data_length);
        if (key_bits == 0) {
            return PSA_ERROR_INVALID_ARGUMENT;
        }
    }
    status = parsec_key_attributes_from_psa(attributes, key_bits, &converted);
    if (status != PSA_SUCCESS) {
        return status;
    }
    key_name(key_slot, name);
    operation.key_name = name;
    operation.attributes = &converted.attributes;
    operation.data.data = (uint8_t *) data;
    operation.data.len = data_length;
    status = request(PARSEC_OPCODE_PSA_IMPORT_KEY, &operation.base, &response, &response_len,
                     &parsec_status);
    free(response);
    status = created(status, parsec_status, name);
    if (status == PSA_SUCCESS) {
        remember_key(key_slot, psa_get_key_type(attributes), key_bits);
        *bits = key_bits;
    } else {
        forget_key(key_slot);  /* the core does not destroy a key whose creation failed */
    }
    return status;
}

static psa_status_t parsec_generate(psa_drv_se_context_t *drv_context,
                                    psa_key_slot_number_t key_slot,
                                    const psa_key_attributes_t *attributes, uint8_t *pubkey,
                                    size_t pubkey_size, size_t *pubkey_length)
{
    PsaGenerateKey__Operation operation = PSA_GENERATE_KEY__OPERATION__INIT;
    parsec_key_attributes_t converted;
    char name[KEY_NAME_SIZE];
    uint8_t *response;
    size_t response_len;
    int parsec_status;
    psa_status_t status;
    (void) drv_context;
    (void) pubkey;
    (void) pubkey_size;

    if (psa_get_key_bits(attributes) == 0) {
        return PSA_ERROR_INVALID_ARGUMENT;
    }
    status = parsec_key_attributes_from_psa(attributes, psa_get_key_bits(attributes), &converted);
    if (status != PSA_SUCCESS) {
        return status;
    }
    key_name(key_slot, name);
    operation.key_name = name;
    operation.attributes = &converted.attributes;
    if (pubkey_length != NULL) {
        *pubkey_length = 0;  /* the core asks for the public key with p_export_public */
    }
    status = request(PARSEC_OPCODE_PSA_GENERATE_KEY, &operation.base, &response, &response_len,
                     &parsec_status);
    free(response);
    status = created(status, parsec_status, name);
    if (status == PSA_SUCCESS) {
        remember_key(key_slot, psa_get_key_type(attributes), psa_get_key_bits(attributes));
    } else {
        forget_key(key_slot);
    }
    return status;
}

static psa_status_t parsec_export_public(psa_drv_se_context_t *drv_context,
                                         psa_key_slot_number_t key_slot, uint8_t *p_data,
                                         size_t data_size, size_t *p_data_length)
{
    PsaExportPublicKey__Operation operation = PSA_EXPORT_PUBLIC_KEY__OPERATION__INIT;
    PsaExportPublicKey__Result *result;
    char name[KEY_NAME_SIZE];
    key_info_t info;
    uint8_t *response;
    size_t response_len;
    int parsec_status;
    psa_status_t status;
    (void) drv_context;

    key_name(key_slot, name);
    status = key_info(key_slot, name, &info);
    if (status != PSA_SUCCESS) {
        return status;
    }
    operation.key_name = name;
    status = request(PARSEC_OPCODE_PSA_EXPORT_PUBLIC_KEY, &operation.base, &response,
                     &response_len, &parsec_status);
    if (status != PSA_SUCCESS) {
        return status;
    }
    result = psa_export_public_key__result__unpack(NULL, response_len, response);
    free(response);
    if (result == NULL) {
        return bad_reply("PsaExportPublicKey", name, "not a PsaExportPublicKey result",
                         response_len);
    }
    if (parsec_check_public_key(info.type, info.bits, result->data.data, result->data.len) !=
        0) {
        status = bad_reply("PsaExportPublicKey", name,
                           "not a public key of the key's type and size", result->data.len);
    } else {
        status = copy_out(&result->data, p_data, data_size, p_data_length);
    }
    psa_export_public_key__result__free_unpacked(result, NULL);
    return status;
}

static psa_status_t parsec_sign(psa_drv_se_context_t *drv_context,
                                psa_key_slot_number_t key_slot, psa_algorithm_t alg,
                                const uint8_t *p_hash, size_t hash_length, uint8_t *p_signature,
                                size_t signature_size, size_t *p_signature_length)
{
    PsaSignHash__Operation operation = PSA_SIGN_HASH__OPERATION__INIT;
    PsaSignHash__Result *result;
    parsec_sign_alg_t converted;
    char name[KEY_NAME_SIZE];
    key_info_t info;
    size_t expected;
    uint8_t *response;
    size_t response_len;
    int parsec_status;
    psa_status_t status;
    (void) drv_context;

    status = parsec_sign_alg_from_psa(alg, &converted);
    if (status != PSA_SUCCESS) {
        return status;
    }
    key_name(key_slot, name);
    status = key_info(key_slot, name, &info);
    if (status != PSA_SUCCESS) {
        return status;
    }
    expected = parsec_signature_length(info.type, info.bits, alg);
    if (expected == 0) {
        return PSA_ERROR_INVALID_ARGUMENT;  /* the algorithm does not go with the key type */
    }
    if (signature_size < expected) {
        return PSA_ERROR_BUFFER_TOO_SMALL;
    }
    operation.key_name = name;
    operation.alg = &converted.signature;
    operation.hash.data = (uint8_t *) p_hash;
    operation.hash.len = hash_length;
    status = request(PARSEC_OPCODE_PSA_SIGN_HASH, &operation.base, &response, &response_len,
                     &parsec_status);
    if (status != PSA_SUCCESS) {
        return status;
    }
    result = psa_sign_hash__result__unpack(NULL, response_len, response);
    free(response);
    if (result == NULL) {
        return bad_reply("PsaSignHash", name, "not a PsaSignHash result", response_len);
    }
    if (result->signature.len != expected) {
        status = bad_reply("PsaSignHash", name, "not a signature of the key's size",
                           result->signature.len);
    } else {
        status = copy_out(&result->signature, p_signature, signature_size, p_signature_length);
    }
    psa_sign_hash__result__free_unpacked(result, NULL);
    return status;
}

static psa_status_t parsec_verify(psa_drv_se_context_t *drv_context,
                                  psa_key_slot_number_t key_slot, psa_algorithm_t alg,
                                  const uint8_t *p_hash, size_t hash_length,
                                  const uint8_t *p_signature, size_t signature_length)
{
    PsaVerifyHash__Operation operation = PSA_VERIFY_HASH__OPERATION__INIT;
    parsec_sign_alg_t converted;
    char name[KEY_NAME_SIZE];
    psa_status_t status;
    (void) drv_context;

    status = parsec_sign_alg_from_psa(alg, &converted);
    if (status != PSA_SUCCESS) {
        return status;
    }
    key_name(key_slot, name);
    operation.key_name = name;
    operation.alg = &converted.signature;
    operation.hash.data = (uint8_t *) p_hash;
    operation.hash.len = hash_length;
    operation.signature.data = (uint8_t *) p_signature;
    operation.signature.len = signature_length;
    return simple_request(PARSEC_OPCODE_PSA_VERIFY_HASH, &operation.base);
}

static const psa_drv_se_key_management_t key_management = {
    .p_allocate = parsec_allocate,
    .p_validate_slot_number = parsec_validate_slot_number,
    .p_import = parsec_import,
    .p_generate = parsec_generate,
    .p_destroy = parsec_destroy,
    .p_export = NULL,
    .p_export_public = parsec_export_public,
};

static const psa_drv_se_asymmetric_t asymmetric = {
    .p_sign = parsec_sign,
    .p_verify = parsec_verify,
    .p_encrypt = NULL,
    .p_decrypt = NULL,
};

psa_drv_se_t PARSEC_SE_DRIVER = {
    .hal_version = PSA_DRV_SE_HAL_VERSION,
    .persistent_data_size = 0,
    .p_init = parsec_init,
    .key_management = &key_management,
    .mac = NULL,
    .cipher = NULL,
    .aead = NULL,
    .asymmetric = &asymmetric,
    .derivation = NULL,
};
