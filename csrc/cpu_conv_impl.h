// The CPU convolution kernels (see cpu_conv.h), written once over GCC/Clang vector types and
// compiled per ISA: the including source defines
//   SF_NS    the namespace (avx512, avx2, generic)
//   SF_VL    floats per vector register (16, 8, 4)
//   SF_ACC   accumulator registers of the GEMM tile (24 of AVX-512's 32 zmm; 12 of 16 ymm/xmm)
//   SF_NVMAX vectors of output channels per tile (4: 64 channels; 2)
//   SF_BF16  (optional) the avx512_bf16 GEMM tile
// and compiles with the matching -m flags and FMA contraction on.
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "cpu_conv.h"
#include <new>
#include <stdexcept>

#ifdef SF_BF16
#include <immintrin.h>
#endif

namespace sf {
namespace cpu {
namespace SF_NS {

namespace {

constexpr int VL = SF_VL;
constexpr int ACC = SF_ACC;
constexpr int NVMAX = SF_NVMAX;
constexpr int ROWS = 24;  // tile rows (Winograd tiles, output pixels) are padded to a multiple of this

typedef float vf __attribute__((vector_size(VL * 4)));
typedef float vfu __attribute__((vector_size(VL * 4), aligned(4)));  // unaligned loads and stores

inline vf ld(const float* p) { return *(const vfu*)p; }
inline void st(float* p, vf v) { *(vfu*)p = v; }
inline vf bc(float s) { return vf{} + s; }

constexpr int mr_for(int nv) { return ACC / nv < 12 ? ACC / nv : 12; }  // 6, 12, 8, 6 (AVX-512)
static_assert(ROWS % mr_for(1) == 0 && ROWS % mr_for(2) == 0, "rows");

// ---------------------------------------------------------------------------------------------
// epilogue: conv outputs for channels co0..co0+VL-1 (the weights' order, sub*C + c) at pixel
// (n, h, w) of the conv's own (pre-shuffle) grid of size H x W
struct Epi {
  const Epilogue& e;
  int C;  // output channels after the shuffle
  int H, W;
  bool vec;  // C % VL == 0 and cout % VL == 0: every vector lands on one output pixel

  Epi(const Epilogue& e_, int H_, int W_) : e(e_), C(e_.cout / (e_.r * e_.r)), H(H_), W(W_) {
    vec = (C % VL == 0) && (e.cout % VL == 0);
  }

  // what one vector of channels co0..co0+VL-1 needs, worked out once per vector, not per pixel:
  // its sub-pixel and first channel (vec), or each lane's (dy, dx, channel) (not vec)
  struct Lanes {
    int co0, dy, dx, c0, nl;
    vf bias, slope;
    int ldy[VL], ldx[VL], lc[VL];
    float lslope[VL];
  };
  __attribute__((always_inline)) inline Lanes lanes(int co0) const {
    Lanes l;
    l.co0 = co0;
    const int sub = vec ? co0 / C : 0;
    l.c0 = vec ? co0 % C : 0;
    l.dy = sub / e.r;
    l.dx = sub % e.r;
    l.bias = ld(e.bias + co0);
    l.slope = (vec && e.prelu) ? ld(e.prelu + l.c0) : vf{};
    l.nl = 0;
    if (!vec)
      for (int j = 0; j < VL && co0 + j < e.cout; ++j, ++l.nl) {
        const int co = co0 + j, sj = co / C;
        l.lc[j] = co % C;
        l.ldy[j] = sj / e.r;
        l.ldx[j] = sj % e.r;
        l.lslope[j] = e.prelu ? e.prelu[l.lc[j]] : 1.0f;
      }
    return l;
  }

  // one value of conv output channel co (the weights' order) at pixel (n, h, w): + bias, the
  // shuffle, PReLU, + skip (the few-output kernels, which sum their channels one by one)
  inline void store1(int n, int h, int w, int co, float v) const {
    const int r = e.r, sub = co / C, c = co % C;
    const int64_t pix = ((int64_t)n * H * r + (int64_t)h * r + sub / r) * ((int64_t)W * r) + (int64_t)w * r + sub % r;
    v += e.bias[co];
    if (e.prelu && v < 0) v *= e.prelu[c];
    if (e.skip) v += e.skip[pix * e.skip_cs + c];
    e.y[pix * e.y_cs + e.y_off + c] = v;
  }

