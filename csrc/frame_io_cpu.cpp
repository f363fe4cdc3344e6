// CPU twins of the CUDA frame I/O kernels (OpenMP over rows). Same formulas and element
// access: frame_io.h.
#include <math.h>
#include "frame_io_ops.h"

namespace sf {
namespace {

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
      uint8_t U, V;
      rgb_block_uv(in, dt, pitch, by, bx, h, w, bgr, c, &U, &V);
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
      packed_px_to_nhwc(in.p + (int64_t)row * in.pitch + (int64_t)col * 3, bgr, out, dt, (int64_t)row * w + col);
    }
}

void nhwc_to_packed_cpu(const void* in, int dt, OutPlane out, bool bgr, int h, int w) {
#pragma omp parallel for schedule(static)
  for (int row = 0; row < h; ++row)
    for (int col = 0; col < w; ++col)
      nhwc_px_to_packed(in, dt, w, row, col, bgr, out.p + (int64_t)row * out.pitch + (int64_t)col * 3);
}

}  // namespace sf
