/*
 * Parsec secure-element driver for Mbed TLS 3.6 (PSA SE driver HAL version 5).
 *
 * Register it before psa_crypto_init():
 *
 *     psa_register_se_driver(PARSEC_SE_DRIVER_LOCATION, &PARSEC_SE_DRIVER);
 *
 * Keys created in that location live in the Parsec service, named
 * "parsec-se-driver-key<slot>", where the slot number is a random per-process 64-bit nonce
 * plus a per-process counter (see src/parsec_se_driver.c). Configuration comes from the
 * environment:
 *
 *   PARSEC_SERVICE_ENDPOINT      unix:/path of the service (default /run/parsec/parsec.sock)
 *   PARSEC_SE_DRIVER_AUTH        "peer" (Unix peer credentials, default) or "direct"
 *   PARSEC_SE_DRIVER_APP_NAME    application name for direct authentication
 *                                (default "Parsec SE Driver")
 *   PARSEC_SE_DRIVER_PROVIDER    provider id (default: the first one the service lists)
 *   PARSEC_SE_DRIVER_TIMEOUT_MS  deadline of each whole exchange with the service: connect,
 *                                request and complete response (default 5000)
 *   PARSEC_SE_DRIVER_QUIET       "1": write nothing to stderr
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PARSEC_SE_DRIVER_H
#define PARSEC_SE_DRIVER_H

#include <psa/crypto.h>
#include <psa/crypto_se_driver.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The PSA key location of the keys this driver holds (the primary secure element). */
#define PARSEC_SE_DRIVER_LOCATION ((psa_key_location_t) 0x000001)

extern psa_drv_se_t PARSEC_SE_DRIVER;

/* Names that begin so are temporary keys to the Parsec service: its creating process's alone,
 * reclaimed when that process is gone. */
#define PARSEC_SE_DRIVER_TEMPORARY_PREFIX "temporary/"

/* Room for a key name, its terminating NUL included. */
#define PARSEC_SE_DRIVER_KEY_NAME_SIZE 64

/* The name in the Parsec service of the persistent key in `slot` (psa_get_key_slot_number),
 * as a NUL-terminated string in `name` (cut to `size` bytes). A volatile key's name has
 * PARSEC_SE_DRIVER_TEMPORARY_PREFIX before it. */
void parsec_se_driver_key_name(psa_key_slot_number_t slot, char *name, size_t size);

/* The name this process's driver uses for the key in `slot`: the temporary name for a
 * volatile key it allocated, else parsec_se_driver_key_name's. */
void parsec_se_driver_slot_name(psa_key_slot_number_t slot, char *name, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* PARSEC_SE_DRIVER_H */
