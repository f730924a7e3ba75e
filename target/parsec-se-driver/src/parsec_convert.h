/*
 * PSA values to Parsec protobuf messages and back, Parsec statuses to PSA statuses, key sizes
 * read from PSA key data, and the exact sizes of what the service returns.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PARSEC_CONVERT_H
#define PARSEC_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include <psa/crypto.h>

#include "psa_algorithm.pb-c.h"
#include "psa_key_attributes.pb-c.h"

/* Storage for one converted signature algorithm: the protobuf tree points into it. */
typedef struct {
    PsaAlgorithm__Algorithm__AsymmetricSignature signature;
    PsaAlgorithm__Algorithm__AsymmetricSignature__SignHash sign_hash;
    PsaAlgorithm__Algorithm__AsymmetricSignature__SignHash__Any any;
    union {
        PsaAlgorithm__Algorithm__AsymmetricSignature__RsaPkcs1v15Sign pkcs1;
        PsaAlgorithm__Algorithm__AsymmetricSignature__RsaPkcs1v15SignRaw pkcs1_raw;
        PsaAlgorithm__Algorithm__AsymmetricSignature__RsaPss pss;
        PsaAlgorithm__Algorithm__AsymmetricSignature__Ecdsa ecdsa;
        PsaAlgorithm__Algorithm__AsymmetricSignature__EcdsaAny ecdsa_any;
        PsaAlgorithm__Algorithm__AsymmetricSignature__DeterministicEcdsa deterministic;
    } scheme;
} parsec_sign_alg_t;

/* Storage for converted key attributes. */
typedef struct {
    PsaKeyAttributes__KeyAttributes attributes;
    PsaKeyAttributes__KeyType key_type;
    PsaKeyAttributes__KeyPolicy policy;
    PsaKeyAttributes__UsageFlags usage;
    PsaAlgorithm__Algorithm algorithm;
    PsaAlgorithm__Algorithm__None none;
    parsec_sign_alg_t sign_alg;
    union {
        PsaKeyAttributes__KeyType__RsaPublicKey rsa_public;
        PsaKeyAttributes__KeyType__RsaKeyPair rsa_pair;
        PsaKeyAttributes__KeyType__EccPublicKey ecc_public;
        PsaKeyAttributes__KeyType__EccKeyPair ecc_pair;
    } type;
} parsec_key_attributes_t;

/* A hash-and-sign algorithm as AsymmetricSignature; PSA_ERROR_NOT_SUPPORTED if it has none. */
psa_status_t parsec_sign_alg_from_psa(psa_algorithm_t alg, parsec_sign_alg_t *out);

/* Key attributes with the given size in bits (type, policy algorithm, usage flags). */
psa_status_t parsec_key_attributes_from_psa(const psa_key_attributes_t *attributes, size_t bits,
                                            parsec_key_attributes_t *out);

/* A Parsec response status as the PSA status a driver function returns. */
psa_status_t parsec_status_to_psa(int parsec_status);

/* Parsec's name of a response status ("PsaErrorInsufficientStorage"), or "status <n>" for a
 * number the wire protocol does not define (in `buffer`, of `size` bytes). */
const char *parsec_status_name(int parsec_status, char *buffer, size_t size);

/* What a refusal with this status most likely means to a user, or NULL. */
const char *parsec_status_hint(int parsec_status);

/* The size in bits of a key given in its PSA import format; 0 if it cannot be read. */
size_t parsec_key_bits_from_data(psa_key_type_t type, const uint8_t *data, size_t length);

/* A Parsec key type as the PSA key type; PSA_ERROR_NOT_SUPPORTED for one the driver does not
 * handle. */
psa_status_t parsec_key_type_to_psa(const PsaKeyAttributes__KeyType *key_type,
                                    psa_key_type_t *out);

/* 0 if `data` is exactly what psa_export_public_key gives for a key of this type and size:
 * for an RSA key a DER RSAPublicKey whose modulus has `bits` bits and that fills `length`;
 * for a Weierstrass ECC key the uncompressed point 0x04 || X || Y (65 bytes for P-256); for a
 * Montgomery key the u-coordinate. -1 otherwise, an empty export included. */
int parsec_check_public_key(psa_key_type_t type, size_t bits, const uint8_t *data,
                            size_t length);

/* The exact size of a signature by a key of this type and size with `alg` (the modulus size
 * for RSA PKCS#1 v1.5 and PSS, r || s for ECDSA: 64 bytes for P-256); 0 if the driver knows
 * no size for the combination. */
size_t parsec_signature_length(psa_key_type_t type, size_t bits, psa_algorithm_t alg);

#endif /* PARSEC_CONVERT_H */
