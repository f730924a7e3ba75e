/*
 * Drives the Parsec SE driver's entry points (the PARSEC_SE_DRIVER table) the way the PSA core
 * does, one command per line on stdin, one result line per command on stdout, so that tests
 * can put a fake or a real Parsec service behind it and check every outcome.
 *
 * Commands (numbers in decimal or 0x-prefixed hex, byte strings in hex, "-" for empty):
 *
 *   init                                            p_init
 *   persistence P                                   later keys: 0 volatile (the default,
 *                                                   as a handshake's), 1 persistent
 *   import TYPE ALG USAGE BITS DATA                 p_allocate, then p_import in that slot
 *   import-at SLOT TYPE ALG USAGE BITS DATA         p_import in a given slot
 *   generate TYPE ALG USAGE BITS                    p_allocate, then p_generate
 *   allocate                                        p_allocate alone
 *   sign SLOT ALG HASH [BUFFER_SIZE]                p_sign
 *   verify SLOT ALG HASH SIGNATURE                  p_verify
 *   export SLOT [BUFFER_SIZE]                       p_export_public
 *   destroy SLOT                                    p_destroy
 *   pid                                             this process's id
 *   quit                                            exit 0 (so does the end of stdin)
 *
 * Each answer is "<command> status=<PSA status>" followed by what the call returned
 * (slot=, bits=, name= the key's name in Parsec, data=, ms= the time the call took); a line it cannot read is answered
 * "error <why>". Output buffers are allocated at their exact size, so that the sanitizers
 * see any write past them.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
#define MBEDTLS_ALLOW_PRIVATE_ACCESS

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "parsec_se_driver.h"

#define MAX_TOKENS 8
#define DEFAULT_BUFFER_SIZE 1024

static psa_drv_se_context_t context;
/* The persistence of the keys made next (the "persistence" command). */
static psa_key_persistence_t persistence = PSA_KEY_PERSISTENCE_VOLATILE;

static double now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double) now.tv_sec * 1000.0 + (double) now.tv_nsec / 1e6;
}

static int parse_number(const char *text, unsigned long long *value)
{
    char *end = NULL;
    if (text == NULL || text[0] == '\0' || text[0] == '-') {
        return -1;
    }
    *value = strtoull(text, &end, 0);
    return *end == '\0' ? 0 : -1;
}

/* Hex to a malloc'd buffer (at least one byte, so that an empty string is not NULL). */
static int parse_hex(const char *text, uint8_t **data, size_t *length)
{
    size_t digits = strcmp(text, "-") == 0 ? 0 : strlen(text);
    size_t i;
    if (digits % 2 != 0) {
        return -1;
    }
    *length = digits / 2;
    *data = malloc(*length > 0 ? *length : 1);
    if (*data == NULL) {
        return -1;
    }
    for (i = 0; i < *length; i++) {
        unsigned int byte;
        if (sscanf(text + 2 * i, "%2x", &byte) != 1) {
            free(*data);
            *data = NULL;
            return -1;
        }
        (*data)[i] = (uint8_t) byte;
    }
    return 0;
}

static void print_hex(const char *label, const uint8_t *data, size_t length)
{
    size_t i;
    printf(" %s=", label);
    if (length == 0) {
        printf("-");
    }
    for (i = 0; i < length; i++) {
        printf("%02x", data[i]);
    }
}

static void set_attributes(psa_key_attributes_t *attributes, unsigned long long type,
                           unsigned long long alg, unsigned long long usage,
                           unsigned long long bits)
{
    *attributes = psa_key_attributes_init();
    psa_set_key_type(attributes, (psa_key_type_t) type);
    psa_set_key_algorithm(attributes, (psa_algorithm_t) alg);
    psa_set_key_usage_flags(attributes, (psa_key_usage_t) usage);
    psa_set_key_bits(attributes, (size_t) bits);
    psa_set_key_lifetime(attributes, PSA_KEY_LIFETIME_FROM_PERSISTENCE_AND_LOCATION(
                                         persistence, PARSEC_SE_DRIVER_LOCATION));
}

