/* BTHome v2 service data (UUID 0xFCD2) for the patch's passive advertising mode. */
#ifndef VIGIL_BTHOME_H
#define VIGIL_BTHOME_H

#include <stddef.h>
#include <stdint.h>

#include "vigil_ccm.h"

#define VIGIL_BTHOME_ENCRYPTED 0x01u
#define VIGIL_BTHOME_MAC_INCLUDED 0x02u
#define VIGIL_BTHOME_TRIGGER_BASED 0x04u
#define VIGIL_BTHOME_VERSION_BITS 0x40u /* version 2 in bits 5-7 */

/* Object ids (bthome.io) the patch uses. */
#define VIGIL_BTHOME_PACKET_ID 0x00u
#define VIGIL_BTHOME_BATTERY 0x01u
#define VIGIL_BTHOME_TEMPERATURE 0x02u
#define VIGIL_BTHOME_HUMIDITY 0x03u
#define VIGIL_BTHOME_VOLTAGE 0x0Cu
#define VIGIL_BTHOME_MOISTURE 0x14u
#define VIGIL_BTHOME_HUMIDITY_COARSE 0x2Eu
#define VIGIL_BTHOME_MOISTURE_COARSE 0x2Fu
#define VIGIL_BTHOME_TEMPERATURE_COARSE 0x45u

typedef struct {
    uint8_t id;
    int32_t raw; /* the scaled integer, e.g. 3312 for 33.12 degC */
} vigil_bthome_obj_t;

/* Write service data (without the UUID) into out. key == NULL sends in clear; mac is needed
 * to encrypt or include it. Objects must be in ascending id order. Returns the length written
 * or -1 on bad input, too small a buffer or a crypto failure. */
int vigil_bthome_encode(const vigil_bthome_obj_t *objs, size_t n_objs,
                        const uint8_t *key, const uint8_t *mac, uint32_t counter,
                        uint8_t options, uint8_t *out, size_t cap);

#endif
