// bf16 and f16 storage types with round-to-nearest-even conversions; arithmetic happens in float.
#pragma once

#include <cstdint>
#include <cstring>

namespace kolo {

struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  explicit bf16(float f) : bits(from_float(f)) {}
  operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
  }
};

struct f16 {
  uint16_t bits = 0;
  f16() = default;
  explicit f16(float f) : bits(from_float(f)) {}
  operator float() const { return to_float(bits); }

  static float to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
      if (mant == 0) {
        u = sign;
      } else {  // subnormal: normalise
        exp = 127 - 15 + 1;
        while (!(mant & 0x400u)) {
          mant <<= 1;
          --exp;
        }
        mant &= 0x3ffu;
        u = sign | (exp << 23) | (mant << 13);
      }
    } else if (exp == 31) {
      u = sign | 0x7f800000u | (mant << 13);
    } else {
      u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }

  static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00u;          // NaN
    if (abs >= 0x477ff000u) return sign | 0x7c00u;         // overflow (after rounding) -> inf
    if (abs < 0x38800000u) {                               // subnormal or zero in f16
      if (abs < 0x33000000u) return sign;                  // rounds to zero
      const uint32_t e = abs >> 23;
      const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
      // value = m * 2^(e-150) and the f16 subnormal unit is 2^-24, so the f16 mantissa is m >> (126 - e).
      const uint32_t shift = 126 - e;
      uint32_t r = m >> shift;
      const uint32_t rem = m & ((1u << shift) - 1);
      const uint32_t half = 1u << (shift - 1);
      if (rem > half || (rem == half && (r & 1u))) ++r;
      return sign | static_cast<uint16_t>(r);
    }
    uint32_t r = abs - 0x38000000u;  // rebias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return sign | static_cast<uint16_t>(r >> 13);
  }
};

}  // namespace kolo
