/*
 * parsec_client_key: the TLS client's own key pair, made and kept in the secure element.
 *
 *   parsec_client_key generate key_id=N [csr_file=FILE] [subject_name=NAME]
 *       Generate a persistent ECC P-256 key pair with PSA key id N in the primary secure
 *       element (the Parsec SE driver: PsaGenerateKey in the Parsec service, which makes the
 *       key in the RSE), then write a PKCS#10 certificate signing request for it, signed by
 *       the key itself (psa_sign_hash through the driver: PsaSignHash). The private key never
 *       leaves the secure element; only the public key (PsaExportPublicKey) goes into the CSR.
 *   parsec_client_key csr key_id=N [csr_file=FILE] [subject_name=NAME]
 *       A new CSR for the existing key N.
 *   parsec_client_key destroy key_id=N
 *       Destroy key N (PsaDestroyKey).
 *
 * Defaults: csr_file=client.csr, subject_name="CN=parsec-demo-client,O=Parsec TLS demo".
 * Each command prints the key's Parsec name, so that an operator can find it with
 * `parsec-tool list-keys` (as the same application: the same uid).
 *
 * Mbed TLS keeps what it knows of a persistent key (its type, size and the driver's slot
 * number, never key material) in its PSA storage, files in the working directory: run this
 * program and ssl_client1 from the same directory.
 *
 * Exit status 0 on success, 1 on a failure, 2 on a usage error; one line on stderr says why.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mbedtls/pk.h"
#include "mbedtls/psa_util.h"
#include "mbedtls/x509_csr.h"
#include "parsec_se_driver.h"
#include "psa/crypto.h"

#define DEFAULT_CSR_FILE "client.csr"
#define DEFAULT_SUBJECT "CN=parsec-demo-client,O=Parsec TLS demo"
#define CSR_BUFFER_SIZE 4096

static const char USAGE[] =
    "usage: parsec_client_key generate|csr|destroy key_id=N [csr_file=FILE] "
    "[subject_name=NAME]\n";

typedef struct {
    const char *command;
    psa_key_id_t key_id;
    const char *csr_file;
    const char *subject;
} options_t;

static int usage_error(const char *what, const char *value)
{
    fprintf(stderr, "parsec_client_key: %s%s%s\n%s", what, value ? ": " : "", value ? value : "",
            USAGE);
    return 2;
}

static int parse_key_id(const char *text, psa_key_id_t *key_id)
{
    char *end = NULL;
    unsigned long value = strtoul(text, &end, 0);
    if (text[0] == '\0' || text[0] == '-' || *end != '\0' || value < PSA_KEY_ID_USER_MIN ||
        value > PSA_KEY_ID_USER_MAX) {
        return -1;
    }
    *key_id = (psa_key_id_t) value;
    return 0;
}

static int parse_options(int argc, char *argv[], options_t *options)
{
    int i;
    options->command = NULL;
    options->key_id = 0;
    options->csr_file = DEFAULT_CSR_FILE;
    options->subject = DEFAULT_SUBJECT;
    if (argc < 2) {
        return usage_error("no command", NULL);
    }
    options->command = argv[1];
    if (strcmp(argv[1], "generate") != 0 && strcmp(argv[1], "csr") != 0 &&
        strcmp(argv[1], "destroy") != 0) {
        return usage_error("unknown command", argv[1]);
    }
    for (i = 2; i < argc; i++) {
        char *value = strchr(argv[i], '=');
        if (value == NULL) {
            return usage_error("not NAME=VALUE", argv[i]);
        }
        value++;
        if (strncmp(argv[i], "key_id=", 7) == 0) {
            if (parse_key_id(value, &options->key_id) != 0) {
                return usage_error("key_id must be a persistent PSA key id, 1 to 0x3fffffff",
                                   value);
            }
        } else if (strncmp(argv[i], "csr_file=", 9) == 0) {
            options->csr_file = value;
        } else if (strncmp(argv[i], "subject_name=", 13) == 0) {
            options->subject = value;
        } else {
            return usage_error("unknown option", argv[i]);
        }
    }
    if (options->key_id == 0) {
        return usage_error("key_id=N is required", NULL);
    }
    return 0;
}

static int failed(const char *what, psa_key_id_t key_id, psa_status_t status)
{
    fprintf(stderr, "parsec_client_key: %s of key %u failed: %s (%d)\n", what,
            (unsigned) key_id,
            status == PSA_ERROR_DOES_NOT_EXIST || status == PSA_ERROR_INVALID_HANDLE ? "no such key"
                               : status == PSA_ERROR_ALREADY_EXISTS ? "the key exists"
                               : "PSA error",
            (int) status);
    return 1;
}

/* The key's name in the Parsec service, from the driver's slot number. */
static psa_status_t print_parsec_name(psa_key_id_t key_id)
{
    psa_key_attributes_t attributes = PSA_KEY_ATTRIBUTES_INIT;
    psa_key_slot_number_t slot = 0;
    char name[PARSEC_SE_DRIVER_KEY_NAME_SIZE];
    psa_status_t status = psa_get_key_attributes(mbedtls_svc_key_id_make(0, key_id), &attributes);
    if (status == PSA_SUCCESS) {
        status = psa_get_key_slot_number(&attributes, &slot);
    }
    psa_reset_key_attributes(&attributes);
    if (status != PSA_SUCCESS) {
        return status;
    }
    parsec_se_driver_key_name(slot, name, sizeof(name));
    printf("key %u is the Parsec key %s\n", (unsigned) key_id, name);
    return PSA_SUCCESS;
}