/* import/import-at/generate: tokens start at TYPE. */
static int create_key(const char *command, char **tokens, int count, int given_slot,
                      psa_key_slot_number_t slot)
{
    const psa_drv_se_key_management_t *keys = PARSEC_SE_DRIVER.key_management;
    int generate = strcmp(command, "generate") == 0;
    unsigned long long type, alg, usage, bits;
    psa_key_attributes_t attributes;
    uint8_t *data = NULL;
    size_t length = 0;
    size_t imported_bits = 0;
    size_t pubkey_length = 0;
    psa_status_t status = PSA_SUCCESS;
    char name[PARSEC_SE_DRIVER_KEY_NAME_SIZE];
    double started;

    if (count != (generate ? 4 : 5) || parse_number(tokens[0], &type) != 0 ||
        parse_number(tokens[1], &alg) != 0 || parse_number(tokens[2], &usage) != 0 ||
        parse_number(tokens[3], &bits) != 0 ||
        (!generate && parse_hex(tokens[4], &data, &length) != 0)) {
        return -1;
    }
    set_attributes(&attributes, type, alg, usage, bits);
    started = now_ms();
    if (!given_slot) {
        status = keys->p_allocate(&context, NULL, &attributes, generate
                                                                  ? PSA_KEY_CREATION_GENERATE
                                                                  : PSA_KEY_CREATION_IMPORT,
                                  &slot);
    }
    if (status == PSA_SUCCESS && generate) {
        status = keys->p_generate(&context, slot, &attributes, NULL, 0, &pubkey_length);
    } else if (status == PSA_SUCCESS) {
        status = keys->p_import(&context, slot, &attributes, data, length, &imported_bits);
    }
    parsec_se_driver_slot_name(slot, name, sizeof(name));
    printf("%s status=%d slot=%llu bits=%zu name=%s ms=%.1f\n", command, (int) status,
           (unsigned long long) slot, generate ? (size_t) bits : imported_bits, name,
           now_ms() - started);
    free(data);
    return 0;
}

