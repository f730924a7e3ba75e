/*
 * PSA values to Parsec protobuf messages and back.
 *
 * SPDX-License-Identifier: MIT
 */
#include "parsec_convert.h"

#include <stdio.h>
#include <string.h>

/* PSA hash (low byte of PSA_ALG_xxx hash ids) -> Parsec Algorithm.Hash. */
static int hash_from_psa(psa_algorithm_t hash_alg, PsaAlgorithm__Algorithm__Hash *out)
{
    switch (hash_alg & 0xFF) {
        case 0x03: *out = PSA_ALGORITHM__ALGORITHM__HASH__MD5; return 0;
        case 0x04: *out = PSA_ALGORITHM__ALGORITHM__HASH__RIPEMD160; return 0;
        case 0x05: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA_1; return 0;
        case 0x08: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA_224; return 0;
        case 0x09: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA_256; return 0;
        case 0x0A: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA_384; return 0;
        case 0x0B: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA_512; return 0;
        case 0x0C: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA_512_224; return 0;
        case 0x0D: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA_512_256; return 0;
        case 0x10: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA3_224; return 0;
        case 0x11: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA3_256; return 0;
        case 0x12: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA3_384; return 0;
        case 0x13: *out = PSA_ALGORITHM__ALGORITHM__HASH__SHA3_512; return 0;
        default: return -1;
    }
}

psa_status_t parsec_sign_alg_from_psa(psa_algorithm_t alg, parsec_sign_alg_t *out)
{
    psa_algorithm_t base = alg & ~(psa_algorithm_t) 0xFF;
    psa_algorithm_t hash = alg & 0xFF;
    PsaAlgorithm__Algorithm__AsymmetricSignature__SignHash **slot = NULL;

    memset(out, 0, sizeof(*out));
    psa_algorithm__algorithm__asymmetric_signature__init(&out->signature);
    psa_algorithm__algorithm__asymmetric_signature__sign_hash__init(&out->sign_hash);
    psa_algorithm__algorithm__asymmetric_signature__sign_hash__any__init(&out->any);

    if (base == 0x06000200 && hash == 0) {
        psa_algorithm__algorithm__asymmetric_signature__rsa_pkcs1v15_sign_raw__init(
            &out->scheme.pkcs1_raw);
        out->signature.variant_case =
            PSA_ALGORITHM__ALGORITHM__ASYMMETRIC_SIGNATURE__VARIANT_RSA_PKCS1V15_SIGN_RAW;
        out->signature.rsa_pkcs1v15_sign_raw = &out->scheme.pkcs1_raw;
        return PSA_SUCCESS;
    }
    if (base == 0x06000600 && hash == 0) {
        psa_algorithm__algorithm__asymmetric_signature__ecdsa_any__init(&out->scheme.ecdsa_any);
        out->signature.variant_case =
            PSA_ALGORITHM__ALGORITHM__ASYMMETRIC_SIGNATURE__VARIANT_ECDSA_ANY;
        out->signature.ecdsa_any = &out->scheme.ecdsa_any;
        return PSA_SUCCESS;
    }
    switch (base) {
        case 0x06000200:
            psa_algorithm__algorithm__asymmetric_signature__rsa_pkcs1v15_sign__init(
                &out->scheme.pkcs1);
            out->signature.variant_case =
                PSA_ALGORITHM__ALGORITHM__ASYMMETRIC_SIGNATURE__VARIANT_RSA_PKCS1V15_SIGN;
            out->signature.rsa_pkcs1v15_sign = &out->scheme.pkcs1;
            slot = &out->scheme.pkcs1.hash_alg;
            break;
        case 0x06000300:
            psa_algorithm__algorithm__asymmetric_signature__rsa_pss__init(&out->scheme.pss);
            out->signature.variant_case =
                PSA_ALGORITHM__ALGORITHM__ASYMMETRIC_SIGNATURE__VARIANT_RSA_PSS;
            out->signature.rsa_pss = &out->scheme.pss;
            slot = &out->scheme.pss.hash_alg;
            break;
        case 0x06000600:
            psa_algorithm__algorithm__asymmetric_signature__ecdsa__init(&out->scheme.ecdsa);
            out->signature.variant_case =
                PSA_ALGORITHM__ALGORITHM__ASYMMETRIC_SIGNATURE__VARIANT_ECDSA;
            out->signature.ecdsa = &out->scheme.ecdsa;
            slot = &out->scheme.ecdsa.hash_alg;
            break;
        case 0x06000700:
            psa_algorithm__algorithm__asymmetric_signature__deterministic_ecdsa__init(
                &out->scheme.deterministic);
            out->signature.variant_case =
                PSA_ALGORITHM__ALGORITHM__ASYMMETRIC_SIGNATURE__VARIANT_DETERMINISTIC_ECDSA;
            out->signature.deterministic_ecdsa = &out->scheme.deterministic;
            slot = &out->scheme.deterministic.hash_alg;
            break;
        default:
            return PSA_ERROR_NOT_SUPPORTED;  /* e.g. RSA-PSS with any salt length */
    }
    if (hash == 0xFF) {
        out->sign_hash.variant_case =
            PSA_ALGORITHM__ALGORITHM__ASYMMETRIC_SIGNATURE__SIGN_HASH__VARIANT_ANY;
        out->sign_hash.any = &out->any;
    } else {
        out->sign_hash.variant_case =
            PSA_ALGORITHM__ALGORITHM__ASYMMETRIC_SIGNATURE__SIGN_HASH__VARIANT_SPECIFIC;
        if (hash_from_psa(hash, &out->sign_hash.specific) != 0) {
            return PSA_ERROR_NOT_SUPPORTED;
        }
    }
    *slot = &out->sign_hash;
    return PSA_SUCCESS;
}

