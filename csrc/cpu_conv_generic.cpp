// cpu_conv_impl.h for any CPU: 128-bit vectors (SSE2 on x86-64, NEON on ARM64), the baseline
// flags of the build. The path of last resort, chosen where neither AVX2+FMA nor AVX-512 is present.
#define SF_NS generic
#define SF_VL 4
#define SF_ACC 12
#define SF_NVMAX 2
#include "cpu_conv_impl.h"
