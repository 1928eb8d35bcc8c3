/* IEEE 11073-20601 FLOAT / SFLOAT and the Health Thermometer Temperature Measurement. */
#ifndef VIGIL_IEEE11073_H
#define VIGIL_IEEE11073_H

#include <stddef.h>
#include <stdint.h>

/* FLOAT special values (24-bit mantissa, exponent 0), as whole 32-bit words. */
#define VIGIL_FLOAT_NAN 0x007FFFFFu
#define VIGIL_FLOAT_NRES 0x00800000u
#define VIGIL_FLOAT_POS_INF 0x007FFFFEu
#define VIGIL_FLOAT_NEG_INF 0x00800002u
#define VIGIL_FLOAT_RESERVED 0x00800001u

/* SFLOAT special values (12-bit mantissa, exponent 0). */
#define VIGIL_SFLOAT_NAN 0x07FFu
#define VIGIL_SFLOAT_NRES 0x0800u
#define VIGIL_SFLOAT_POS_INF 0x07FEu
#define VIGIL_SFLOAT_NEG_INF 0x0802u
#define VIGIL_SFLOAT_RESERVED 0x0801u

/* Pack mantissa * 10^exponent; -1 if either is out of range (specials use the words above). */
int vigil_float_pack(int32_t mantissa, int8_t exponent, uint32_t *word);
int vigil_sfloat_pack(int16_t mantissa, int8_t exponent, uint16_t *word);

void vigil_float_store(uint32_t word, uint8_t out[4]);
void vigil_sfloat_store(uint16_t word, uint8_t out[2]);

#define VIGIL_HTM_FAHRENHEIT 0x01u
#define VIGIL_HTM_TIMESTAMP 0x02u
#define VIGIL_HTM_TYPE 0x04u
#define VIGIL_HTM_MAX_LEN 13u

typedef struct {
    uint16_t year; /* 0 = unknown, else 1582..9999 */
    uint8_t month, day, hours, minutes, seconds;
} vigil_date_time_t;

typedef struct {
    uint8_t flags;          /* VIGIL_HTM_* */
    uint32_t value;         /* a packed FLOAT word */
    vigil_date_time_t time; /* sent if VIGIL_HTM_TIMESTAMP */
    uint8_t type;           /* sent if VIGIL_HTM_TYPE: 1 armpit .. 9 tympanum */
} vigil_htm_t;

/* Encode a Temperature Measurement (0x2A1C); returns its length (5..13). */
size_t vigil_htm_encode(const vigil_htm_t *m, uint8_t out[VIGIL_HTM_MAX_LEN]);

#endif
