/* Encode one test vector's inputs given on the command line; print the result as hex.
 *
 *   vectors_tool frame KEY ADDR FLAGS COUNTER PH WOUND_T SKIN_T EXUDATE BATTERY STATUS
 *   vectors_tool bthome KEY|- MAC|- COUNTER OPTIONS [ID:RAW ...]
 *   vectors_tool float MANTISSA EXPONENT      vectors_tool float-special NAME
 *   vectors_tool sfloat MANTISSA EXPONENT     vectors_tool sfloat-special NAME
 *   vectors_tool htm FLOAT_WORD FLAGS YEAR MONTH DAY HOURS MINUTES SECONDS TYPE
 *
 * Hex arguments have no separators; numbers may be decimal or 0x-prefixed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vigil_bthome.h"
#include "vigil_frame.h"
#include "vigil_ieee11073.h"

#define MAX_OBJS 16

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    long v;
    errno = 0;
    v = strtol(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bad number: %s\n", s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_hex(const char *s, uint8_t *out, size_t len)
{
    size_t i;
    if (strlen(s) != 2u * len) {
        fprintf(stderr, "expected %zu hex bytes: %s\n", len, s);
        return -1;
    }
    for (i = 0u; i < len; i++) {
        unsigned int b;
        if (sscanf(&s[2u * i], "%2x", &b) != 1) {
            fprintf(stderr, "bad hex: %s\n", s);
            return -1;
        }
        out[i] = (uint8_t)b;
    }
    return 0;
}

static void print_hex(const uint8_t *p, size_t len)
{
    size_t i;
    for (i = 0u; i < len; i++) {
        printf("%02x", p[i]);
    }
    printf("\n");
}

static int cmd_frame(int argc, char **argv)
{
    uint8_t key[VIGIL_KEY_LEN], addr[6], out[VIGIL_FRAME_LEN];
    long v[8];
    static const long lo[8] = {0, 0, 0, -32768, -32768, 0, 0, 0};
    static const long hi[8] = {255, 4294967295L, 65535, 32767, 32767, 255, 255, 255};
    vigil_frame_t f;
    int i;
    if (argc != 10 || parse_hex(argv[0], key, sizeof key) || parse_hex(argv[1], addr, 6u)) {
        return -1;
    }
    for (i = 0; i < 8; i++) {
        if (parse_long(argv[2 + i], lo[i], hi[i], &v[i])) {
            return -1;
        }
    }
    f.frame_flags = (uint8_t)v[0];
    f.counter = (uint32_t)v[1];
    f.ph_centi = (uint16_t)v[2];
    f.wound_temp_centi = (int16_t)v[3];
    f.skin_temp_centi = (int16_t)v[4];
    f.exudate_half_pct = (uint8_t)v[5];
    f.battery_pct = (uint8_t)v[6];
    f.status = (uint8_t)v[7];
    if (vigil_frame_encode(&f, key, addr, out) != 0) {
        fprintf(stderr, "frame rejected\n");
        return -1;
    }
    print_hex(out, sizeof out);
    return 0;
}

static int cmd_bthome(int argc, char **argv)
{
    uint8_t key[VIGIL_KEY_LEN], mac[6], out[64];
    vigil_bthome_obj_t objs[MAX_OBJS];
    long counter, options;
    int use_key = strcmp(argv[0], "-") != 0, use_mac, i, n;
    if (argc < 4 || argc - 4 > MAX_OBJS) {
        return -1;
    }
    use_mac = strcmp(argv[1], "-") != 0;
    if ((use_key && parse_hex(argv[0], key, sizeof key)) || (use_mac && parse_hex(argv[1], mac, 6u))
        || parse_long(argv[2], 0, 4294967295L, &counter) || parse_long(argv[3], 0, 255, &options)) {
        return -1;
    }
    for (i = 4; i < argc; i++) {
        char *colon = strchr(argv[i], ':');
        long id, raw;
        if (colon == NULL) {
            return -1;
        }
        *colon = '\0';
        if (parse_long(argv[i], 0, 255, &id) || parse_long(colon + 1, -32768, 65535, &raw)) {
            return -1;
        }
        objs[i - 4].id = (uint8_t)id;
        objs[i - 4].raw = (int32_t)raw;
    }
    n = vigil_bthome_encode(objs, (size_t)(argc - 4), use_key ? key : NULL, use_mac ? mac : NULL,
                            (uint32_t)counter, (uint8_t)options, out, sizeof out);
    if (n < 0) {
        fprintf(stderr, "advert rejected\n");
        return -1;
    }
    print_hex(out, (size_t)n);
    return 0;
}

static int special_word(const char *name, int sfloat, uint32_t *word)
{
    static const char *names[5] = {"NaN", "NRes", "+INFINITY", "-INFINITY", "reserved"};
    static const uint32_t words[5] = {VIGIL_FLOAT_NAN, VIGIL_FLOAT_NRES, VIGIL_FLOAT_POS_INF,
                                      VIGIL_FLOAT_NEG_INF, VIGIL_FLOAT_RESERVED};
    static const uint32_t swords[5] = {VIGIL_SFLOAT_NAN, VIGIL_SFLOAT_NRES, VIGIL_SFLOAT_POS_INF,
                                       VIGIL_SFLOAT_NEG_INF, VIGIL_SFLOAT_RESERVED};
    int i;
    for (i = 0; i < 5; i++) {
        if (strcmp(name, names[i]) == 0) {
            *word = sfloat ? swords[i] : words[i];
            return 0;
        }
    }
    fprintf(stderr, "unknown special value: %s\n", name);
    return -1;
}

static int cmd_float(const char *cmd, int argc, char **argv)
{
    uint8_t out[4];
    uint32_t word = 0u;
    int sfloat = strncmp(cmd, "sfloat", 6) == 0;
    if (strstr(cmd, "-special") != NULL) {
        if (argc != 1 || special_word(argv[0], sfloat, &word)) {
            return -1;
        }
    } else {
        long m, e;
        if (argc != 2 || parse_long(argv[0], -8388608L, 8388607L, &m)
            || parse_long(argv[1], -128, 127, &e)) {
            return -1;
        }
        if (sfloat) {
            uint16_t w16;
            if (m < -32768 || m > 32767 || vigil_sfloat_pack((int16_t)m, (int8_t)e, &w16)) {
                fprintf(stderr, "SFLOAT out of range\n");
                return -1;
            }
            word = w16;
        } else if (vigil_float_pack((int32_t)m, (int8_t)e, &word)) {
            fprintf(stderr, "FLOAT out of range\n");
            return -1;
        }
    }
    if (sfloat) {
        vigil_sfloat_store((uint16_t)word, out);
        print_hex(out, 2u);
    } else {
        vigil_float_store(word, out);
        print_hex(out, 4u);
    }
    return 0;
}

static int cmd_htm(int argc, char **argv)
{
    uint8_t out[VIGIL_HTM_MAX_LEN];
    long v[9];
    static const long hi[9] = {4294967295L, 7, 9999, 12, 31, 23, 59, 59, 255};
    vigil_htm_t m;
    int i;
    if (argc != 9) {
        return -1;
    }
    for (i = 0; i < 9; i++) {
        if (parse_long(argv[i], 0, hi[i], &v[i])) {
            return -1;
        }
    }
    m.value = (uint32_t)v[0];
    m.flags = (uint8_t)v[1];
    m.time.year = (uint16_t)v[2];
    m.time.month = (uint8_t)v[3];
    m.time.day = (uint8_t)v[4];
    m.time.hours = (uint8_t)v[5];
    m.time.minutes = (uint8_t)v[6];
    m.time.seconds = (uint8_t)v[7];
    m.type = (uint8_t)v[8];
    print_hex(out, vigil_htm_encode(&m, out));
    return 0;
}

int main(int argc, char **argv)
{
    int rc = -1;
    if (argc < 2) {
        fprintf(stderr, "usage: vectors_tool frame|bthome|float|sfloat|htm ...\n");
        return 2;
    }
    if (strcmp(argv[1], "frame") == 0) {
        rc = cmd_frame(argc - 2, argv + 2);
    } else if (strcmp(argv[1], "bthome") == 0 && argc >= 3) {
        rc = cmd_bthome(argc - 2, argv + 2);
    } else if (strncmp(argv[1], "float", 5) == 0 || strncmp(argv[1], "sfloat", 6) == 0) {
        rc = cmd_float(argv[1], argc - 2, argv + 2);
    } else if (strcmp(argv[1], "htm") == 0) {
        rc = cmd_htm(argc - 2, argv + 2);
    }
    if (rc != 0) {
        fprintf(stderr, "%s: invalid input\n", argv[1]);
        return 1;
    }
    return 0;
}
