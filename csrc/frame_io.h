// Frame I/O arithmetic shared by the CPU twin (frame_io_cpu.cpp) and the CUDA kernels
// (frame_io_cuda.cu): one copy of every formula, so the two cannot drift apart.
//
// Colour: 8-bit Y'CbCr, BT.601 or BT.709, limited (16..235 / 16..240) or full range.
//   YUV -> RGB: y = (Y - yoff) * ys;  cb = (U - 128) * cs;  cr = (V - 128) * cs
//               R = y + rv*cr;  G = y - gu*cb - gv*cr;  B = y + bu*cb;  clamped to [0, 1]
//   RGB -> YUV: y = kr*R + kg*G + kb*B;  Y = yoff + yr*y;  cb = (B - y) * cbs;  U = 128 + cr_*cb
//   4:2:0 chroma is computed from the mean RGB of each 2x2 block; odd edges replicate the
//   last row/column (the block always averages 4 samples).
// Rounding: floor(x + 0.5) then clamp to 0..255 (levels are non-negative after clamping).
// Floats: float32 throughout, every product and sum in the order written here. Build with
// FMA contraction off (g++ -ffp-contract=off, nvcc --fmad=false) so results equal the numpy
// reference in srgan_fast/frame_io_reference.py bit for bit.
#pragma once
#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define SF_HD __host__ __device__ __forceinline__
#else
#define SF_HD inline
#endif

namespace sf {

struct Coeffs {
  float kr, kg, kb;          // luma weights
  float rv, gu, gv, bu;      // YUV -> RGB
  float cbs, crs;            // RGB -> Cb', Cr' (1 / (2 (1 - kb)), 1 / (2 (1 - kr)))
  float yoff, ys, yr;        // Y offset, 1 / Y range, Y range
  float cs, cr_;             // 1 / C range, C range
};

// Coefficients are derived in double and rounded to float once (numpy does the same).
inline Coeffs make_coeffs(int matrix, bool full_range) {
  double kr = matrix == 709 ? 0.2126 : 0.299;
  double kb = matrix == 709 ? 0.0722 : 0.114;
  double kg = 1.0 - kr - kb;
  double yr = full_range ? 255.0 : 219.0;
  double cr = full_range ? 255.0 : 224.0;
  Coeffs c;
  c.kr = (float)kr; c.kg = (float)kg; c.kb = (float)kb;
  c.rv = (float)(2.0 * (1.0 - kr));
  c.gu = (float)(2.0 * kb * (1.0 - kb) / kg);
  c.gv = (float)(2.0 * kr * (1.0 - kr) / kg);
  c.bu = (float)(2.0 * (1.0 - kb));
  c.cbs = (float)(1.0 / (2.0 * (1.0 - kb)));
  c.crs = (float)(1.0 / (2.0 * (1.0 - kr)));
  c.yoff = full_range ? 0.0f : 16.0f;
  c.ys = (float)(1.0 / yr);
  c.yr = (float)yr;
  c.cs = (float)(1.0 / cr);
  c.cr_ = (float)cr;
  return c;
}

SF_HD float clamp01(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }

SF_HD uint8_t level(float v) {  // round half up, clamp to 0..255
  float r = floorf(v + 0.5f);
  return (uint8_t)(r < 0.0f ? 0.0f : (r > 255.0f ? 255.0f : r));
}

SF_HD uint8_t unit_to_u8(float x) { return level(clamp01(x) * 255.0f); }

SF_HD float u8_to_unit(uint8_t v) { return (float)v / 255.0f; }

SF_HD void yuv_to_rgb(uint8_t Y, uint8_t U, uint8_t V, const Coeffs& c, float* r, float* g, float* b) {
  float y = ((float)Y - c.yoff) * c.ys;
  float cb = ((float)U - 128.0f) * c.cs;
  float cr = ((float)V - 128.0f) * c.cs;
  *r = clamp01(y + c.rv * cr);
  *g = clamp01((y - c.gu * cb) - c.gv * cr);
  *b = clamp01(y + c.bu * cb);
}

SF_HD float luma(float r, float g, float b, const Coeffs& c) { return (c.kr * r + c.kg * g) + c.kb * b; }

SF_HD uint8_t y_level(float r, float g, float b, const Coeffs& c) { return level(c.yoff + c.yr * luma(r, g, b, c)); }

// chroma of one 2x2 block from its four RGB samples (already in [0, 1])
SF_HD void block_uv(const float* r, const float* g, const float* b, const Coeffs& c, uint8_t* U, uint8_t* V) {
  float mr = (((r[0] + r[1]) + r[2]) + r[3]) / 4.0f;
  float mg = (((g[0] + g[1]) + g[2]) + g[3]) / 4.0f;
  float mb = (((b[0] + b[1]) + b[2]) + b[3]) / 4.0f;
  float y = luma(mr, mg, mb, c);
  *U = level(128.0f + c.cr_ * ((mb - y) * c.cbs));
  *V = level(128.0f + c.cr_ * ((mr - y) * c.crs));
}

// element types of float buffers
enum DType { F32 = 0, F16 = 1, U8 = 2 };

}  // namespace sf
