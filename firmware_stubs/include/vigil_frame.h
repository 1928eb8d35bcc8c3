/* The vigil patch measurement frame (docs/ble-profile.md), as the patch builds it. */
#ifndef VIGIL_FRAME_H
#define VIGIL_FRAME_H

#include <stdint.h>

#include "vigil_ccm.h"

#define VIGIL_FRAME_VERSION 1u
#define VIGIL_FRAME_LEN 23u
#define VIGIL_FRAME_TAG_LEN 8u

/* "Not available" codes: send these for a quantity the patch cannot vouch for. */
#define VIGIL_PH_NA 0xFFFFu
#define VIGIL_TEMP_NA INT16_MIN
#define VIGIL_EXUDATE_NA 0xFFu
#define VIGIL_BATTERY_NA 0xFFu

#define VIGIL_PH_MAX 1400u       /* 14.00 pH */
#define VIGIL_EXUDATE_MAX 200u   /* 100.0 % in 0.5 % steps */
#define VIGIL_BATTERY_MAX 100u

/* Header flags. */
#define VIGIL_FRAME_BACKFILL 0x01u

/* Status flags. */
#define VIGIL_STATUS_OFF_SKIN 0x01u
#define VIGIL_STATUS_SENSOR_FAULT 0x02u
#define VIGIL_STATUS_LOW_BATTERY 0x04u
#define VIGIL_STATUS_SATURATED 0x08u
#define VIGIL_STATUS_REBOOTED 0x10u
#define VIGIL_STATUS_CALIBRATION_EXPIRED 0x20u
#define VIGIL_STATUS_LOG_OVERRUN 0x40u

typedef struct {
    uint8_t frame_flags;
    uint32_t counter;         /* never repeats under one key: it is half the nonce */
    uint16_t ph_centi;        /* 0.01 pH */
    int16_t wound_temp_centi; /* 0.01 degC */
    int16_t skin_temp_centi;  /* 0.01 degC */
    uint8_t exudate_half_pct; /* 0.5 % */
    uint8_t battery_pct;
    uint8_t status;
} vigil_frame_t;

/* Build the 23-byte frame. Returns 0, or -1 for out-of-range fields or a crypto failure. */
int vigil_frame_encode(const vigil_frame_t *frame, const uint8_t key[VIGIL_KEY_LEN],
                       const uint8_t address[6], uint8_t out[VIGIL_FRAME_LEN]);

#endif