/* PSA ECC families and their Parsec KeyType.EccFamily. */
static const struct {
    psa_ecc_family_t psa;
    PsaKeyAttributes__KeyType__EccFamily parsec;
} ecc_families[] = {
    {0x17, PSA_KEY_ATTRIBUTES__KEY_TYPE__ECC_FAMILY__SECP_K1},
    {0x12, PSA_KEY_ATTRIBUTES__KEY_TYPE__ECC_FAMILY__SECP_R1},
    {0x1B, PSA_KEY_ATTRIBUTES__KEY_TYPE__ECC_FAMILY__SECP_R2},
    {0x27, PSA_KEY_ATTRIBUTES__KEY_TYPE__ECC_FAMILY__SECT_K1},
    {0x22, PSA_KEY_ATTRIBUTES__KEY_TYPE__ECC_FAMILY__SECT_R1},
    {0x2B, PSA_KEY_ATTRIBUTES__KEY_TYPE__ECC_FAMILY__SECT_R2},
    {0x30, PSA_KEY_ATTRIBUTES__KEY_TYPE__ECC_FAMILY__BRAINPOOL_P_R1},
    {0x33, PSA_KEY_ATTRIBUTES__KEY_TYPE__ECC_FAMILY__FRP},
    {0x41, PSA_KEY_ATTRIBUTES__KEY_TYPE__ECC_FAMILY__MONTGOMERY},
};
#define ECC_FAMILY_COUNT (sizeof(ecc_families) / sizeof(ecc_families[0]))

static int ecc_family_from_psa(psa_ecc_family_t family, PsaKeyAttributes__KeyType__EccFamily *out)
{
    size_t i;
    for (i = 0; i < ECC_FAMILY_COUNT; i++) {
        if (ecc_families[i].psa == family) {
            *out = ecc_families[i].parsec;
            return 0;
        }
    }
    return -1;
}

static int ecc_family_to_psa(PsaKeyAttributes__KeyType__EccFamily family, psa_ecc_family_t *out)
{
    size_t i;
    for (i = 0; i < ECC_FAMILY_COUNT; i++) {
        if (ecc_families[i].parsec == family) {
            *out = ecc_families[i].psa;
            return 0;
        }
    }
    return -1;
}

