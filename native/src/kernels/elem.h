/*
 * Scalar conversions of the 16-bit element types, exact and portable: the reference for the
 * vector conversions, and what the portable kernels use. Rounding is to nearest, ties to even;
 * NaNs stay NaN (quieted, the payload's high bits kept).
 */
#ifndef BN_ELEM_H
#define BN_ELEM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t bn_float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bn_bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* d to float truncated toward zero, with the last bit set when inexact (rounding to odd). */
static inline float bn_double_to_float_odd(double d) {
    float f = (float)d;
    if ((double)f == d || d != d)
        return f;
    uint32_t u = bn_float_bits(f);
    if (fabs((double)f) > fabs(d))
        u -= 1; /* one step toward zero: float bits are sign and magnitude */
    return bn_bits_float(u | 1u);
}

static inline float bn_bf16_to_float(uint16_t h) {
    return bn_bits_float((uint32_t)h << 16);
}

static inline uint16_t bn_float_to_bf16(float f) {
    uint32_t u = bn_float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bn_f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) /* zero or subnormal: man * 2^-24, exact in float */
        return bn_bits_float(sign | bn_float_bits((float)man * 0x1p-24f));
    if (exp == 31)
        return bn_bits_float(sign | 0x7f800000u | (man << 13));
    return bn_bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t bn_float_to_f16(float f) {
    uint32_t u = bn_float_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* 65520 and beyond round to infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: a multiple of 2^-24, rounded to an even one */
        float t = bn_bits_float(a) * 0x1p24f;
        float r = (t + 0x1p23f) - 0x1p23f;
        return (uint16_t)(sign | (uint16_t)r);
    }
    uint32_t r = a - 0x38000000u; /* rebias the exponent from 127 to 15 */
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

#endif /* BN_ELEM_H */
