// Declarations of the frame I/O operations; each has a CPU twin (frame_io_cpu.cpp, OpenMP)
// and, when built with nvcc, a CUDA version (frame_io_cuda.cu) with the same arguments plus
// a stream. Planes and packed images carry a row pitch in bytes; NHWC float buffers are
// contiguous (h, w, 3). `bgr` swaps the channel order of packed/NHWC RGB data.
#pragma once
#include <stdint.h>
#include "frame_io.h"

namespace sf {

struct Plane { const uint8_t* p; int64_t pitch; };
struct OutPlane { uint8_t* p; int64_t pitch; };

// YUV 4:2:0 -> RGB (NHWC, dtype F32/F16/U8). nv12: uv interleaved (U, V); i420: separate planes.
void nv12_to_rgb_cpu(Plane y, Plane uv, void* out, int dt, int h, int w, const Coeffs& c, bool bgr);
void i420_to_rgb_cpu(Plane y, Plane u, Plane v, void* out, int dt, int h, int w, const Coeffs& c, bool bgr);
// RGB (packed rows of `in_pitch` elements, dtype F32/F16/U8) -> YUV 4:2:0 planes
void rgb_to_nv12_cpu(const void* in, int dt, int64_t in_pitch, OutPlane y, OutPlane uv, int h, int w,
                     const Coeffs& c, bool bgr);
void rgb_to_i420_cpu(const void* in, int dt, int64_t in_pitch, OutPlane y, OutPlane u, OutPlane v, int h, int w,
                     const Coeffs& c, bool bgr);
// packed uint8 RGB/BGR rows (pitch in bytes) <-> contiguous NHWC RGB in [0, 1] (F32/F16/U8)
void packed_to_nhwc_cpu(Plane in, bool bgr, void* out, int dt, int h, int w);
void nhwc_to_packed_cpu(const void* in, int dt, OutPlane out, bool bgr, int h, int w);

#ifdef SRGAN_FAST_WITH_CUDA
// CUDA versions: same arguments, device pointers, plus a cudaStream_t as an integer.
// Return 0 or a cudaError_t code (the binding turns it into a message).
int nv12_to_rgb_cuda(Plane y, Plane uv, void* out, int dt, int h, int w, const Coeffs& c, bool bgr, uintptr_t stream);
int i420_to_rgb_cuda(Plane y, Plane u, Plane v, void* out, int dt, int h, int w, const Coeffs& c, bool bgr,
                     uintptr_t stream);
int rgb_to_nv12_cuda(const void* in, int dt, int64_t in_pitch, OutPlane y, OutPlane uv, int h, int w,
                     const Coeffs& c, bool bgr, uintptr_t stream);
int rgb_to_i420_cuda(const void* in, int dt, int64_t in_pitch, OutPlane y, OutPlane u, OutPlane v, int h, int w,
                     const Coeffs& c, bool bgr, uintptr_t stream);
int packed_to_nhwc_cuda(Plane in, bool bgr, void* out, int dt, int h, int w, uintptr_t stream);
int nhwc_to_packed_cuda(const void* in, int dt, OutPlane out, bool bgr, int h, int w, uintptr_t stream);
const char* cuda_error_string(int code);
#endif

}  // namespace sf