psa_status_t parsec_key_attributes_from_psa(const psa_key_attributes_t *attributes, size_t bits,
                                            parsec_key_attributes_t *out)
{
    psa_key_type_t type = psa_get_key_type(attributes);
    psa_key_usage_t usage = psa_get_key_usage_flags(attributes);
    psa_algorithm_t alg = psa_get_key_algorithm(attributes);
    psa_status_t status;

    memset(out, 0, sizeof(*out));
    psa_key_attributes__key_attributes__init(&out->attributes);
    psa_key_attributes__key_type__init(&out->key_type);
    psa_key_attributes__key_policy__init(&out->policy);
    psa_key_attributes__usage_flags__init(&out->usage);
    psa_algorithm__algorithm__init(&out->algorithm);

    if (type == PSA_KEY_TYPE_RSA_PUBLIC_KEY) {
        psa_key_attributes__key_type__rsa_public_key__init(&out->type.rsa_public);
        out->key_type.variant_case = PSA_KEY_ATTRIBUTES__KEY_TYPE__VARIANT_RSA_PUBLIC_KEY;
        out->key_type.rsa_public_key = &out->type.rsa_public;
    } else if (type == PSA_KEY_TYPE_RSA_KEY_PAIR) {
        psa_key_attributes__key_type__rsa_key_pair__init(&out->type.rsa_pair);
        out->key_type.variant_case = PSA_KEY_ATTRIBUTES__KEY_TYPE__VARIANT_RSA_KEY_PAIR;
        out->key_type.rsa_key_pair = &out->type.rsa_pair;
    } else if (PSA_KEY_TYPE_IS_ECC_PUBLIC_KEY(type)) {
        psa_key_attributes__key_type__ecc_public_key__init(&out->type.ecc_public);
        if (ecc_family_from_psa(PSA_KEY_TYPE_ECC_GET_FAMILY(type),
                                &out->type.ecc_public.curve_family) != 0) {
            return PSA_ERROR_NOT_SUPPORTED;
        }
        out->key_type.variant_case = PSA_KEY_ATTRIBUTES__KEY_TYPE__VARIANT_ECC_PUBLIC_KEY;
        out->key_type.ecc_public_key = &out->type.ecc_public;
    } else if (PSA_KEY_TYPE_IS_ECC_KEY_PAIR(type)) {
        psa_key_attributes__key_type__ecc_key_pair__init(&out->type.ecc_pair);
        if (ecc_family_from_psa(PSA_KEY_TYPE_ECC_GET_FAMILY(type),
                                &out->type.ecc_pair.curve_family) != 0) {
            return PSA_ERROR_NOT_SUPPORTED;
        }
        out->key_type.variant_case = PSA_KEY_ATTRIBUTES__KEY_TYPE__VARIANT_ECC_KEY_PAIR;
        out->key_type.ecc_key_pair = &out->type.ecc_pair;
    } else {
        return PSA_ERROR_NOT_SUPPORTED;  /* the driver handles asymmetric keys only */
    }

    out->usage.export = (usage & PSA_KEY_USAGE_EXPORT) != 0;
    out->usage.copy = (usage & PSA_KEY_USAGE_COPY) != 0;
    out->usage.cache = (usage & 0x0004) != 0;  /* PSA_KEY_USAGE_CACHE, not in Mbed TLS */
    out->usage.encrypt = (usage & PSA_KEY_USAGE_ENCRYPT) != 0;
    out->usage.decrypt = (usage & PSA_KEY_USAGE_DECRYPT) != 0;
    out->usage.sign_message = (usage & PSA_KEY_USAGE_SIGN_MESSAGE) != 0;
    out->usage.verify_message = (usage & PSA_KEY_USAGE_VERIFY_MESSAGE) != 0;
    out->usage.sign_hash = (usage & PSA_KEY_USAGE_SIGN_HASH) != 0;
    out->usage.verify_hash = (usage & PSA_KEY_USAGE_VERIFY_HASH) != 0;
    out->usage.derive = (usage & PSA_KEY_USAGE_DERIVE) != 0;

    if (alg == PSA_ALG_NONE) {
        psa_algorithm__algorithm__none__init(&out->none);
        out->algorithm.variant_case = PSA_ALGORITHM__ALGORITHM__VARIANT_NONE;
        out->algorithm.none = &out->none;
    } else {
        status = parsec_sign_alg_from_psa(alg, &out->sign_alg);
        if (status != PSA_SUCCESS) {
            return status;
        }
        out->algorithm.variant_case = PSA_ALGORITHM__ALGORITHM__VARIANT_ASYMMETRIC_SIGNATURE;
        out->algorithm.asymmetric_signature = &out->sign_alg.signature;
    }

    out->policy.key_usage_flags = &out->usage;
    out->policy.key_algorithm = &out->algorithm;
    out->attributes.key_type = &out->key_type;
    out->attributes.key_bits = (uint32_t) bits;
    out->attributes.key_policy = &out->policy;
    return PSA_SUCCESS;
}