  // (always inlined: GCC kept it out of line, a call per output vector with the vector passed
  // in memory, 15-20% of a Winograd conv's time)
  __attribute__((always_inline)) inline void store(const Lanes& l, int n, int h, int w, vf val) const {
    const int r = e.r;
    const int64_t OH = (int64_t)H * r, OW = (int64_t)W * r;
    val += l.bias;
    if (vec) {
      const int64_t pix = ((int64_t)n * OH + (int64_t)h * r + l.dy) * OW + (int64_t)w * r + l.dx;
      if (e.prelu) val = val > 0 ? val : val * l.slope;
      if (e.skip) val += ld(e.skip + pix * e.skip_cs + l.c0);
      st(e.y + pix * e.y_cs + e.y_off + l.c0, val);
      return;
    }
    const int64_t row0 = (int64_t)n * OH + (int64_t)h * r, col0 = (int64_t)w * r;
    for (int j = 0; j < l.nl; ++j) {
      const int64_t pix = (row0 + l.ldy[j]) * OW + col0 + l.ldx[j];
      float v = val[j];
      if (v < 0) v *= l.lslope[j];
      if (e.skip) v += e.skip[pix * e.skip_cs + l.lc[j]];
      e.y[pix * e.y_cs + e.y_off + l.lc[j]] = v;
    }
  }
};

// ---------------------------------------------------------------------------------------------
// GEMM tile, fp32: acc[MR][NV] = sum over segments s and k < K of
//   A[i*lda + seg[s] + k] * B[(s*K + k)*ldb + v*VL ...]
// (Winograd: one segment; direct conv: one per filter tap), then out(i, v, acc).
template <int MR, int NV, int LDA, class Out>
inline void gemm_tile(const float* A, int64_t lda_rt, const int64_t* seg, int nseg, int K, const float* B, int64_t ldb,
                      Out&& out) {
  const int64_t lda = LDA ? LDA : lda_rt;
  vf acc[MR][NV];
#pragma GCC unroll 24
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = vf{};
  const float* b = B;
  for (int s = 0; s < nseg; ++s) {
    const float* a = A + seg[s];
    for (int k = 0; k < K; ++k, b += ldb) {
      vf bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = ld(b + v * VL);
#pragma GCC unroll 24
      for (int i = 0; i < MR; ++i) {
        const vf ai = bc(a[i * lda + k]);  // (a constant LDA: one base register for all MR rows)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
      }
    }
  }
#pragma GCC unroll 24
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) out(i, v, acc[i][v]);
}

#ifdef SF_BF16
// GEMM tile, bf16 operands, fp32 accumulation (vdpbf16ps): A holds bf16 pairs (k, k+1) at
// A[i*lda + seg[s] + 2*kk], B is (nseg*K2, npad, 2) bf16; K2 = pairs per segment.
template <int MR, int NV, int LDA, class Out>
inline void gemm_tile_bf16(const uint16_t* A, int64_t lda_rt, const int64_t* seg, int nseg, int K2, const uint16_t* B,
                           int64_t ldb, Out&& out) {
  static_assert(VL == 16, "bf16 tiles are AVX-512");
  const int64_t lda = LDA ? LDA : lda_rt;
  __m512 acc[MR][NV];
#pragma GCC unroll 24
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  const uint16_t* b = B;
  for (int s = 0; s < nseg; ++s) {
    const uint16_t* a = A + seg[s];
    for (int kk = 0; kk < K2; ++kk, b += 2 * ldb) {
      __m512i bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512((const void*)(b + v * 32));
#pragma GCC unroll 24
      for (int i = 0; i < MR; ++i) {
        int32_t pair;
        std::memcpy(&pair, a + i * lda + 2 * kk, 4);
        const __m512i ai = _mm512_set1_epi32(pair);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], (__m512bh)ai, (__m512bh)bv[v]);
      }
    }
  }
#pragma GCC unroll 24
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      vf x;
      std::memcpy(&x, &acc[i][v], sizeof(x));
      out(i, v, x);
    }
}

inline void to_bf16(uint16_t* dst, vf x) {
  __m512 v;
  std::memcpy(&v, &x, sizeof(v));
  __m256bh h = _mm512_cvtneps_pbh(v);
  std::memcpy(dst, &h, 32);
}
#endif

// calls f.template operator()<MR, NV, LDA>() for the chunk of `nv` vectors (1..NVMAX) and the
// row stride `lda` of A: the input channel counts of the families' convs are compile-time
// constants (the MR row addresses are then one register plus offsets; with a run-time stride
// the compiler holds MR pointers and, past 8 or so, spills accumulators), others run-time (0)
template <int MR, int NV, class F>
inline void with_lda(int64_t lda, F& f) {
  switch (lda) {
    case 64:
      return f.template operator()<MR, NV, 64>();
    case 96:
      return f.template operator()<MR, NV, 96>();
    case 128:
      return f.template operator()<MR, NV, 128>();
    case 160:
      return f.template operator()<MR, NV, 160>();
    case 192:
      return f.template operator()<MR, NV, 192>();
    default:
      return f.template operator()<MR, NV, 0>();
  }
}

template <class F>
inline void with_tile(int nv, int64_t lda, F&& f) {
  switch (nv) {
    case 1:
      with_lda<mr_for(1), 1>(lda, f);
      break;
#if SF_NVMAX >= 2
    case 2:
      with_lda<mr_for(2), 2>(lda, f);
      break;
#endif
#if SF_NVMAX >= 3
    case 3:
      with_lda<mr_for(3), 3>(lda, f);
      break;
#endif
#if SF_NVMAX >= 4
    case 4:
      with_lda<mr_for(4), 4>(lda, f);
      break;
#endif
    default:
      break;
  }
}