static int run(char **tokens, int count)
{
    const psa_drv_se_key_management_t *keys = PARSEC_SE_DRIVER.key_management;
    const psa_drv_se_asymmetric_t *asymmetric = PARSEC_SE_DRIVER.asymmetric;
    const char *command = tokens[0];
    unsigned long long slot = 0;
    unsigned long long alg = 0;
    unsigned long long size = DEFAULT_BUFFER_SIZE;
    psa_status_t status;
    double started = now_ms();

    if (strcmp(command, "init") == 0 && count == 1) {
        status = PARSEC_SE_DRIVER.p_init(&context, NULL, PARSEC_SE_DRIVER_LOCATION);
        printf("init status=%d\n", (int) status);
        return 0;
    }
    if (strcmp(command, "persistence") == 0 && count == 2) {
        unsigned long long value;
        if (parse_number(tokens[1], &value) != 0 || value > 1) {
            return -1;
        }
        persistence = (psa_key_persistence_t) value;
        printf("persistence status=0\n");
        return 0;
    }
    if (strcmp(command, "pid") == 0 && count == 1) {
        printf("pid status=0 pid=%ld\n", (long) getpid());
        return 0;
    }
    if (strcmp(command, "import") == 0 || strcmp(command, "generate") == 0) {
        return create_key(command, tokens + 1, count - 1, 0, 0);
    }
    if (strcmp(command, "import-at") == 0) {
        if (count < 2 || parse_number(tokens[1], &slot) != 0) {
            return -1;
        }
        return create_key(command, tokens + 2, count - 2, 1, slot);
    }
    if (strcmp(command, "allocate") == 0 && count == 1) {
        psa_key_attributes_t attributes;
        psa_key_slot_number_t allocated = 0;
        set_attributes(&attributes, 0, 0, 0, 0);
        status = keys->p_allocate(&context, NULL, &attributes, PSA_KEY_CREATION_IMPORT,
                                  &allocated);
        printf("allocate status=%d slot=%llu\n", (int) status, (unsigned long long) allocated);
        return 0;
    }
    if (count < 2 || parse_number(tokens[1], &slot) != 0) {
        return -1;
    }
    if (strcmp(command, "destroy") == 0 && count == 2) {
        status = keys->p_destroy(&context, NULL, slot);
        printf("destroy status=%d ms=%.1f\n", (int) status, now_ms() - started);
        return 0;
    }
    if (strcmp(command, "export") == 0 && (count == 2 || count == 3)) {
        uint8_t *buffer;
        size_t length = 0;
        if (count == 3 && parse_number(tokens[2], &size) != 0) {
            return -1;
        }
        buffer = malloc(size > 0 ? size : 1);
        if (buffer == NULL) {
            return -1;
        }
        status = keys->p_export_public(&context, slot, buffer, size, &length);
        printf("export status=%d", (int) status);
        print_hex("data", buffer, status == PSA_SUCCESS ? length : 0);
        printf(" ms=%.1f\n", now_ms() - started);
        free(buffer);
        return 0;
    }
    if (strcmp(command, "sign") == 0 && (count == 4 || count == 5)) {
        uint8_t *hash = NULL;
        size_t hash_length = 0;
        uint8_t *buffer;
        size_t length = 0;
        if (parse_number(tokens[2], &alg) != 0 ||
            (count == 5 && parse_number(tokens[4], &size) != 0) ||
            parse_hex(tokens[3], &hash, &hash_length) != 0) {
            return -1;
        }
        buffer = malloc(size > 0 ? size : 1);
        if (buffer == NULL) {
            free(hash);
            return -1;
        }
        status = asymmetric->p_sign(&context, slot, (psa_algorithm_t) alg, hash, hash_length,
                                    buffer, size, &length);
        printf("sign status=%d", (int) status);
        print_hex("data", buffer, status == PSA_SUCCESS ? length : 0);
        printf(" ms=%.1f\n", now_ms() - started);
        free(buffer);
        free(hash);
        return 0;
    }
    if (strcmp(command, "verify") == 0 && count == 5) {
        uint8_t *hash = NULL;
        uint8_t *signature = NULL;
        size_t hash_length = 0;
        size_t signature_length = 0;
        if (parse_number(tokens[2], &alg) != 0 ||
            parse_hex(tokens[3], &hash, &hash_length) != 0) {
            return -1;
        }
        if (parse_hex(tokens[4], &signature, &signature_length) != 0) {
            free(hash);
            return -1;
        }
        status = asymmetric->p_verify(&context, slot, (psa_algorithm_t) alg, hash, hash_length,
                                      signature, signature_length);
        printf("verify status=%d ms=%.1f\n", (int) status, now_ms() - started);
        free(signature);
        free(hash);
        return 0;
    }
    return -1;
}

int main(void)
{
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;

    while ((length = getline(&line, &capacity, stdin)) >= 0) {
        char *tokens[MAX_TOKENS];
        char *save = NULL;
        char *token;
        int count = 0;

        if (length > 0 && line[length - 1] == '\n') {
            line[length - 1] = '\0';
        }
        for (token = strtok_r(line, " ", &save); token != NULL && count < MAX_TOKENS;
             token = strtok_r(NULL, " ", &save)) {
            tokens[count++] = token;
        }
        if (count == 0) {
            continue;
        }
        if (strcmp(tokens[0], "quit") == 0) {
            break;
        }
        if (token != NULL || run(tokens, count) != 0) {
            printf("error cannot read the command %s\n", tokens[0]);
        }
        fflush(stdout);
    }
    free(line);
    return 0;
}
