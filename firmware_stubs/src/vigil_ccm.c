#include "vigil_ccm.h"

#include <openssl/evp.h>

int vigil_ccm_seal(const uint8_t key[VIGIL_KEY_LEN], const uint8_t nonce[VIGIL_NONCE_LEN],
                   const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len,
                   uint8_t *ct, uint8_t *tag, size_t tag_len)
{
    int ok = 0;
    int len = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return -1;
    }
    /* CCM needs nonce and tag sizes before the key, and the plaintext length before the AAD. */
    ok = EVP_EncryptInit_ex(ctx, EVP_aes_128_ccm(), NULL, NULL, NULL) == 1
        && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_CCM_SET_IVLEN, VIGIL_NONCE_LEN, NULL) == 1
        && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_CCM_SET_TAG, (int)tag_len, NULL) == 1
        && EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) == 1
        && EVP_EncryptUpdate(ctx, NULL, &len, NULL, (int)pt_len) == 1;
    if (ok && aad != NULL && aad_len > 0) {
        ok = EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_len) == 1;
    }
    if (ok && pt_len > 0) {
        ok = EVP_EncryptUpdate(ctx, ct, &len, pt, (int)pt_len) == 1;
    }
    ok = ok && EVP_EncryptFinal_ex(ctx, ct + (pt_len > 0 ? len : 0), &len) == 1
        && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_CCM_GET_TAG, (int)tag_len, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}