// No std:: templates in this file: it is compiled once per ISA, and an inline template
// instantiated here with AVX-512 flags could be the copy the linker keeps for every caller,
// including the generic path on a CPU without AVX-512. Own helpers, internal linkage.
template <class T>
inline T mn(T a, T b) {
  return a < b ? a : b;
}
template <class T>
inline T mx(T a, T b) {
  return a < b ? b : a;
}

// per-thread scratch that keeps its memory between calls (OpenMP reuses its threads)
struct Scratch {
  void* p = nullptr;
  size_t bytes = 0;
  ~Scratch() { std::free(p); }
  template <class T>
  T* get(size_t n) {
    if (bytes < n * sizeof(T)) {
      std::free(p);
      p = std::calloc(n, sizeof(T));  // zero-filled: padded rows read finite values
      bytes = p ? n * sizeof(T) : 0;  // null: the caller skips its work and reports (no throw
                                      // may leave an OpenMP region)
    }
    return (T*)p;
  }
};

// ---------------------------------------------------------------------------------------------
// Winograd F(4x4, 3x3)
inline void bt6(const vf* d, int s, vf* t, int ts) {  // t = B^T d (6 values, strides s / ts)
  const vf d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
  t[0] = 4.0f * d0 - 5.0f * d2 + d4;
  t[ts] = d3 + d4 - 4.0f * (d1 + d2);
  t[2 * ts] = 4.0f * (d1 - d2) + d4 - d3;
  t[3 * ts] = 2.0f * (d3 - d1) + d4 - d2;
  t[4 * ts] = 2.0f * (d1 - d3) + d4 - d2;
  t[5 * ts] = 4.0f * d1 - 5.0f * d3 + d5;
}

inline void at6(const vf* m, int s, vf* o, int os) {  // o = A^T m (6 -> 4)
  const vf m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
  const vf p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4;
  o[0] = m0 + p12 + p34;
  o[os] = d12 + 2.0f * d34;
  o[2 * os] = p12 + 4.0f * p34;
  o[3 * os] = d12 + 8.0f * d34 + m5;
}

// Winograd F(6x6, 3x3) (points 0, +-1, +-2, +-1/2, inf; the factored forms ncnn's winograd63 uses):
// 64 multiplies per 36 outputs against F(4x4)'s 36 per 16 (21% fewer), at about twice its
// rounding error in fp32 (measured per family in tests/backends/test_native.py)
inline void bt8(const vf* d, int s, vf* t, int ts) {  // t = B^T d (8 values)
  const vf d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s], d6 = d[6 * s],
           d7 = d[7 * s];
  t[0] = d0 - d6 + 5.25f * (d4 - d2);
  t[7 * ts] = d7 - d1 + 5.25f * (d3 - d5);
  const vf a12 = d2 + d6 - 4.25f * d4, b12 = d1 + d5 - 4.25f * d3;
  t[ts] = a12 + b12;
  t[2 * ts] = a12 - b12;
  const vf a34 = d6 + 0.25f * d2 - 1.25f * d4, b34 = 0.5f * d1 - 2.5f * d3 + 2.0f * d5;
  t[3 * ts] = a34 + b34;
  t[4 * ts] = a34 - b34;
  const vf a56 = d6 + 4.0f * (d2 - 1.25f * d4), b56 = 2.0f * d1 - 2.5f * d3 + 0.5f * d5;
  t[5 * ts] = a56 + b56;
  t[6 * ts] = a56 - b56;
}

inline void at8(const vf* m, int s, vf* o, int os) {  // o = A^T m (8 -> 6)
  const vf m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s], m6 = m[6 * s],
           m7 = m[7 * s];
  const vf pa = m1 + m2, da = m1 - m2, pb = m3 + m4, db = m3 - m4, pc = m5 + m6, dc = m5 - m6;
  o[0] = m0 + pa + pb + pc;
  o[os] = da + 2.0f * db + 0.5f * dc;
  o[2 * os] = pa + 4.0f * pb + 0.25f * pc;
  o[3 * os] = da + 8.0f * db + 0.125f * dc;
  o[4 * os] = pa + 16.0f * pb + 0.0625f * pc;
  o[5 * os] = m7 + da + 32.0f * db + 0.03125f * dc;
}

// Winograd F(2x2, 3x3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], A^T = [1 1 1 0; 0 1 -1 -1].
// Its transforms only add and subtract: rounding the GEMM operands to bf16 costs what it costs a
// direct convolution, where F(4x4) amplifies it (its coefficients reach 8): the bf16 choice.
inline void bt4(const vf* d, int s, vf* t, int ts) {
  const vf d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s];
  t[0] = d0 - d2;
  t[ts] = d1 + d2;
  t[2 * ts] = d2 - d1;
  t[3 * ts] = d1 - d3;
}

