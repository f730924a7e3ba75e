/*
 * The Parsec secure-element driver: a psa_drv_se_t (HAL version 5) whose keys live in the
 * Parsec service.
 *
 * Mbed TLS calls p_allocate for a new key in location PARSEC_SE_DRIVER_LOCATION, then
 * p_import or p_generate with the slot number it got; later operations name the key by that
 * slot. The driver names the Parsec key "parsec-se-driver-key<slot>" and forwards each call as
 * one Parsec request (PsaImportKey, PsaGenerateKey, PsaDestroyKey, PsaExportPublicKey,
 * PsaSignHash, PsaVerifyHash). Slot numbers carry the process id in their upper half, so
 * clients running side by side under the same identity never pick the same name.
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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
#define KEY_NAME_SIZE 48
#define PROVIDER_UNKNOWN 0xFFFFu
#define PARSEC_STATUS_ALREADY_EXISTS 1139

static struct {
    int configured;
    parsec_endpoint_t endpoint;
    unsigned int provider;
    uint32_t next_slot;
} driver_state = {0, {{0}, 0, {0}, 0, 0}, PROVIDER_UNKNOWN, 0};

static psa_status_t configure(void)
{
    psa_status_t status;
    if (driver_state.configured) {
        return PSA_SUCCESS;
    }
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

static void key_name(psa_key_slot_number_t slot, char name[KEY_NAME_SIZE])
{
    snprintf(name, KEY_NAME_SIZE, KEY_NAME_PREFIX "%llu", (unsigned long long) slot);
}

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
        return parsec_status_to_psa(parsec_status);
    }
    result = list_providers__result__unpack(NULL, response_len, response);
    free(response);
    if (result == NULL) {
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

/* Pack `message`, send it as `opcode` to the crypto provider, return the PSA status of the
 * outcome and, on success, the response body (the caller frees it). */
static psa_status_t request(uint32_t opcode, const ProtobufCMessage *message,
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
    if (status == PSA_SUCCESS) {
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
    if (*parsec_status == 1145 && getenv("PARSEC_SE_DRIVER_QUIET") == NULL) {
        fprintf(stderr, "parsec-se-driver: the Parsec service cannot reach its crypto backend "
                        "(PsaErrorCommunicationFailure)\n");
    }
    status = parsec_status_to_psa(*parsec_status);
    if (status != PSA_SUCCESS) {
        free(*response);
        *response = NULL;
        *response_len = 0;
    }
    return status;
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

/* --- driver entry points ------------------------------------------------------------------ */

/* Copies a byte field of a reply into the core's buffer, or says that it does not fit. */
static psa_status_t copy_out(const ProtobufCBinaryData *field, uint8_t *buffer, size_t size,
                             size_t *length)
{
    if (field->len > size) {
        return PSA_ERROR_BUFFER_TOO_SMALL;
    }
    memcpy(buffer, field->data, field->len);
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
    driver_state.configured = 0;
    driver_state.provider = PROVIDER_UNKNOWN;
    return configure();
}

static psa_status_t parsec_allocate(psa_drv_se_context_t *drv_context, void *persistent_data,
                                    const psa_key_attributes_t *attributes,
                                    psa_key_creation_method_t method,
                                    psa_key_slot_number_t *key_slot)
{
    (void) drv_context;
    (void) persistent_data;
    (void) attributes;
    if (method == PSA_KEY_CREATION_REGISTER) {
        return PSA_ERROR_NOT_SUPPORTED;  /* keys must be created through the driver */
    }
    *key_slot = ((psa_key_slot_number_t) (uint32_t) getpid() << 32) | driver_state.next_slot++;
    return PSA_SUCCESS;
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
    return simple_request(PARSEC_OPCODE_PSA_DESTROY_KEY, &operation.base);
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
    if (parsec_status == PARSEC_STATUS_ALREADY_EXISTS) {
        /* The name holds this process's id: the key was left by a process that died with
         * the same id. It is stale; replace it. */
        PsaDestroyKey__Operation destroy = PSA_DESTROY_KEY__OPERATION__INIT;
        destroy.key_name = name;
        status = simple_request(PARSEC_OPCODE_PSA_DESTROY_KEY, &destroy.base);
        if (status == PSA_SUCCESS) {
            status = request(PARSEC_OPCODE_PSA_IMPORT_KEY, &operation.base, &response,
                             &response_len, &parsec_status);
        }
    }
    free(response);
    if (status == PSA_SUCCESS) {
        *bits = key_bits;
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
    return simple_request(PARSEC_OPCODE_PSA_GENERATE_KEY, &operation.base);
}

static psa_status_t parsec_export_public(psa_drv_se_context_t *drv_context,
                                         psa_key_slot_number_t key_slot, uint8_t *p_data,
                                         size_t data_size, size_t *p_data_length)
{
    PsaExportPublicKey__Operation operation = PSA_EXPORT_PUBLIC_KEY__OPERATION__INIT;
    PsaExportPublicKey__Result *result;
    char name[KEY_NAME_SIZE];
    uint8_t *response;
    size_t response_len;
    int parsec_status;
    psa_status_t status;
    (void) drv_context;

    key_name(key_slot, name);
    operation.key_name = name;
    status = request(PARSEC_OPCODE_PSA_EXPORT_PUBLIC_KEY, &operation.base, &response,
                     &response_len, &parsec_status);
    if (status != PSA_SUCCESS) {
        return status;
    }
    result = psa_export_public_key__result__unpack(NULL, response_len, response);
    free(response);
    if (result == NULL) {
        return PSA_ERROR_COMMUNICATION_FAILURE;
    }
    status = copy_out(&result->data, p_data, data_size, p_data_length);
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
        return PSA_ERROR_COMMUNICATION_FAILURE;
    }
    status = copy_out(&result->signature, p_signature, signature_size, p_signature_length);
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