psa_status_t parsec_status_to_psa(int parsec_status)
{
    if (parsec_status == 0) {
        return PSA_SUCCESS;
    }
    if (parsec_status >= 1132 && parsec_status <= 1153) {
        return (psa_status_t) (1000 - parsec_status);  /* PsaError* statuses */
    }
    switch (parsec_status) {
        case 11:  /* AuthenticationError */
        case 19:  /* NotAuthenticated */
        case 21:  /* AdminOperation */
            return PSA_ERROR_NOT_PERMITTED;
        case 7:   /* DeserializingBodyFailed */
        case 16:  /* InvalidEncoding */
            return PSA_ERROR_INVALID_ARGUMENT;
        case 1:   /* WrongProviderId */
        case 5:   /* ProviderNotRegistered */
        case 6:   /* ProviderDoesNotExist */
        case 9:   /* OpcodeDoesNotExist */
        case 12:  /* AuthenticatorDoesNotExist */
        case 13:  /* AuthenticatorNotRegistered */
            return PSA_ERROR_NOT_SUPPORTED;
        case 10:  /* ResponseTooLarge */
        case 20:  /* BodySizeExceedsLimit */
            return PSA_ERROR_INSUFFICIENT_MEMORY;
        case 14:  /* KeyInfoManagerError */
            return PSA_ERROR_STORAGE_FAILURE;
        default:  /* ConnectionError and the other protocol failures */
            return PSA_ERROR_COMMUNICATION_FAILURE;
    }
}

static const char *const STATUS_NAMES[] = {
    "Success", "WrongProviderId", "ContentTypeNotSupported", "AcceptTypeNotSupported",
    "WireProtocolVersionNotSupported", "ProviderNotRegistered", "ProviderDoesNotExist",
    "DeserializingBodyFailed", "SerializingBodyFailed", "OpcodeDoesNotExist",
    "ResponseTooLarge", "AuthenticationError", "AuthenticatorDoesNotExist",
    "AuthenticatorNotRegistered", "KeyInfoManagerError", "ConnectionError", "InvalidEncoding",
    "InvalidHeader", "WrongProviderUuid", "NotAuthenticated", "BodySizeExceedsLimit",
    "AdminOperation", "DeprecatedPrimitive",
};

/* The PsaError* statuses, 1132 to 1153 (1144 is not defined). */
static const char *const PSA_STATUS_NAMES[] = {
    "PsaErrorGenericError", "PsaErrorNotPermitted", "PsaErrorNotSupported",
    "PsaErrorInvalidArgument", "PsaErrorInvalidHandle", "PsaErrorBadState",
    "PsaErrorBufferTooSmall", "PsaErrorAlreadyExists", "PsaErrorDoesNotExist",
    "PsaErrorInsufficientMemory", "PsaErrorInsufficientStorage", "PsaErrorInsufficientData",
    NULL, "PsaErrorCommunicationFailure", "PsaErrorStorageFailure", "PsaErrorHardwareFailure",
    "PsaErrorInsufficientEntropy", "PsaErrorInvalidSignature", "PsaErrorInvalidPadding",
    "PsaErrorCorruptionDetected", "PsaErrorDataCorrupt", "PsaErrorDataInvalid",
};

const char *parsec_status_name(int parsec_status, char *buffer, size_t size)
{
    const char *name = NULL;
    size_t count = sizeof(STATUS_NAMES) / sizeof(STATUS_NAMES[0]);
    size_t psa_count = sizeof(PSA_STATUS_NAMES) / sizeof(PSA_STATUS_NAMES[0]);
    if (parsec_status >= 0 && (size_t) parsec_status < count) {
        name = STATUS_NAMES[parsec_status];
    } else if (parsec_status >= 1132 && (size_t) (parsec_status - 1132) < psa_count) {
        name = PSA_STATUS_NAMES[parsec_status - 1132];
    }
    if (name != NULL) {
        return name;
    }
    snprintf(buffer, size, "status %d", parsec_status);
    return buffer;
}

