// Run-time choice among the ISA builds of the CPU convolution kernels (cpu_conv.h).
// SRGAN_FAST_CPU_ISA=generic|avx2|avx512 narrows the choice (tests run every path this CPU
// can); a request above what the CPU has falls back to the best it does have.
#include "cpu_conv.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace sf {
namespace cpu {

namespace {

enum Isa { GENERIC = 0, AVX2 = 1, AVX512 = 2 };

int detect() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return AVX2;
#endif
  return GENERIC;
}

bool detect_bf16() {
#if defined(__x86_64__) || defined(_M_X64)
  // avx512_bf16 is CPUID leaf 7 sub-leaf 1, EAX bit 5 (GCC 12's __builtin_cpu_supports knows it
  // as "avx512bf16"; read CPUID directly so older compilers build too)
  unsigned a = 7, b = 0, c = 1, d = 0;
  __asm__ __volatile__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
  return detect() == AVX512 && ((a >> 5) & 1);
#else
  return false;
#endif
}

int chosen() {
  static const int isa = [] {
    int best = detect();
    const char* want = std::getenv("SRGAN_FAST_CPU_ISA");
    if (want && *want) {
      int w = !std::strcmp(want, "generic") ? GENERIC : !std::strcmp(want, "avx2") ? AVX2 : AVX512;
      if (w < best) best = w;
    }
    return best;
  }();
  return isa;
}

}  // namespace

std::string isa() {
  switch (chosen()) {
    case AVX512:
      return has_bf16() ? "avx512+bf16" : "avx512";
    case AVX2:
      return "avx2";
    default:
      return "generic";
  }
}

bool has_bf16() {
  static const bool b = detect_bf16();
  return b && chosen() == AVX512;
}

void winograd(const ConvShape& s, int m, const void* u, int npad, bool bf16, const Epilogue& e, int threads) {
  if (bf16 && !has_bf16()) throw std::invalid_argument("bf16 kernels need a CPU with avx512_bf16");
#if defined(__x86_64__) || defined(_M_X64)
  if (chosen() == AVX512) return avx512::winograd(s, m, u, npad, bf16, e, threads);
  if (chosen() == AVX2) return avx2::winograd(s, m, u, npad, bf16, e, threads);
#endif
  generic::winograd(s, m, u, npad, bf16, e, threads);
}

void direct(const ConvShape& s, int k, const void* wt, int npad, bool bf16, const Epilogue& e, int threads) {
  if (bf16 && !has_bf16()) throw std::invalid_argument("bf16 kernels need a CPU with avx512_bf16");
#if defined(__x86_64__) || defined(_M_X64)
  if (chosen() == AVX512) return avx512::direct(s, k, wt, npad, bf16, e, threads);
  if (chosen() == AVX2) return avx2::direct(s, k, wt, npad, bf16, e, threads);
#endif
  generic::direct(s, k, wt, npad, bf16, e, threads);
}

void direct_px(const ConvShape& s, int k, const float* wt, int nc, const Epilogue& e, int threads) {
#if defined(__x86_64__) || defined(_M_X64)
  if (chosen() == AVX512) return avx512::direct_px(s, k, wt, nc, e, threads);
  if (chosen() == AVX2) return avx2::direct_px(s, k, wt, nc, e, threads);
#endif
  generic::direct_px(s, k, wt, nc, e, threads);
}

}  // namespace cpu
}  // namespace sf
