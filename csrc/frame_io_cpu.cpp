// CPU twins of the CUDA frame I/O kernels (OpenMP over rows). Same formulas: frame_io.h.
#include <math.h>
#include "frame_io_ops.h"

namespace sf {
namespace {

inline float load(const void* p, int dt, int64_t i) {
  if (dt == F32) return ((const float*)p)[i];
  if (dt == F16) return (float)((const _Float16*)p)[i];
  return u8_to_unit(((const uint8_t*)p)[i]);
}

inline void store(void* p, int dt, int64_t i, float v) {  // v already in [0, 1]
  if (dt == F32) ((float*)p)[i] = v;
  else if (dt == F16) ((_Float16*)p)[i] = (_Float16)v;
  else ((uint8_t*)p)[i] = unit_to_u8(v);
}

inline void store_rgb(void* out, int dt, int64_t px, float r, float g, float b, bool bgr) {
  store(out, dt, px * 3 + 0, bgr ? b : r);
  store(out, dt, px * 3 + 1, g);
  store(out, dt, px * 3 + 2, bgr ? r : b);
}

inline void load_rgb(const void* in, int dt, int64_t pitch, int row, int col, bool bgr, float* r, float* g, float* b) {
  int64_t i = (int64_t)row * pitch + (int64_t)col * 3;
  float c0 = clamp01(load(in, dt, i)), c1 = clamp01(load(in, dt, i + 1)), c2 = clamp01(load(in, dt, i + 2));
  *r = bgr ? c2 : c0;
  *g = c1;
  *b = bgr ? c0 : c2;
}

// Y plane and one chroma block; store_uv(by, bx, U, V) writes the format's chroma layout
template <typename StoreUV>
void rgb_to_yuv420(const void* in, int dt, int64_t pitch, OutPlane y, int h, int w, const Coeffs& c, bool bgr,
                   StoreUV store_uv) {
#pragma omp parallel for schedule(static)
  for (int row = 0; row < h; ++row)
    for (int col = 0; col < w; ++col) {
      float r, g, b;
      load_rgb(in, dt, pitch, row, col, bgr, &r, &g, &b);
      y.p[(int64_t)row * y.pitch + col] = y_level(r, g, b, c);
    }
  int bh = (h + 1) / 2, bw = (w + 1) / 2;
#pragma omp parallel for schedule(static)
  for (int by = 0; by < bh; ++by)
    for (int bx = 0; bx < bw; ++bx) {
      float r[4], g[4], b[4];
      int r0 = 2 * by, r1 = 2 * by + 1 < h ? 2 * by + 1 : h - 1;
      int c0 = 2 * bx, c1 = 2 * bx + 1 < w ? 2 * bx + 1 : w - 1;
      load_rgb(in, dt, pitch, r0, c0, bgr, &r[0], &g[0], &b[0]);
      load_rgb(in, dt, pitch, r0, c1, bgr, &r[1], &g[1], &b[1]);
      load_rgb(in, dt, pitch, r1, c0, bgr, &r[2], &g[2], &b[2]);
      load_rgb(in, dt, pitch, r1, c1, bgr, &r[3], &g[3], &b[3]);
      uint8_t U, V;
      block_uv(r, g, b, c, &U, &V);
      store_uv(by, bx, U, V);
    }
}

}  // namespace

void nv12_to_rgb_cpu(Plane y, Plane uv, void* out, int dt, int h, int w, const Coeffs& c, bool bgr) {
#pragma omp parallel for schedule(static)
  for (int row = 0; row < h; ++row)
    for (int col = 0; col < w; ++col) {
      const uint8_t* q = uv.p + (int64_t)(row / 2) * uv.pitch + (int64_t)(col / 2) * 2;
      float r, g, b;
      yuv_to_rgb(y.p[(int64_t)row * y.pitch + col], q[0], q[1], c, &r, &g, &b);
      store_rgb(out, dt, (int64_t)row * w + col, r, g, b, bgr);
    }
}

void i420_to_rgb_cpu(Plane y, Plane u, Plane v, void* out, int dt, int h, int w, const Coeffs& c, bool bgr) {
#pragma omp parallel for schedule(static)
  for (int row = 0; row < h; ++row)
    for (int col = 0; col < w; ++col) {
      int64_t ci = (int64_t)(row / 2);
      float r, g, b;
      yuv_to_rgb(y.p[(int64_t)row * y.pitch + col], u.p[ci * u.pitch + col / 2], v.p[ci * v.pitch + col / 2], c, &r,
                 &g, &b);
      store_rgb(out, dt, (int64_t)row * w + col, r, g, b, bgr);
    }
}

void rgb_to_nv12_cpu(const void* in, int dt, int64_t pitch, OutPlane y, OutPlane uv, int h, int w, const Coeffs& c,
                     bool bgr) {
  rgb_to_yuv420(in, dt, pitch, y, h, w, c, bgr, [&](int by, int bx, uint8_t U, uint8_t V) {
    uint8_t* q = uv.p + (int64_t)by * uv.pitch + (int64_t)bx * 2;
    q[0] = U;
    q[1] = V;
  });
}

void rgb_to_i420_cpu(const void* in, int dt, int64_t pitch, OutPlane y, OutPlane u, OutPlane v, int h, int w,
                     const Coeffs& c, bool bgr) {
  rgb_to_yuv420(in, dt, pitch, y, h, w, c, bgr, [&](int by, int bx, uint8_t U, uint8_t V) {
    u.p[(int64_t)by * u.pitch + bx] = U;
    v.p[(int64_t)by * v.pitch + bx] = V;
  });
}

void packed_to_nhwc_cpu(Plane in, bool bgr, void* out, int dt, int h, int w) {
#pragma omp parallel for schedule(static)
  for (int row = 0; row < h; ++row)
    for (int col = 0; col < w; ++col) {
      const uint8_t* q = in.p + (int64_t)row * in.pitch + (int64_t)col * 3;
      store_rgb(out, dt, (int64_t)row * w + col, u8_to_unit(q[0]), u8_to_unit(q[1]), u8_to_unit(q[2]), bgr);
    }
}

void nhwc_to_packed_cpu(const void* in, int dt, OutPlane out, bool bgr, int h, int w) {
#pragma omp parallel for schedule(static)
  for (int row = 0; row < h; ++row)
    for (int col = 0; col < w; ++col) {
      float r, g, b;
      load_rgb(in, dt, (int64_t)w * 3, row, col, false, &r, &g, &b);  // NHWC input is RGB
      uint8_t* q = out.p + (int64_t)row * out.pitch + (int64_t)col * 3;
      q[0] = unit_to_u8(bgr ? b : r);
      q[1] = unit_to_u8(g);
      q[2] = unit_to_u8(bgr ? r : b);
    }
}

}  // namespace sf