const char *parsec_status_hint(int parsec_status)
{
    switch (parsec_status) {
        case 1142:  /* PsaErrorInsufficientStorage */
            return "no room for another key: the application's key quota or the RSE's "
                   "capacity is used up";
        case 1141:  /* PsaErrorInsufficientMemory */
        case 10:    /* ResponseTooLarge */
        case 20:    /* BodySizeExceedsLimit */
            return "the request is larger than the service allows";
        case 1133:  /* PsaErrorNotPermitted */
        case 11:    /* AuthenticationError */
        case 19:    /* NotAuthenticated */
        case 21:    /* AdminOperation */
            return "the service does not allow this application to do it";
        case 1134:  /* PsaErrorNotSupported */
            return "the service or its RSE does not support this key or algorithm";
        case 1140:  /* PsaErrorDoesNotExist */
            return "the service holds no such key for this application (a temporary key: for "
                   "this process)";
        default:
            return NULL;
    }
}

/* Minimal DER reading: the length of the element at *p, advancing past its header. */
static int der_header(const uint8_t **p, const uint8_t *end, uint8_t tag, size_t *length)
{
    size_t n = 0;
    if (end - *p < 2 || **p != tag) {
        return -1;
    }
    (*p)++;
    if (**p < 0x80) {
        n = *(*p)++;
    } else {
        int bytes = *(*p)++ & 0x7F;
        if (bytes < 1 || bytes > 4 || end - *p < bytes) {
            return -1;
        }
        while (bytes-- > 0) {
            n = (n << 8) | *(*p)++;
        }
    }
    if ((size_t) (end - *p) < n) {
        return -1;
    }
    *length = n;
    return 0;
}

/* The size in bits of the unsigned big-endian integer in data[0..len), 0 if it is zero. */
static size_t integer_bits(const uint8_t *p, size_t len)
{
    size_t bits;
    while (len > 0 && *p == 0) {
        p++;
        len--;
    }
    if (len == 0) {
        return 0;
    }
    bits = len * 8;
    for (uint8_t top = *p; (top & 0x80) == 0; top <<= 1) {
        bits--;
    }
    return bits;
}

/* Bits of the first INTEGER of a SEQUENCE, after skipping `skip` INTEGERs (the version). */
static size_t rsa_modulus_bits(const uint8_t *data, size_t length, int skip)
{
    const uint8_t *p = data;
    const uint8_t *end = data + length;
    size_t len;

    if (der_header(&p, end, 0x30, &len) != 0) {
        return 0;
    }
    while (skip-- > 0) {
        if (der_header(&p, end, 0x02, &len) != 0) {
            return 0;
        }
        p += len;
    }
    if (der_header(&p, end, 0x02, &len) != 0) {
        return 0;
    }
    return integer_bits(p, len);
}

/* A positive DER INTEGER in minimal form: not empty, no sign bit, no redundant zero. */
static int positive_integer(const uint8_t *p, size_t len)
{
    if (len == 0 || (p[0] & 0x80) != 0) {
        return 0;
    }
    return len == 1 || p[0] != 0 || (p[1] & 0x80) != 0;
}

/* RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }, DER, filling
 * exactly `length` bytes; returns the modulus size in bits, 0 if it is anything else. */
static size_t rsa_public_key_bits_strict(const uint8_t *data, size_t length)
{
    const uint8_t *p = data;
    const uint8_t *end = data + length;
    const uint8_t *modulus;
    size_t len;
    size_t modulus_len;

    if (der_header(&p, end, 0x30, &len) != 0 || (size_t) (end - p) != len) {
        return 0;
    }
    if (der_header(&p, end, 0x02, &modulus_len) != 0 || !positive_integer(p, modulus_len)) {
        return 0;
    }
    modulus = p;
    p += modulus_len;
    if (der_header(&p, end, 0x02, &len) != 0 || !positive_integer(p, len) || p + len != end) {
        return 0;
    }
    return integer_bits(modulus, modulus_len);
}

int parsec_check_public_key(psa_key_type_t type, size_t bits, const uint8_t *data,
                            size_t length)
{
    psa_key_type_t public_type = PSA_KEY_TYPE_PUBLIC_KEY_OF_KEY_PAIR(type);

    if (bits == 0 || data == NULL || length == 0) {
        return -1;
    }
    if (public_type == PSA_KEY_TYPE_RSA_PUBLIC_KEY) {
        return length <= PSA_KEY_EXPORT_RSA_PUBLIC_KEY_MAX_SIZE(bits) &&
                       rsa_public_key_bits_strict(data, length) == bits
                   ? 0
                   : -1;
    }
    if (PSA_KEY_TYPE_IS_ECC_PUBLIC_KEY(public_type)) {
        if (PSA_KEY_TYPE_ECC_GET_FAMILY(public_type) == PSA_ECC_FAMILY_MONTGOMERY) {
            return length == PSA_BITS_TO_BYTES(bits) ? 0 : -1;  /* RFC 7748 u-coordinate */
        }
        /* Weierstrass curves: the uncompressed point 0x04 || X || Y. */
        return length == 2 * PSA_BITS_TO_BYTES(bits) + 1 && data[0] == 0x04 ? 0 : -1;
    }
    return -1;
}

