// cpu_conv_impl.h for AVX-512 (Skylake-X, Ice Lake, Zen 4, ...) with the avx512_bf16 tile;
// compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mfma (csrc/build_ext.py)
// and called only where the CPU reports those features (cpu_conv.cpp).
#define SF_NS avx512
#define SF_VL 16
#define SF_ACC 24
#define SF_NVMAX 4
#define SF_BF16 1
#include "cpu_conv_impl.h"
