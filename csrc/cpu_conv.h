// CPU convolution kernels of the "native" backend (srgan_fast/backends/native.py).
//
// Activations are NHWC float32 with a pixel stride (the channels of the buffer they live in, so
// that a conv can read the first `cin` channels of a wide buffer and write its `cout` at a channel
// offset of another: RRDB's dense blocks). Two convolutions, one epilogue:
//
//   winograd: 3x3 stride 1 pad 1 by Winograd F(m x m, 3x3), m = 4 (6x6 tiles, 36 positions; fp32)
//     or 2 (4x4 tiles, 16 positions; bf16, whose rounding F(4x4)'s transforms amplify) (Lavin &
//     Gray 2016). The weights come transformed at plan time (U = G g G^T, P x cin x npad, fp64
//     math in Python); per block of tiles: the input transform (B^T d B, zero padding read as
//     zeros), P GEMMs (ours: register-blocked, broadcast-A), the output transform (A^T m A) with
//     the epilogue.
//   direct: any odd K, stride 1, pad K/2, as an implicit GEMM over (tap, cin) on a zero-padded copy
//     of the input; weights packed (K*K*cin) x npad.
//
//   epilogue (both): + bias, pixel shuffle (weights' output channels are given in the order
//     sub*C + c, sub = dy*r + dx, so 16 consecutive channels land on one output pixel), PReLU per
//     output channel, + skip (same resolution as the output), store at a channel offset.
//
// bf16 (winograd and direct, on CPUs with avx512_bf16): the GEMM operands in bf16 (V and the
// weights; the padded input for direct), products accumulated in fp32 by vdpbf16ps; transforms,
// epilogue and activations stay fp32.
//
// Each kernel is compiled three times (csrc/cpu_conv_{avx512,avx2,generic}.cpp, each with its
// own target flags) and cpu_conv.cpp picks one at run time from the CPU's features, so the
// module loads and runs on any x86-64 or ARM CPU.
#pragma once

#include <cstdint>
#include <string>

namespace sf {
namespace cpu {

struct Epilogue {
  const float* bias = nullptr;   // npad (in the weights' channel order)
  const float* prelu = nullptr;  // C (per output channel after the shuffle), or null
  const float* skip = nullptr;   // output-resolution NHWC, pixel stride skip_cs, or null
  int64_t skip_cs = 0;
  float* y = nullptr;  // output NHWC, pixel stride y_cs, first channel y_off
  int64_t y_cs = 0;
  int64_t y_off = 0;
  int r = 1;     // pixel shuffle factor (1: none)
  int cout = 0;  // conv output channels (C * r * r)
};

struct ConvShape {
  const float* x = nullptr;  // input NHWC, pixel stride x_cs, first `cin` channels read
  int64_t x_cs = 0;
  int n = 0, h = 0, w = 0, cin = 0;
};

// the kernels' ISA: "avx512" (+ "avx512_bf16"), "avx2", "generic"
std::string isa();
bool has_bf16();

// weights: float32 ((m+2)^2, cin, npad); bf16: uint16 ((m+2)^2, cin/2, npad, 2) -- pack_* in native.py
void winograd(const ConvShape& s, int m, const void* u, int npad, bool bf16, const Epilogue& e, int threads);
// weights: float32 (K*K*cin, npad); bf16: uint16 (K*K*cinp/2, npad, 2) with cinp = cin rounded to 2
void direct(const ConvShape& s, int k, const void* wt, int npad, bool bf16, const Epilogue& e, int threads);

// few output channels (cout <= nc, nc = 3, 6 or 12): vectorised over input channels where cin
// is a multiple of the vector width (else, or with SRGAN_FAST_DIRECT_PX set, over pixels); fp32
// weights (K, cin, K, nc), output channels beyond cout zero (in the shuffle order, as above)
void direct_px(const ConvShape& s, int k, const float* wt, int nc, const Epilogue& e, int threads);

// one ISA's implementation (cpu_conv_impl.h compiled in namespaces avx512, avx2, generic)
#define SF_CPU_DECLARE(NS)                                                                                   \
  namespace NS {                                                                                           \
  void winograd(const ConvShape& s, int m, const void* u, int npad, bool bf16, const Epilogue& e, int threads); \
  void direct(const ConvShape& s, int k, const void* wt, int npad, bool bf16, const Epilogue& e, int threads); \
  void direct_px(const ConvShape& s, int k, const float* wt, int nc, const Epilogue& e, int threads);          \
  }
SF_CPU_DECLARE(generic)
#if defined(__x86_64__) || defined(_M_X64)
SF_CPU_DECLARE(avx2)
SF_CPU_DECLARE(avx512)
#endif
#undef SF_CPU_DECLARE

}  // namespace cpu
}  // namespace sf
