// CUDA frame I/O kernels: one thread per pixel (or per 2x2 chroma block), the formulas of
// frame_io.h (element access included), so results equal the CPU twins in frame_io_cpu.cpp
// (build with --fmad=false).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include "frame_io_ops.h"

namespace sf {
namespace {

__global__ void k_yuv420_to_rgb(Plane y, Plane u, Plane v, int uv_step, void* out, int dt, int h, int w, Coeffs c,
                                bool bgr) {
  int col = blockIdx.x * blockDim.x + threadIdx.x;
  int row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= h || col >= w) return;
  int64_t ci = (int64_t)(row / 2);
  int64_t cj = (int64_t)(col / 2) * uv_step;  // nv12: u and v interleaved (step 2), i420: step 1
  float r, g, b;
  yuv_to_rgb(y.p[(int64_t)row * y.pitch + col], u.p[ci * u.pitch + cj], v.p[ci * v.pitch + cj], c, &r, &g, &b);
  store_rgb(out, dt, (int64_t)row * w + col, r, g, b, bgr);
}

__global__ void k_rgb_to_y(const void* in, int dt, int64_t pitch, OutPlane y, int h, int w, Coeffs c, bool bgr) {
  int col = blockIdx.x * blockDim.x + threadIdx.x;
  int row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= h || col >= w) return;
  float r, g, b;
  load_rgb(in, dt, pitch, row, col, bgr, &r, &g, &b);
  y.p[(int64_t)row * y.pitch + col] = y_level(r, g, b, c);
}

__global__ void k_rgb_to_uv(const void* in, int dt, int64_t pitch, OutPlane u, OutPlane v, int uv_step, int h, int w,
                            Coeffs c, bool bgr) {
  int bx = blockIdx.x * blockDim.x + threadIdx.x;
  int by = blockIdx.y * blockDim.y + threadIdx.y;
  if (by >= (h + 1) / 2 || bx >= (w + 1) / 2) return;
  uint8_t U, V;
  rgb_block_uv(in, dt, pitch, by, bx, h, w, bgr, c, &U, &V);
  u.p[(int64_t)by * u.pitch + (int64_t)bx * uv_step] = U;
  v.p[(int64_t)by * v.pitch + (int64_t)bx * uv_step] = V;
}

__global__ void k_packed_to_nhwc(Plane in, bool bgr, void* out, int dt, int h, int w) {
  int col = blockIdx.x * blockDim.x + threadIdx.x;
  int row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= h || col >= w) return;
  packed_px_to_nhwc(in.p + (int64_t)row * in.pitch + (int64_t)col * 3, bgr, out, dt, (int64_t)row * w + col);
}

__global__ void k_nhwc_to_packed(const void* in, int dt, OutPlane out, bool bgr, int h, int w) {
  int col = blockIdx.x * blockDim.x + threadIdx.x;
  int row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= h || col >= w) return;
  nhwc_px_to_packed(in, dt, w, row, col, bgr, out.p + (int64_t)row * out.pitch + (int64_t)col * 3);
}

inline dim3 grid_for(int w, int h) { return dim3((w + 31) / 32, (h + 7) / 8); }
const dim3 kBlock(32, 8);

inline int last_error() { return (int)cudaGetLastError(); }

}  // namespace

int nv12_to_rgb_cuda(Plane y, Plane uv, void* out, int dt, int h, int w, const Coeffs& c, bool bgr, uintptr_t s) {
  Plane v{uv.p + 1, uv.pitch};
  k_yuv420_to_rgb<<<grid_for(w, h), kBlock, 0, (cudaStream_t)s>>>(y, uv, v, 2, out, dt, h, w, c, bgr);
  return last_error();
}

int i420_to_rgb_cuda(Plane y, Plane u, Plane v, void* out, int dt, int h, int w, const Coeffs& c, bool bgr,
                     uintptr_t s) {
  k_yuv420_to_rgb<<<grid_for(w, h), kBlock, 0, (cudaStream_t)s>>>(y, u, v, 1, out, dt, h, w, c, bgr);
  return last_error();
}

int rgb_to_nv12_cuda(const void* in, int dt, int64_t pitch, OutPlane y, OutPlane uv, int h, int w, const Coeffs& c,
                     bool bgr, uintptr_t s) {
  k_rgb_to_y<<<grid_for(w, h), kBlock, 0, (cudaStream_t)s>>>(in, dt, pitch, y, h, w, c, bgr);
  OutPlane v{uv.p + 1, uv.pitch};
  k_rgb_to_uv<<<grid_for((w + 1) / 2, (h + 1) / 2), kBlock, 0, (cudaStream_t)s>>>(in, dt, pitch, uv, v, 2, h, w, c,
                                                                                   bgr);
  return last_error();
}

int rgb_to_i420_cuda(const void* in, int dt, int64_t pitch, OutPlane y, OutPlane u, OutPlane v, int h, int w,
                     const Coeffs& c, bool bgr, uintptr_t s) {
  k_rgb_to_y<<<grid_for(w, h), kBlock, 0, (cudaStream_t)s>>>(in, dt, pitch, y, h, w, c, bgr);
  k_rgb_to_uv<<<grid_for((w + 1) / 2, (h + 1) / 2), kBlock, 0, (cudaStream_t)s>>>(in, dt, pitch, u, v, 1, h, w, c,
                                                                                   bgr);
  return last_error();
}

int packed_to_nhwc_cuda(Plane in, bool bgr, void* out, int dt, int h, int w, uintptr_t s) {
  k_packed_to_nhwc<<<grid_for(w, h), kBlock, 0, (cudaStream_t)s>>>(in, bgr, out, dt, h, w);
  return last_error();
}

int nhwc_to_packed_cuda(const void* in, int dt, OutPlane out, bool bgr, int h, int w, uintptr_t s) {
  k_nhwc_to_packed<<<grid_for(w, h), kBlock, 0, (cudaStream_t)s>>>(in, dt, out, bgr, h, w);
  return last_error();
}

const char* cuda_error_string(int code) { return cudaGetErrorString((cudaError_t)code); }

}  // namespace sf
