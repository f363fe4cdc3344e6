// One Winograd conv timed alone (the avx512 build of csrc/cpu_conv_impl.h), 2 OpenMP threads:
//   g++ -O3 -std=c++20 -fopenmp -ffp-contract=fast -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mfma \
//       winograd_harness.cpp -o wh && ./wh H W CIN COUT M BF16 [REPS]     (e.g. ./wh 270 480 64 64 2 1 9)
#define SF_NS avx512
#define SF_VL 16
#define SF_ACC 24
#define SF_NVMAX 4
#define SF_BF16 1
#include "../../../../csrc/cpu_conv_impl.h"
#include <chrono>
#include <cstdio>
#include <vector>
#include <random>
#include <algorithm>
using namespace sf::cpu;
int main(int argc, char** argv) {
  int H = atoi(argv[1]), W = atoi(argv[2]), cin = atoi(argv[3]), cout = atoi(argv[4]), m = atoi(argv[5]), bf = atoi(argv[6]);
  int reps = argc > 7 ? atoi(argv[7]) : 10;
  int threads = 2;
  std::vector<float> x((size_t)H * W * cin), y((size_t)H * W * cout), bias(cout, 0.1f), pre(cout, 0.2f);
  std::mt19937 g(0); std::uniform_real_distribution<float> d(-1, 1);
  for (auto& v : x) v = d(g);
  int P = (m + 2) * (m + 2);
  std::vector<float> u((size_t)P * cin * cout);
  for (auto& v : u) v = d(g) * 0.05f;
  std::vector<uint16_t> ub((size_t)P * cin * cout);
  for (size_t i = 0; i < ub.size(); ++i) { uint32_t b; memcpy(&b, &u[i], 4); ub[i] = b >> 16; }
  ConvShape s; s.x = x.data(); s.x_cs = cin; s.n = 1; s.h = H; s.w = W; s.cin = cin;
  Epilogue e; e.bias = bias.data(); e.prelu = pre.data(); e.y = y.data(); e.y_cs = cout; e.cout = cout; e.r = 1;
  const void* up = bf ? (const void*)ub.data() : (const void*)u.data();
  avx512::winograd(s, m, up, cout, bf, e, threads);
  std::vector<double> ts;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    avx512::winograd(s, m, up, cout, bf, e, threads);
    ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ts.begin(), ts.end());
  double t = ts[ts.size() / 2];
  double gmac = (double)H * W * cin * cout * 9 / 1e9;
  printf("H=%d W=%d %d->%d m=%d bf16=%d: %.2f ms  eff %.0f GFLOP/s\n", H, W, cin, cout, m, bf, t * 1e3, 2 * gmac / t);
}