inline void at4(const vf* m, int s, vf* o, int os) {
  const vf m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s];
  o[0] = m0 + m1 + m2;
  o[os] = m1 - m2 - m3;
}

template <int TM>
void winograd_impl(const ConvShape& s, const void* u, int npad, bool bf16, const Epilogue& e, int threads) {
  constexpr int TA = TM + 2, P = TA * TA;  // tile side, transform positions
  const int H = s.h, W = s.w, cin = s.cin;
  const int th = (H + TM - 1) / TM, tw = (W + TM - 1) / TM;
  const int64_t T = (int64_t)s.n * th * tw;
  const int64_t per_tile = P * 4 * (int64_t)(cin + npad);
  int TB = (int)mx<int64_t>(1, (384 * 1024) / per_tile / ROWS) * ROWS;
  const int64_t nblk = (T + TB - 1) / TB;
  if (nblk < 4 * threads)  // keep every thread busy on small frames
    TB = (int)mx<int64_t>(ROWS, (T + 4 * threads - 1) / (4 * threads) / ROWS * ROWS);
  const int64_t nblocks = (T + TB - 1) / TB;
  const Epi epi(e, H, W);
  const int nvtot = npad / VL;
  // the P positions' planes of V and M, 64 bytes longer than their rows: planes a multiple of
  // 4 KiB apart (TB * npad * 4 bytes often is) put the 16-64 loads (output transform) or stores
  // (input transform) of one tile in one L1 set, aliasing each other (64->64 at 270x480, bf16:
  // 1.14x faster padded)
  const int64_t vstride = (int64_t)TB * cin + (bf16 ? 32 : 16), mstride = (int64_t)TB * npad + 16;
#ifndef SF_BF16
  (void)bf16;
#endif

  int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
  {
    static thread_local Scratch Vs, Ms;
    float* V = nullptr;
    uint16_t* Vb = nullptr;
    if (bf16)
      Vb = Vs.get<uint16_t>((size_t)P * vstride);
    else
      V = Vs.get<float>((size_t)P * vstride);
    float* M = Ms.get<float>((size_t)P * mstride);
    const bool ok = M && (bf16 ? Vb != nullptr : V != nullptr);
    if (!ok) failed = 1;
    (void)Vb;  // (unused in the ISA builds without the bf16 tile)

#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      if (!ok) continue;
      const int64_t t0 = blk * TB;
      const int nt = (int)mn<int64_t>(TB, T - t0);
      // input transform: V[p][i][c] = (B^T d B)[p] for tile t0+i
      for (int i = 0; i < nt; ++i) {
        const int64_t t = t0 + i;
        const int n = (int)(t / ((int64_t)th * tw));
        const int rem = (int)(t % ((int64_t)th * tw));
        const int y0 = (rem / tw) * TM - 1, x0 = (rem % tw) * TM - 1;
        const float* xb = s.x + (int64_t)n * H * W * s.x_cs;
        const bool inside = y0 >= 0 && x0 >= 0 && y0 + TA <= H && x0 + TA <= W;
        for (int c = 0; c < cin; c += VL) {
          vf d[P], tmp[P];
          if (inside) {
            const float* p0 = xb + ((int64_t)y0 * W + x0) * s.x_cs + c;
            for (int r = 0; r < TA; ++r)
              for (int q = 0; q < TA; ++q) d[r * TA + q] = ld(p0 + ((int64_t)r * W + q) * s.x_cs);
          } else {
            for (int r = 0; r < TA; ++r) {
              const int yy = y0 + r;
              const bool rok = yy >= 0 && yy < H;
              for (int q = 0; q < TA; ++q) {
                const int xx = x0 + q;
                d[r * TA + q] = (rok && xx >= 0 && xx < W) ? ld(xb + ((int64_t)yy * W + xx) * s.x_cs + c) : vf{};
              }
            }
          }
          if constexpr (TM == 6) {
            for (int q = 0; q < TA; ++q) bt8(d + q, TA, tmp + q, TA);
            for (int r = 0; r < TA; ++r) bt8(tmp + r * TA, 1, d + r * TA, 1);
          } else if constexpr (TM == 4) {
            for (int q = 0; q < TA; ++q) bt6(d + q, TA, tmp + q, TA);           // columns
            for (int r = 0; r < TA; ++r) bt6(tmp + r * TA, 1, d + r * TA, 1);  // rows
          } else {
            for (int q = 0; q < TA; ++q) bt4(d + q, TA, tmp + q, TA);
            for (int r = 0; r < TA; ++r) bt4(tmp + r * TA, 1, d + r * TA, 1);
          }
#ifdef SF_BF16
          if (bf16) {
            for (int p = 0; p < P; ++p) to_bf16(Vb + p * vstride + (int64_t)i * cin + c, d[p]);
            continue;
          }
#endif
          for (int p = 0; p < P; ++p) st(V + p * vstride + (int64_t)i * cin + c, d[p]);
        }
      }
      // P GEMMs: M[p] (rows x npad) = V[p] (rows x cin) . U[p] (cin x npad)
      const int rows = nt;
      const int64_t seg0 = 0;
      for (int p = 0; p < P; ++p) {
        for (int v0 = 0; v0 < nvtot; v0 += NVMAX) {
          const int nv = mn(NVMAX, nvtot - v0);
          float* Mp = M + p * mstride + v0 * VL;
          auto body = [&]<int MR, int NV, int LDA>() {
            for (int i0 = 0; i0 < rows; i0 += MR) {
              auto out = [&](int i, int v, vf acc) { st(Mp + (int64_t)(i0 + i) * npad + v * VL, acc); };
#ifdef SF_BF16
              if (bf16) {
                const uint16_t* Ub = (const uint16_t*)u + (int64_t)p * cin * npad + v0 * VL * 2;
                gemm_tile_bf16<MR, NV, LDA>(Vb + p * vstride + (int64_t)i0 * cin, cin, &seg0, 1, cin / 2, Ub, npad, out);
                continue;
              }
#endif
              const float* Uf = (const float*)u + (int64_t)p * cin * npad + v0 * VL;
              gemm_tile<MR, NV, LDA>(V + p * vstride + (int64_t)i0 * cin, cin, &seg0, 1, cin, Uf, npad, out);
            }
          };
          with_tile(nv, cin, body);
        }
      }
      // output transform + epilogue
      for (int i = 0; i < nt; ++i) {
        const int64_t t = t0 + i;
        const int n = (int)(t / ((int64_t)th * tw));
        const int rem = (int)(t % ((int64_t)th * tw));
        const int h0 = (rem / tw) * TM, w0 = (rem % tw) * TM;
        const int hn = mn(TM, H - h0), wn = mn(TM, W - w0);
        for (int co = 0; co < e.cout; co += VL) {
          const auto L = epi.lanes(co);
          vf m[P], tmp[TM * TA], o[TM * TM];
          for (int p = 0; p < P; ++p) m[p] = ld(M + p * mstride + (int64_t)i * npad + co);
          if constexpr (TM == 6) {
            for (int q = 0; q < TA; ++q) at8(m + q, TA, tmp + q, TA);
            for (int r = 0; r < TM; ++r) at8(tmp + r * TA, 1, o + r * TM, 1);
          } else if constexpr (TM == 4) {
            for (int q = 0; q < TA; ++q) at6(m + q, TA, tmp + q, TA);         // columns: 6x6 -> 4x6
            for (int r = 0; r < TM; ++r) at6(tmp + r * TA, 1, o + r * TM, 1);  // rows: 4x6 -> 4x4
          } else {
            for (int q = 0; q < TA; ++q) at4(m + q, TA, tmp + q, TA);
            for (int r = 0; r < TM; ++r) at4(tmp + r * TA, 1, o + r * TM, 1);
          }
          for (int r = 0; r < hn; ++r)
            for (int q = 0; q < wn; ++q) epi.store(L, n, h0 + r, w0 + q, o[r * TM + q]);
        }
      }
    }
  }
  if (failed) throw std::bad_alloc();
}

}  // namespace

