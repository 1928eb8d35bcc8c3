#include "vigil_bthome.h"

#include <string.h>

#include "vigil_le.h"

#define MIC_LEN 4u
#define MAX_PLAIN 32u

/* Length of an object's value and whether it is signed; 0 for ids we do not send. */
static size_t object_len(uint8_t id, int *is_signed)
{
    *is_signed = 0;
    switch (id) {
    case VIGIL_BTHOME_PACKET_ID:
    case VIGIL_BTHOME_BATTERY:
    case VIGIL_BTHOME_HUMIDITY_COARSE:
    case VIGIL_BTHOME_MOISTURE_COARSE:
        return 1u;
    case VIGIL_BTHOME_TEMPERATURE:
    case VIGIL_BTHOME_TEMPERATURE_COARSE:
        *is_signed = 1;
        return 2u;
    case VIGIL_BTHOME_HUMIDITY:
    case VIGIL_BTHOME_VOLTAGE:
    case VIGIL_BTHOME_MOISTURE:
        return 2u;
    default:
        return 0u;
    }
}

static int fits(int32_t raw, size_t len, int is_signed)
{
    int32_t lo = is_signed ? -(1 << (8u * len - 1u)) : 0;
    int32_t hi = is_signed ? (1 << (8u * len - 1u)) - 1 : (1 << (8u * len)) - 1;
    return raw >= lo && raw <= hi;
}

int vigil_bthome_encode(const vigil_bthome_obj_t *objs, size_t n_objs,
                        const uint8_t *key, const uint8_t *mac, uint32_t counter,
                        uint8_t options, uint8_t *out, size_t cap)
{
    uint8_t plain[MAX_PLAIN];
    size_t plain_len = 0u;
    size_t pos = 0u;
    size_t i;
    uint8_t info = (uint8_t)(VIGIL_BTHOME_VERSION_BITS
                             | (options & (VIGIL_BTHOME_MAC_INCLUDED | VIGIL_BTHOME_TRIGGER_BASED)));

    if (key != NULL) {
        info |= VIGIL_BTHOME_ENCRYPTED;
    }
    if ((key != NULL || (info & VIGIL_BTHOME_MAC_INCLUDED) != 0u) && mac == NULL) {
        return -1;
    }
    for (i = 0u; i < n_objs; i++) {
        int is_signed;
        size_t len = object_len(objs[i].id, &is_signed);
        if (len == 0u || !fits(objs[i].raw, len, is_signed)
            || (i > 0u && objs[i].id < objs[i - 1u].id) || plain_len + 1u + len > MAX_PLAIN) {
            return -1;
        }
        plain[plain_len++] = objs[i].id;
        if (len == 1u) {
            plain[plain_len++] = (uint8_t)objs[i].raw;
        } else {
            vigil_put_u16(&plain[plain_len], (uint16_t)objs[i].raw);
            plain_len += 2u;
        }
    }

    if (cap < 1u + 6u + plain_len + 4u + MIC_LEN) {
        return -1;
    }
    out[pos++] = info;
    if ((info & VIGIL_BTHOME_MAC_INCLUDED) != 0u) {
        for (i = 0u; i < 6u; i++) {
            out[pos++] = mac[5u - i]; /* carried reversed, as on air */
        }
    }
    if (key == NULL) {
        memcpy(&out[pos], plain, plain_len);
        return (int)(pos + plain_len);
    }

    {
        /* Nonce: MAC (display order) || d2 fc || device info || counter LE; no AAD. */
        uint8_t nonce[VIGIL_NONCE_LEN];
        memcpy(nonce, mac, 6u);
        nonce[6] = 0xd2u;
        nonce[7] = 0xfcu;
        nonce[8] = info;
        vigil_put_u32(&nonce[9], counter);
        if (vigil_ccm_seal(key, nonce, NULL, 0u, plain, plain_len, &out[pos],
                           &out[pos + plain_len + 4u], MIC_LEN) != 0) {
            return -1;
        }
        vigil_put_u32(&out[pos + plain_len], counter);
        return (int)(pos + plain_len + 4u + MIC_LEN);
    }
}
