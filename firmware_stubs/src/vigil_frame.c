#include "vigil_frame.h"

#include <string.h>

#include "vigil_le.h"

#define HEADER_LEN 6u
#define BODY_LEN 9u

int vigil_frame_encode(const vigil_frame_t *frame, const uint8_t key[VIGIL_KEY_LEN],
                       const uint8_t address[6], uint8_t out[VIGIL_FRAME_LEN])
{
    uint8_t body[BODY_LEN];
    uint8_t nonce[VIGIL_NONCE_LEN];

    if ((frame->frame_flags & (uint8_t)~VIGIL_FRAME_BACKFILL) != 0u
        || (frame->status & 0x80u) != 0u
        || (frame->ph_centi > VIGIL_PH_MAX && frame->ph_centi != VIGIL_PH_NA)
        || (frame->exudate_half_pct > VIGIL_EXUDATE_MAX
            && frame->exudate_half_pct != VIGIL_EXUDATE_NA)
        || (frame->battery_pct > VIGIL_BATTERY_MAX && frame->battery_pct != VIGIL_BATTERY_NA)) {
        return -1;
    }

    out[0] = (uint8_t)VIGIL_FRAME_VERSION;
    out[1] = frame->frame_flags;
    vigil_put_u32(&out[2], frame->counter);

    vigil_put_u16(&body[0], frame->ph_centi);
    vigil_put_u16(&body[2], (uint16_t)frame->wound_temp_centi);
    vigil_put_u16(&body[4], (uint16_t)frame->skin_temp_centi);
    body[6] = frame->exudate_half_pct;
    body[7] = frame->battery_pct;
    body[8] = frame->status;

    /* Nonce: address || 7a 1e || version || counter LE -- BTHome's shape, our own tag. */
    memcpy(nonce, address, 6u);
    nonce[6] = 0x7au;
    nonce[7] = 0x1eu;
    nonce[8] = (uint8_t)VIGIL_FRAME_VERSION;
    vigil_put_u32(&nonce[9], frame->counter);

    return vigil_ccm_seal(key, nonce, out, HEADER_LEN, body, BODY_LEN, &out[HEADER_LEN],
                          &out[HEADER_LEN + BODY_LEN], VIGIL_FRAME_TAG_LEN);
}