void winograd(const ConvShape& s, int m, const void* u, int npad, bool bf16, const Epilogue& e, int threads) {
  if (m == 6)
    winograd_impl<6>(s, u, npad, bf16, e, threads);
  else if (m == 4)
    winograd_impl<4>(s, u, npad, bf16, e, threads);
  else
    winograd_impl<2>(s, u, npad, bf16, e, threads);
}

void direct(const ConvShape& s, int k, const void* wt, int npad, bool bf16, const Epilogue& e, int threads) {
  const int H = s.h, W = s.w, cin = s.cin, pad = k / 2;
  const int cinp = bf16 ? (cin + 1) & ~1 : cin;  // bf16 pairs: an odd cin gets a zero channel
  const int PW = ROWS + k - 1;                   // patch width: a row block of ROWS pixels + halo
  const int wblocks = (W + ROWS - 1) / ROWS;
  const int64_t work = (int64_t)s.n * H * wblocks;
  const Epi epi(e, H, W);
  const int nvtot = npad / VL;
  int64_t seg[32 * 32];
  if (k > 31) throw std::invalid_argument("direct: kernel size over 31");
  for (int ky = 0; ky < k; ++ky)
    for (int kx = 0; kx < k; ++kx) seg[ky * k + kx] = ((int64_t)ky * PW + kx) * cinp;
#ifndef SF_BF16
  (void)bf16;
#endif

  int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
  {
    static thread_local Scratch Ps;
    const size_t psize = (size_t)k * PW * cinp;
    float* P = bf16 ? nullptr : Ps.get<float>(psize);
    uint16_t* Pb = bf16 ? Ps.get<uint16_t>(psize) : nullptr;
    const bool ok = bf16 ? Pb != nullptr : P != nullptr;
    if (!ok) failed = 1;
    (void)Pb;

#pragma omp for schedule(dynamic, 4)
    for (int64_t it = 0; it < work; ++it) {
      if (!ok) continue;
      const int n = (int)(it / ((int64_t)H * wblocks));
      const int rem = (int)(it % ((int64_t)H * wblocks));
      const int h = rem / wblocks, w0 = (rem % wblocks) * ROWS;
      const float* xb = s.x + (int64_t)n * H * W * s.x_cs;
      // the patch: rows h-pad..h+pad, columns w0-pad..w0+ROWS+pad-1, zero outside the frame
      for (int ky = 0; ky < k; ++ky) {
        const int yy = h - pad + ky;
        for (int q = 0; q < PW; ++q) {
          const int xx = w0 - pad + q;
          const bool ok = yy >= 0 && yy < H && xx >= 0 && xx < W;
          const float* src = xb + ((int64_t)yy * W + xx) * s.x_cs;
          const size_t off = ((size_t)ky * PW + q) * cinp;
#ifdef SF_BF16
          if (bf16) {
            uint16_t* dst = Pb + off;
            int c = 0;
            if (ok)
              for (; c + VL <= cin; c += VL) to_bf16(dst + c, ld(src + c));
            for (; c < cinp; ++c) {
              float f = (ok && c < cin) ? src[c] : 0.0f;
              uint32_t b;
              std::memcpy(&b, &f, 4);
              b += 0x7fff + ((b >> 16) & 1);  // round to nearest even (finite inputs)
              dst[c] = (uint16_t)(b >> 16);
            }
            continue;
          }
#endif
          if (ok)
            std::memcpy(P + off, src, sizeof(float) * cin);
          else
            std::memset(P + off, 0, sizeof(float) * cin);
        }
      }
      const int wn = mn(ROWS, W - w0);
      for (int v0 = 0; v0 < nvtot; v0 += NVMAX) {
        const int nv = mn(NVMAX, nvtot - v0);
        auto body = [&]<int MR, int NV, int LDA>() {
          typename Epi::Lanes L[NV];
          for (int v = 0; v < NV; ++v) L[v] = epi.lanes((v0 + v) * VL);
          for (int i0 = 0; i0 < wn; i0 += MR) {
            auto out = [&](int i, int v, vf acc) {
              // (vectors of npad's padding past cout, on builds narrower than 16: no output)
              if (i0 + i < wn && (v0 + v) * VL < e.cout) epi.store(L[v], n, h, w0 + i0 + i, acc);
            };
#ifdef SF_BF16
            if (bf16) {
              gemm_tile_bf16<MR, NV, LDA>(Pb + (int64_t)i0 * cinp, cinp, seg, k * k, cinp / 2,
                                     (const uint16_t*)wt + v0 * VL * 2, npad, out);
              continue;
            }
#endif
            gemm_tile<MR, NV, LDA>(P + (int64_t)i0 * cinp, cinp, seg, k * k, cin, (const float*)wt + v0 * VL, npad,
                              out);
          }
        };
        with_tile(nv, cinp, body);
      }
    }
  }
  if (failed) throw std::bad_alloc();
}