static psa_status_t generate(psa_key_id_t key_id)
{
    psa_key_attributes_t attributes = PSA_KEY_ATTRIBUTES_INIT;
    mbedtls_svc_key_id_t id = mbedtls_svc_key_id_make(0, key_id);
    psa_status_t status;
    psa_set_key_id(&attributes, id);
    psa_set_key_lifetime(&attributes, PSA_KEY_LIFETIME_FROM_PERSISTENCE_AND_LOCATION(
                                          PSA_KEY_PERSISTENCE_DEFAULT, PARSEC_SE_DRIVER_LOCATION));
    psa_set_key_type(&attributes, PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1));
    psa_set_key_bits(&attributes, 256);
    psa_set_key_usage_flags(&attributes, PSA_KEY_USAGE_SIGN_HASH);
    psa_set_key_algorithm(&attributes, PSA_ALG_ECDSA(PSA_ALG_ANY_HASH));
    status = psa_generate_key(&attributes, &id);
    psa_reset_key_attributes(&attributes);
    if (status == PSA_SUCCESS) {
        printf("generated key %u (ECC P-256, ECDSA) in the secure element\n", (unsigned) key_id);
    }
    return status;
}

static int write_csr(const options_t *options)
{
    mbedtls_pk_context key;
    mbedtls_x509write_csr request;
    unsigned char *pem = calloc(1, CSR_BUFFER_SIZE);
    FILE *out = NULL;
    int ret;

    mbedtls_pk_init(&key);
    mbedtls_x509write_csr_init(&request);
    if (pem == NULL) {
        fprintf(stderr, "parsec_client_key: out of memory\n");
        return 1;
    }
    ret = mbedtls_pk_setup_opaque(&key, mbedtls_svc_key_id_make(0, options->key_id));
    if (ret != 0) {
        fprintf(stderr, "parsec_client_key: key %u cannot sign: mbedtls_pk_setup_opaque -0x%04x\n",
                (unsigned) options->key_id, (unsigned) -ret);
        ret = 1;
        goto exit;
    }
    mbedtls_x509write_csr_set_md_alg(&request, MBEDTLS_MD_SHA256);
    mbedtls_x509write_csr_set_key(&request, &key);
    ret = mbedtls_x509write_csr_set_subject_name(&request, options->subject);
    if (ret != 0) {
        fprintf(stderr, "parsec_client_key: not a subject name: %s\n", options->subject);
        ret = 2;
        goto exit;
    }
    /* The public key by psa_export_public_key, the signature by psa_sign_hash: both in the
     * secure element. */
    ret = mbedtls_x509write_csr_pem(&request, pem, CSR_BUFFER_SIZE, mbedtls_psa_get_random,
                                    MBEDTLS_PSA_RANDOM_STATE);
    if (ret != 0) {
        fprintf(stderr, "parsec_client_key: no CSR for key %u: mbedtls_x509write_csr_pem -0x%04x\n",
                (unsigned) options->key_id, (unsigned) -ret);
        ret = 1;
        goto exit;
    }
    out = fopen(options->csr_file, "w");
    if (out == NULL || fputs((const char *) pem, out) == EOF) {
        fprintf(stderr, "parsec_client_key: cannot write %s\n", options->csr_file);
        ret = 1;
        goto exit;
    }
    printf("wrote %s for \"%s\", signed by key %u in the secure element\n", options->csr_file,
           options->subject, (unsigned) options->key_id);
    ret = 0;
exit:
    if (out != NULL && fclose(out) != 0 && ret == 0) {
        fprintf(stderr, "parsec_client_key: cannot write %s\n", options->csr_file);
        ret = 1;
    }
    mbedtls_x509write_csr_free(&request);
    mbedtls_pk_free(&key);
    free(pem);
    return ret;
}

int main(int argc, char *argv[])
{
    options_t options;
    psa_status_t status;
    int ret = parse_options(argc, argv, &options);
    if (ret != 0) {
        return ret;
    }
    status = psa_register_se_driver(PARSEC_SE_DRIVER_LOCATION, &PARSEC_SE_DRIVER);
    if (status == PSA_SUCCESS) {
        status = psa_crypto_init();
    }
    if (status != PSA_SUCCESS) {
        fprintf(stderr, "parsec_client_key: PSA crypto with the Parsec SE driver: %d\n",
                (int) status);
        return 1;
    }
    if (strcmp(options.command, "destroy") == 0) {
        print_parsec_name(options.key_id);
        status = psa_destroy_key(mbedtls_svc_key_id_make(0, options.key_id));
        if (status != PSA_SUCCESS) {
            ret = failed("destruction", options.key_id, status);
        } else {
            printf("destroyed key %u\n", (unsigned) options.key_id);
        }
    } else {
        if (strcmp(options.command, "generate") == 0) {
            status = generate(options.key_id);
            if (status != PSA_SUCCESS) {
                ret = failed("generation", options.key_id, status);
            }
        }
        if (ret == 0) {
            status = print_parsec_name(options.key_id);
            ret = status == PSA_SUCCESS ? write_csr(&options)
                                        : failed("lookup", options.key_id, status);
        }
    }
    mbedtls_psa_crypto_free();
    return ret;
}
