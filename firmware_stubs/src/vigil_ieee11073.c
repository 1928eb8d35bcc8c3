#include "vigil_ieee11073.h"

#include "vigil_le.h"

/* The mantissas nearest the ends are specials, so ordinary values stay within +-(2^(n-1)-3). */
#define FLOAT_MANTISSA_MAX 8388605
#define SFLOAT_MANTISSA_MAX 2045

int vigil_float_pack(int32_t mantissa, int8_t exponent, uint32_t *word)
{
    if (mantissa > FLOAT_MANTISSA_MAX || mantissa < -FLOAT_MANTISSA_MAX) {
        return -1;
    }
    *word = ((uint32_t)(uint8_t)exponent << 24) | ((uint32_t)mantissa & 0x00FFFFFFu);
    return 0;
}

int vigil_sfloat_pack(int16_t mantissa, int8_t exponent, uint16_t *word)
{
    if (mantissa > SFLOAT_MANTISSA_MAX || mantissa < -SFLOAT_MANTISSA_MAX || exponent < -8
        || exponent > 7) {
        return -1;
    }
    *word = (uint16_t)((((uint16_t)exponent & 0x0Fu) << 12) | ((uint16_t)mantissa & 0x0FFFu));
    return 0;
}

void vigil_float_store(uint32_t word, uint8_t out[4])
{
    vigil_put_u32(out, word);
}

void vigil_sfloat_store(uint16_t word, uint8_t out[2])
{
    vigil_put_u16(out, word);
}

size_t vigil_htm_encode(const vigil_htm_t *m, uint8_t out[VIGIL_HTM_MAX_LEN])
{
    size_t pos = 0u;
    uint8_t flags = (uint8_t)(m->flags & (VIGIL_HTM_FAHRENHEIT | VIGIL_HTM_TIMESTAMP | VIGIL_HTM_TYPE));
    out[pos++] = flags;
    vigil_put_u32(&out[pos], m->value);
    pos += 4u;
    if ((flags & VIGIL_HTM_TIMESTAMP) != 0u) {
        vigil_put_u16(&out[pos], m->time.year);
        out[pos + 2u] = m->time.month;
        out[pos + 3u] = m->time.day;
        out[pos + 4u] = m->time.hours;
        out[pos + 5u] = m->time.minutes;
        out[pos + 6u] = m->time.seconds;
        pos += 7u;
    }
    if ((flags & VIGIL_HTM_TYPE) != 0u) {
        out[pos++] = m->type;
    }
    return pos;
}