namespace {

// direct conv for few output channels (the RGB tails: 3 or 12): vectorised over pixels, not
// channels (a channel vector would be mostly padding). The patch is transposed to channel-major
// rows (Pt[ky][c][x]), so 16 consecutive pixels of one channel are one load; the weights,
// (K, cin, K, NC) fp32, are broadcast one by one. acc[NPV pixel vectors][NC channels].
template <int NC, int NPV>
void direct_px_impl(const ConvShape& s, int k, const float* wt, const Epilogue& e, int threads) {
  const int H = s.h, W = s.w, cin = s.cin, pad = k / 2;
  constexpr int BW = NPV * VL;  // pixels per block
  const int PXW = BW + k - 1;
  const int wblocks = (W + BW - 1) / BW;
  const int64_t work = (int64_t)s.n * H * wblocks;
  const Epi epi(e, H, W);
  const int cout = e.cout;

  int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
  {
    static thread_local Scratch Ps;
    float* Pt = Ps.get<float>((size_t)k * cin * PXW);
    if (!Pt) failed = 1;
#pragma omp for schedule(dynamic, 4)
    for (int64_t it = 0; it < work; ++it) {
      if (!Pt) continue;
      const int n = (int)(it / ((int64_t)H * wblocks));
      const int rem = (int)(it % ((int64_t)H * wblocks));
      const int h = rem / wblocks, w0 = (rem % wblocks) * BW;
      const float* xb = s.x + (int64_t)n * H * W * s.x_cs;
      for (int ky = 0; ky < k; ++ky) {
        const int yy = h - pad + ky;
        float* rows = Pt + (size_t)ky * cin * PXW;
        for (int q = 0; q < PXW; ++q) {
          const int xx = w0 - pad + q;
          if (yy >= 0 && yy < H && xx >= 0 && xx < W) {
            const float* src = xb + ((int64_t)yy * W + xx) * s.x_cs;
            for (int c = 0; c < cin; ++c) rows[(size_t)c * PXW + q] = src[c];
          } else {
            for (int c = 0; c < cin; ++c) rows[(size_t)c * PXW + q] = 0.0f;
          }
        }
      }
      vf acc[NPV][NC];
#pragma GCC unroll 8
      for (int j = 0; j < NPV; ++j)
#pragma GCC unroll 12
        for (int o = 0; o < NC; ++o) acc[j][o] = vf{};
      for (int ky = 0; ky < k; ++ky)
        for (int c = 0; c < cin; ++c) {
          const float* xr = Pt + ((size_t)ky * cin + c) * PXW;
          const float* wr = wt + ((size_t)ky * cin + c) * k * NC;
          for (int kx = 0; kx < k; ++kx) {
            vf xv[NPV];
#pragma GCC unroll 8
            for (int j = 0; j < NPV; ++j) xv[j] = ld(xr + kx + j * VL);
#pragma GCC unroll 12
            for (int o = 0; o < NC; ++o) {
              const vf wv = bc(wr[kx * NC + o]);
#pragma GCC unroll 8
              for (int j = 0; j < NPV; ++j) acc[j][o] += xv[j] * wv;
            }
          }
        }
      float outv[NPV][NC][VL];  // (stored with constant indices: acc stays in registers above)
#pragma GCC unroll 8
      for (int j = 0; j < NPV; ++j)
#pragma GCC unroll 12
        for (int o = 0; o < NC; ++o) st(outv[j][o], acc[j][o]);
      for (int j = 0; j < NPV; ++j)
        for (int l = 0; l < VL; ++l) {
          const int w = w0 + j * VL + l;
          if (w >= W) break;
          for (int co = 0; co < cout; ++co) epi.store1(n, h, w, co, outv[j][co][l]);
        }
    }
  }
  if (failed) throw std::bad_alloc();
}

constexpr int npv_for(int nc) { return ACC / nc < 1 ? 1 : (ACC / nc > 8 ? 8 : ACC / nc); }

// ---------------------------------------------------------------------------------------------
// lane sums of VL vectors at once: a tree of log2(VL) levels, each pairing vectors (x, y) and
// adding the halves of every segment of width W: two 2-source shuffles and an add per pair
// (15 pairs for 16 vectors, against 4 shuffle-adds for each vector's own sum). Lane i of the
// result holds the sum of vector lane_src().a[i].
typedef int vi __attribute__((vector_size(VL * 4)));

template <int W>  // segment width before this level (VL, VL/2, .., 2)
inline vf fold(vf x, vf y) {
  constexpr int h = W / 2;
  vi m1, m2;
  for (int i = 0; i < VL; ++i) {
    const int sg = i / h, o = i % h;
    m1[i] = (sg % 2) * VL + (sg / 2) * W + o;  // output segment sg: segment sg/2 of x (even) or y (odd)
    m2[i] = m1[i] + h;
  }
  return __builtin_shuffle(x, y, m1) + __builtin_shuffle(x, y, m2);
}

template <int W>
inline void fold_levels(vf* v, int n) {
  for (int m = 0; m < n / 2; ++m) v[m] = fold<W>(v[2 * m], v[2 * m + 1]);
  if constexpr (W > 2) fold_levels<W / 2>(v, n / 2);
}

struct LaneSrc {
  int a[VL];
};
constexpr LaneSrc lane_src() {  // the same tree run on the vectors' indices
  int lab[VL][VL] = {};
  for (int k = 0; k < VL; ++k)
    for (int i = 0; i < VL; ++i) lab[k][i] = k;
  for (int w = VL, n = VL; w >= 2; w /= 2, n /= 2)
    for (int m = 0; m < n / 2; ++m) {
      int nl[VL] = {};
      for (int i = 0; i < VL; ++i) {
        const int sg = i / (w / 2), o = i % (w / 2), src = (sg % 2) * VL + (sg / 2) * w + o;
        nl[i] = src < VL ? lab[2 * m][src] : lab[2 * m + 1][src - VL];
      }
      for (int i = 0; i < VL; ++i) lab[m][i] = nl[i];
    }
  LaneSrc r{};
  for (int i = 0; i < VL; ++i) r.a[i] = lab[0][i];
  return r;
}

// direct conv for few output channels (the RGB tails), vectorised over input channels: P pixels
// x NC outputs accumulators, each VL partial sums over the channels c = lane (mod VL), summed
// across lanes once at the end (fold). Reads the NHWC input in place: direct_px_impl's patch
// transposed to channel-major rows with scalar stores, which cost 3-5x its multiplies (64 -> 3
// at 3840x2160: 14% of MSRResNet's bf16 time at 540p). Needs cin % VL == 0. Weights: the
// pixel-vectorised layout (K, cin, K, NC), rearranged per call to (K*K, NC, cin).
template <int NC, int P>
void direct_ci_impl(const ConvShape& s, int k, const float* wt, const Epilogue& e, int threads) {
  const int H = s.h, W = s.w, cin = s.cin, pad = k / 2;
  constexpr int WB = 8 * P;  // pixels per work item
  const int wblocks = (W + WB - 1) / WB;
  const int64_t work = (int64_t)s.n * H * wblocks;
  const Epi epi(e, H, W);
  const int cout = e.cout;
  float* wc = (float*)std::malloc(sizeof(float) * k * k * NC * cin);
  if (!wc) throw std::bad_alloc();
  for (int ky = 0; ky < k; ++ky)
    for (int c = 0; c < cin; ++c)
      for (int kx = 0; kx < k; ++kx)
        for (int o = 0; o < NC; ++o) wc[(((size_t)ky * k + kx) * NC + o) * cin + c] = wt[(((size_t)ky * cin + c) * k + kx) * NC + o];
  constexpr LaneSrc LS = lane_src();
  constexpr int NA = P * NC, NG = (NA + VL - 1) / VL;

#pragma omp parallel for num_threads(threads) schedule(dynamic, 8)
  for (int64_t it = 0; it < work; ++it) {
    const int n = (int)(it / ((int64_t)H * wblocks));
    const int rem = (int)(it % ((int64_t)H * wblocks));
    const int h = rem / wblocks, wend = mn(W, (rem % wblocks) * WB + WB);
    const float* xb = s.x + (int64_t)n * H * W * s.x_cs;
    for (int x0 = (rem % wblocks) * WB; x0 < wend; x0 += P) {
      vf acc[NA];
#pragma GCC unroll 24
      for (int a = 0; a < NA; ++a) acc[a] = vf{};
      const bool inner = x0 - pad >= 0 && x0 + P - 1 + pad < W;
      for (int ky = 0; ky < k; ++ky) {
        const int yy = h - pad + ky;
        if (yy < 0 || yy >= H) continue;
        const float* row = xb + (int64_t)yy * W * s.x_cs;
        for (int kx = 0; kx < k; ++kx) {
          const float* wk = wc + ((size_t)ky * k + kx) * NC * cin;
          const int xs = x0 - pad + kx;  // the input column of pixel x0 for this tap
          if (inner) {
            const float* px = row + (int64_t)xs * s.x_cs;
            for (int c = 0; c < cin; c += VL) {
              vf wv[NC];
#pragma GCC unroll 12
              for (int o = 0; o < NC; ++o) wv[o] = ld(wk + o * cin + c);
#pragma GCC unroll 8
              for (int j = 0; j < P; ++j) {
                const vf xv = ld(px + (int64_t)j * s.x_cs + c);
#pragma GCC unroll 12
                for (int o = 0; o < NC; ++o) acc[j * NC + o] += xv * wv[o];
              }
            }
          } else {  // a frame edge: columns outside read as zeros
            for (int c = 0; c < cin; c += VL) {
              vf wv[NC];
              for (int o = 0; o < NC; ++o) wv[o] = ld(wk + o * cin + c);
              for (int j = 0; j < P; ++j) {
                const int xx = xs + j;
                if (xx < 0 || xx >= W) continue;
                const vf xv = ld(row + (int64_t)xx * s.x_cs + c);
                for (int o = 0; o < NC; ++o) acc[j * NC + o] += xv * wv[o];
              }
            }
          }
        }
      }
      float sum[NG * VL];
      for (int g = 0; g < NG; ++g) {
        vf t[VL];
#pragma GCC unroll 16
        for (int i = 0; i < VL; ++i) t[i] = g * VL + i < NA ? acc[g * VL + i] : vf{};
        fold_levels<VL>(t, VL);
#pragma GCC unroll 16
        for (int i = 0; i < VL; ++i) sum[g * VL + LS.a[i]] = t[0][i];
      }
      for (int j = 0; j < P && x0 + j < wend; ++j)
        for (int co = 0; co < cout; ++co) epi.store1(n, h, x0 + j, co, sum[j * NC + co]);
    }
  }
  std::free(wc);
}

constexpr int pci_for(int nc) { return ACC / nc < 1 ? 1 : ACC / nc; }

}  // namespace

void direct_px(const ConvShape& s, int k, const float* wt, int nc, const Epilogue& e, int threads) {
  // input channels in whole vectors: vectorised over them (no transposed patch); else over pixels
  const bool ci = s.cin % VL == 0 && std::getenv("SRGAN_FAST_DIRECT_PX") == nullptr;
  switch (nc) {
    case 3:
      return ci ? direct_ci_impl<3, pci_for(3)>(s, k, wt, e, threads) : direct_px_impl<3, npv_for(3)>(s, k, wt, e, threads);
    case 6:
      return ci ? direct_ci_impl<6, pci_for(6)>(s, k, wt, e, threads) : direct_px_impl<6, npv_for(6)>(s, k, wt, e, threads);
    default:
      return ci ? direct_ci_impl<12, pci_for(12)>(s, k, wt, e, threads)
                : direct_px_impl<12, npv_for(12)>(s, k, wt, e, threads);
  }
}

}  // namespace SF_NS
}  // namespace cpu
}  // namespace sf
