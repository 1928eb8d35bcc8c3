/* AES-128-CCM for the patch profile, on OpenSSL's EVP (no hand-rolled crypto). */
#ifndef VIGIL_CCM_H
#define VIGIL_CCM_H

#include <stddef.h>
#include <stdint.h>

#define VIGIL_KEY_LEN 16
#define VIGIL_NONCE_LEN 13

/* Encrypt pt into ct (same length) and write a tag_len-byte MIC; aad may be NULL.
 * Returns 0 on success, -1 on failure. */
int vigil_ccm_seal(const uint8_t key[VIGIL_KEY_LEN], const uint8_t nonce[VIGIL_NONCE_LEN],
                   const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len,
                   uint8_t *ct, uint8_t *tag, size_t tag_len);

#endif
