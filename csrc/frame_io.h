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
//
// Element access (load/store of f32/f16/u8 buffers, RGB pixels, a 2x2 chroma block) lives
// here too, as host+device inline functions: the CPU twins and the kernels index memory
// the same way. fp16 is _Float16 in g++ and __half in nvcc; both convert float32 -> fp16
// rounding to nearest even, so the twins stay equal for f16 output.
#pragma once
#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#include <cuda_fp16.h>
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

#ifdef __CUDACC__
typedef __half half_t;
SF_HD float half_to_float(half_t v) { return __half2float(v); }
SF_HD half_t float_to_half(float v) { return __float2half_rn(v); }
#else
typedef _Float16 half_t;
SF_HD float half_to_float(half_t v) { return (float)v; }
SF_HD half_t float_to_half(float v) { return (half_t)v; }
#endif

// element i of a buffer of type dt, as a float (u8 levels scaled to [0, 1])
SF_HD float load(const void* p, int dt, int64_t i) {
  if (dt == F32) return ((const float*)p)[i];
  if (dt == F16) return half_to_float(((const half_t*)p)[i]);
  return u8_to_unit(((const uint8_t*)p)[i]);
}

SF_HD void store(void* p, int dt, int64_t i, float v) {  // v already in [0, 1]
  if (dt == F32) ((float*)p)[i] = v;
  else if (dt == F16) ((half_t*)p)[i] = float_to_half(v);
  else ((uint8_t*)p)[i] = unit_to_u8(v);
}

// pixel px of a contiguous NHWC RGB buffer
SF_HD void store_rgb(void* out, int dt, int64_t px, float r, float g, float b, bool bgr) {
  store(out, dt, px * 3 + 0, bgr ? b : r);
  store(out, dt, px * 3 + 1, g);
  store(out, dt, px * 3 + 2, bgr ? r : b);
}

// pixel (row, col) of RGB rows of `pitch` elements, clamped to [0, 1]
SF_HD void load_rgb(const void* in, int dt, int64_t pitch, int row, int col, bool bgr, float* r, float* g, float* b) {
  int64_t i = (int64_t)row * pitch + (int64_t)col * 3;
  float c0 = clamp01(load(in, dt, i)), c1 = clamp01(load(in, dt, i + 1)), c2 = clamp01(load(in, dt, i + 2));
  *r = bgr ? c2 : c0;
  *g = c1;
  *b = bgr ? c0 : c2;
}

// U and V levels of 2x2 chroma block (by, bx) of an h x w RGB image; odd edges replicate the
// last row/column
SF_HD void rgb_block_uv(const void* in, int dt, int64_t pitch, int by, int bx, int h, int w, bool bgr,
                        const Coeffs& c, uint8_t* U, uint8_t* V) {
  float r[4], g[4], b[4];
  int r0 = 2 * by, r1 = 2 * by + 1 < h ? 2 * by + 1 : h - 1;
  int c0 = 2 * bx, c1 = 2 * bx + 1 < w ? 2 * bx + 1 : w - 1;
  load_rgb(in, dt, pitch, r0, c0, bgr, &r[0], &g[0], &b[0]);
  load_rgb(in, dt, pitch, r0, c1, bgr, &r[1], &g[1], &b[1]);
  load_rgb(in, dt, pitch, r1, c0, bgr, &r[2], &g[2], &b[2]);
  load_rgb(in, dt, pitch, r1, c1, bgr, &r[3], &g[3], &b[3]);
  block_uv(r, g, b, c, U, V);
}

// one packed uint8 RGB/BGR pixel `q` -> pixel px of an NHWC RGB buffer, and back
SF_HD void packed_px_to_nhwc(const uint8_t* q, bool bgr, void* out, int dt, int64_t px) {
  store_rgb(out, dt, px, u8_to_unit(q[0]), u8_to_unit(q[1]), u8_to_unit(q[2]), bgr);
}

SF_HD void nhwc_px_to_packed(const void* in, int dt, int w, int row, int col, bool bgr, uint8_t* q) {
  float r, g, b;
  load_rgb(in, dt, (int64_t)w * 3, row, col, false, &r, &g, &b);  // NHWC input is RGB
  q[0] = unit_to_u8(bgr ? b : r);
  q[1] = unit_to_u8(g);
  q[2] = unit_to_u8(bgr ? r : b);
}

}  // namespace sf
