// cpu_conv_impl.h for AVX2 + FMA (Haswell and later, Zen 1-3); compiled with -mavx2 -mfma
// (csrc/build_ext.py) and called only where the CPU reports both (cpu_conv.cpp).
#define SF_NS avx2
#define SF_VL 8
#define SF_ACC 12
#define SF_NVMAX 2
#include "cpu_conv_impl.h"