size_t parsec_signature_length(psa_key_type_t type, size_t bits, psa_algorithm_t alg)
{
    if (bits == 0) {
        return 0;
    }
    if (PSA_KEY_TYPE_IS_RSA(type) && PSA_ALG_IS_RSA_PKCS1V15_SIGN(alg)) {
        return PSA_BITS_TO_BYTES(bits);
    }
    if (PSA_KEY_TYPE_IS_RSA(type) && PSA_ALG_IS_RSA_PSS(alg)) {
        return PSA_BITS_TO_BYTES(bits);
    }
    if (PSA_KEY_TYPE_IS_ECC(type) && PSA_ALG_IS_ECDSA(alg)) {
        return PSA_ECDSA_SIGNATURE_SIZE(bits);  /* r || s, each the size of the order */
    }
    return 0;
}

psa_status_t parsec_key_type_to_psa(const PsaKeyAttributes__KeyType *key_type,
                                    psa_key_type_t *out)
{
    psa_ecc_family_t family;

    if (key_type == NULL) {
        return PSA_ERROR_NOT_SUPPORTED;
    }
    switch (key_type->variant_case) {
        case PSA_KEY_ATTRIBUTES__KEY_TYPE__VARIANT_RSA_PUBLIC_KEY:
            *out = PSA_KEY_TYPE_RSA_PUBLIC_KEY;
            return PSA_SUCCESS;
        case PSA_KEY_ATTRIBUTES__KEY_TYPE__VARIANT_RSA_KEY_PAIR:
            *out = PSA_KEY_TYPE_RSA_KEY_PAIR;
            return PSA_SUCCESS;
        case PSA_KEY_ATTRIBUTES__KEY_TYPE__VARIANT_ECC_PUBLIC_KEY:
            if (key_type->ecc_public_key == NULL ||
                ecc_family_to_psa(key_type->ecc_public_key->curve_family, &family) != 0) {
                return PSA_ERROR_NOT_SUPPORTED;
            }
            *out = PSA_KEY_TYPE_ECC_PUBLIC_KEY(family);
            return PSA_SUCCESS;
        case PSA_KEY_ATTRIBUTES__KEY_TYPE__VARIANT_ECC_KEY_PAIR:
            if (key_type->ecc_key_pair == NULL ||
                ecc_family_to_psa(key_type->ecc_key_pair->curve_family, &family) != 0) {
                return PSA_ERROR_NOT_SUPPORTED;
            }
            *out = PSA_KEY_TYPE_ECC_KEY_PAIR(family);
            return PSA_SUCCESS;
        default:
            return PSA_ERROR_NOT_SUPPORTED;
    }
}

size_t parsec_key_bits_from_data(psa_key_type_t type, const uint8_t *data, size_t length)
{
    static const struct { size_t bytes; size_t bits; } ecc_sizes[] = {
        {24, 192}, {28, 224}, {32, 256}, {48, 384}, {66, 521},
    };
    size_t coordinate;
    size_t i;

    if (type == PSA_KEY_TYPE_RSA_PUBLIC_KEY) {
        return rsa_modulus_bits(data, length, 0);
    }
    if (type == PSA_KEY_TYPE_RSA_KEY_PAIR) {
        return rsa_modulus_bits(data, length, 1);
    }
    if (PSA_KEY_TYPE_IS_ECC_PUBLIC_KEY(type)) {
        if (length < 3 || data[0] != 0x04 || (length - 1) % 2 != 0) {
            return 0;
        }
        coordinate = (length - 1) / 2;
    } else if (PSA_KEY_TYPE_IS_ECC_KEY_PAIR(type)) {
        coordinate = length;
    } else {
        return 0;
    }
    for (i = 0; i < sizeof(ecc_sizes) / sizeof(ecc_sizes[0]); i++) {
        if (ecc_sizes[i].bytes == coordinate) {
            return ecc_sizes[i].bits;
        }
    }
    return 0;
}
