// srgan_fast._C: frame I/O over raw pointers (no torch C++ ABI), every argument checked.
// Pointers are integers (tensor.data_ptr(), ndarray.ctypes.data, cupy .data.ptr); pitches
// are in bytes for uint8 planes/packed rows and in elements for float RGB rows; `cuda`
// selects the CUDA kernels (device pointers, `stream` a cudaStream_t as an integer, 0 for
// the default stream) or the CPU twins.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "cpu_conv.h"
#include "frame_io_ops.h"

namespace py = pybind11;
using sf::OutPlane;
using sf::Plane;

namespace {

void need(bool ok, const std::string& msg) {
  if (!ok) throw py::value_error(msg);
}

int parse_dtype(const std::string& s) {
  if (s == "f32" || s == "float32") return sf::F32;
  if (s == "f16" || s == "float16") return sf::F16;
  if (s == "u8" || s == "uint8") return sf::U8;
  throw py::value_error("dtype must be f32, f16 or u8, got '" + s + "'");
}


sf::Coeffs coeffs(int matrix, bool full_range) {
  need(matrix == 601 || matrix == 709, "matrix must be 601 or 709, got " + std::to_string(matrix));
  return sf::make_coeffs(matrix, full_range);
}

void check_size(int h, int w) {
  need(h > 0 && w > 0, "height and width must be positive, got " + std::to_string(h) + "x" + std::to_string(w));
}

void check_ptr(uintptr_t p, const char* name) { need(p != 0, std::string(name) + " is a null pointer"); }

void check_pitch(int64_t pitch, int64_t min, const char* name) {
  need(pitch >= min, std::string(name) + " pitch " + std::to_string(pitch) + " is smaller than a row (" +
                         std::to_string(min) + ")");
}

void check_device(bool cuda) {
#ifndef SRGAN_FAST_WITH_CUDA
  need(!cuda, "srgan_fast._C was built without CUDA (no nvcc at build time); rebuild with SRGAN_FAST_CUDA=1");
#else
  (void)cuda;
#endif
}

void check_cuda(int code) {
#ifdef SRGAN_FAST_WITH_CUDA
  if (code != 0) throw std::runtime_error(std::string("CUDA error: ") + sf::cuda_error_string(code));
#else
  (void)code;
#endif
}

// the CPU convolutions' shared arguments, checked (cpu_conv.h says what each is)
void conv_args(sf::cpu::ConvShape& s, sf::cpu::Epilogue& e, uintptr_t x, int64_t x_cs, int n, int h, int w, int cin,
               uintptr_t weights, int npad, uintptr_t bias, uintptr_t prelu, uintptr_t skip, int64_t skip_cs,
               uintptr_t y, int64_t y_cs, int64_t y_off, int r, int cout, int threads) {
  need(n > 0 && h > 0 && w > 0, "conv: n, height and width must be positive");
  need(cin > 0 && cout > 0, "conv: cin and cout must be positive");
  // bounds that keep every offset the kernels compute inside int64 (and r*r inside int)
  const int64_t kMax = 1 << 20;
  need(n <= kMax && h <= kMax && w <= kMax && cin <= 65536 && cout <= 65536 && npad <= 65536,
       "conv: a size is over its limit (n, h, w <= 2^20; cin, cout, npad <= 65536)");
  need(r >= 1 && r <= 8, "conv: r must be 1..8");
  need(x_cs <= kMax && y_cs <= kMax && skip_cs <= kMax && y_off <= kMax, "conv: a pixel stride is over 2^20");
  need((int64_t)n * h * w <= ((int64_t)1 << 40), "conv: n*h*w is over 2^40 pixels");  // x stride <= 2^60
  check_ptr(x, "x");
  check_ptr(weights, "weights");
  check_ptr(bias, "bias");
  check_ptr(y, "y");
  need(r >= 1 && cout % (r * r) == 0, "conv: cout must be a multiple of r*r");
  need(npad % 16 == 0 && npad >= cout, "conv: npad must be a multiple of 16, at least cout");
  const int C = cout / (r * r);
  need(x_cs >= cin, "conv: x pixel stride under cin");
  need(y_off >= 0 && y_cs >= y_off + C, "conv: y pixel stride under y_off + channels");
  need(!skip || skip_cs >= C, "conv: skip pixel stride under the output channels");
  need(threads >= 1, "conv: threads must be at least 1");
  s.x = (const float*)x;
  s.x_cs = x_cs;
  s.n = n;
  s.h = h;
  s.w = w;
  s.cin = cin;
  e.bias = (const float*)bias;
  e.prelu = (const float*)prelu;
  e.skip = (const float*)skip;
  e.skip_cs = skip_cs;
  e.y = (float*)y;
  e.y_cs = y_cs;
  e.y_off = y_off;
  e.r = r;
  e.cout = cout;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() =
      "srgan_fast native kernels: frame I/O (NV12/I420 <-> RGB, packed RGB/BGR <-> NHWC) and the CPU convolutions";

  m.def("has_cuda", []() {
#ifdef SRGAN_FAST_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "whether the CUDA kernels were compiled in");

  m.def("yuv420_to_rgb",
        [](const std::string& fmt, uintptr_t y, int64_t y_pitch, uintptr_t u, int64_t u_pitch, uintptr_t v,
           int64_t v_pitch, uintptr_t out, const std::string& out_dtype, int h, int w, int matrix, bool full_range,
           bool bgr, bool cuda, uintptr_t stream) {
          check_size(h, w);
          check_device(cuda);
          check_ptr(y, "y");
          check_ptr(u, fmt == "nv12" ? "uv" : "u");
          check_ptr(out, "out");
          check_pitch(y_pitch, w, "y");
          int dt = parse_dtype(out_dtype);
          sf::Coeffs c = coeffs(matrix, full_range);
          Plane py{(const uint8_t*)y, y_pitch};
          if (fmt == "nv12") {
            check_pitch(u_pitch, ((w + 1) / 2) * 2, "uv");
            Plane puv{(const uint8_t*)u, u_pitch};
            if (!cuda) {
              py::gil_scoped_release nogil;
              sf::nv12_to_rgb_cpu(py, puv, (void*)out, dt, h, w, c, bgr);
              return;
            }
#ifdef SRGAN_FAST_WITH_CUDA
            check_cuda(sf::nv12_to_rgb_cuda(py, puv, (void*)out, dt, h, w, c, bgr, stream));
#endif
          } else if (fmt == "i420") {
            check_ptr(v, "v");
            check_pitch(u_pitch, (w + 1) / 2, "u");
            check_pitch(v_pitch, (w + 1) / 2, "v");
            Plane pu{(const uint8_t*)u, u_pitch}, pv{(const uint8_t*)v, v_pitch};
            if (!cuda) {
              py::gil_scoped_release nogil;
              sf::i420_to_rgb_cpu(py, pu, pv, (void*)out, dt, h, w, c, bgr);
              return;
            }
#ifdef SRGAN_FAST_WITH_CUDA
            check_cuda(sf::i420_to_rgb_cuda(py, pu, pv, (void*)out, dt, h, w, c, bgr, stream));
#endif
          } else {
            throw py::value_error("format must be nv12 or i420, got '" + fmt + "'");
          }
          (void)stream;
        },
        py::arg("fmt"), py::arg("y"), py::arg("y_pitch"), py::arg("u"), py::arg("u_pitch"), py::arg("v"),
        py::arg("v_pitch"), py::arg("out"), py::arg("out_dtype"), py::arg("height"), py::arg("width"),
        py::arg("matrix"), py::arg("full_range"), py::arg("bgr") = false, py::arg("cuda") = false,
        py::arg("stream") = 0,
        "4:2:0 planes -> contiguous HxWx3 RGB (out_dtype f32/f16 in [0, 1], or u8)");

  m.def("rgb_to_yuv420",
        [](const std::string& fmt, uintptr_t in, const std::string& in_dtype, int64_t in_pitch, uintptr_t y,
           int64_t y_pitch, uintptr_t u, int64_t u_pitch, uintptr_t v, int64_t v_pitch, int h, int w, int matrix,
           bool full_range, bool bgr, bool cuda, uintptr_t stream) {
          check_size(h, w);
          check_device(cuda);
          check_ptr(in, "in");
          check_ptr(y, "y");
          check_ptr(u, fmt == "nv12" ? "uv" : "u");
          int dt = parse_dtype(in_dtype);
          check_pitch(in_pitch, (int64_t)w * 3, "in (elements)");
          check_pitch(y_pitch, w, "y");
          sf::Coeffs c = coeffs(matrix, full_range);
          OutPlane py{(uint8_t*)y, y_pitch};
          if (fmt == "nv12") {
            check_pitch(u_pitch, ((w + 1) / 2) * 2, "uv");
            OutPlane puv{(uint8_t*)u, u_pitch};
            if (!cuda) {
              py::gil_scoped_release nogil;
              sf::rgb_to_nv12_cpu((const void*)in, dt, in_pitch, py, puv, h, w, c, bgr);
              return;
            }
#ifdef SRGAN_FAST_WITH_CUDA
            check_cuda(sf::rgb_to_nv12_cuda((const void*)in, dt, in_pitch, py, puv, h, w, c, bgr, stream));
#endif
          } else if (fmt == "i420") {
            check_ptr(v, "v");
            check_pitch(u_pitch, (w + 1) / 2, "u");
            check_pitch(v_pitch, (w + 1) / 2, "v");
            OutPlane pu{(uint8_t*)u, u_pitch}, pv{(uint8_t*)v, v_pitch};
            if (!cuda) {
              py::gil_scoped_release nogil;
              sf::rgb_to_i420_cpu((const void*)in, dt, in_pitch, py, pu, pv, h, w, c, bgr);
              return;
            }
#ifdef SRGAN_FAST_WITH_CUDA
            check_cuda(sf::rgb_to_i420_cuda((const void*)in, dt, in_pitch, py, pu, pv, h, w, c, bgr, stream));
#endif
          } else {
            throw py::value_error("format must be nv12 or i420, got '" + fmt + "'");
          }
          (void)stream;
        },
        py::arg("fmt"), py::arg("inp"), py::arg("in_dtype"), py::arg("in_pitch"), py::arg("y"), py::arg("y_pitch"),
        py::arg("u"), py::arg("u_pitch"), py::arg("v"), py::arg("v_pitch"), py::arg("height"), py::arg("width"),
        py::arg("matrix"), py::arg("full_range"), py::arg("bgr") = false, py::arg("cuda") = false,
        py::arg("stream") = 0, "RGB rows (in_pitch elements apart) -> 4:2:0 uint8 planes, rounded and clamped");

  m.def("packed_to_nhwc",
        [](uintptr_t in, int64_t in_pitch, bool bgr, uintptr_t out, const std::string& out_dtype, int h, int w,
           bool cuda, uintptr_t stream) {
          check_size(h, w);
          check_device(cuda);
          check_ptr(in, "in");
          check_ptr(out, "out");
          check_pitch(in_pitch, (int64_t)w * 3, "in");
          int dt = parse_dtype(out_dtype);
          if (!cuda) {
            py::gil_scoped_release nogil;
            sf::packed_to_nhwc_cpu(Plane{(const uint8_t*)in, in_pitch}, bgr, (void*)out, dt, h, w);
            return;
          }
#ifdef SRGAN_FAST_WITH_CUDA
          check_cuda(sf::packed_to_nhwc_cuda(Plane{(const uint8_t*)in, in_pitch}, bgr, (void*)out, dt, h, w, stream));
#endif
          (void)stream;
        },
        py::arg("inp"), py::arg("in_pitch"), py::arg("bgr"), py::arg("out"), py::arg("out_dtype"), py::arg("height"),
        py::arg("width"), py::arg("cuda") = false, py::arg("stream") = 0,
        "packed uint8 RGB/BGR rows -> contiguous HxWx3 RGB (f32/f16 in [0, 1], or u8)");

  m.def("nhwc_to_packed",
        [](uintptr_t in, const std::string& in_dtype, uintptr_t out, int64_t out_pitch, bool bgr, int h, int w,
           bool cuda, uintptr_t stream) {
          check_size(h, w);
          check_device(cuda);
          check_ptr(in, "in");
          check_ptr(out, "out");
          check_pitch(out_pitch, (int64_t)w * 3, "out");
          int dt = parse_dtype(in_dtype);
          if (!cuda) {
            py::gil_scoped_release nogil;
            sf::nhwc_to_packed_cpu((const void*)in, dt, OutPlane{(uint8_t*)out, out_pitch}, bgr, h, w);
            return;
          }
#ifdef SRGAN_FAST_WITH_CUDA
          check_cuda(sf::nhwc_to_packed_cuda((const void*)in, dt, OutPlane{(uint8_t*)out, out_pitch}, bgr, h, w,
                                             stream));
#endif
          (void)stream;
        },
        py::arg("inp"), py::arg("in_dtype"), py::arg("out"), py::arg("out_pitch"), py::arg("bgr"), py::arg("height"),
        py::arg("width"), py::arg("cuda") = false, py::arg("stream") = 0,
        "contiguous HxWx3 RGB (f32/f16/u8) -> packed uint8 RGB/BGR rows, rounded and clamped");
  m.def("cpu_isa", &sf::cpu::isa, "the ISA the CPU convolution kernels run with here (avx512+bf16, avx512, avx2, generic)");
  m.def("cpu_has_bf16", &sf::cpu::has_bf16, "whether the bf16 CPU kernels can run here (avx512_bf16)");
  m.def("conv_winograd",
        [](uintptr_t x, int64_t x_cs, int n, int h, int w, int cin, int m, uintptr_t u, int npad, bool bf16, uintptr_t bias,
           uintptr_t prelu, uintptr_t skip, int64_t skip_cs, uintptr_t y, int64_t y_cs, int64_t y_off, int r, int cout,
           int threads) {
          sf::cpu::ConvShape s;
          sf::cpu::Epilogue e;
          conv_args(s, e, x, x_cs, n, h, w, cin, u, npad, bias, prelu, skip, skip_cs, y, y_cs, y_off, r, cout, threads);
          need(cin % 16 == 0 && cout % 16 == 0, "winograd: cin and cout must be multiples of 16");
          need(m == 2 || m == 4 || m == 6, "winograd: m must be 2, 4 or 6");
          need(!bf16 || sf::cpu::has_bf16(), "bf16 CPU kernels need avx512_bf16, which this CPU lacks");
          py::gil_scoped_release nogil;
          sf::cpu::winograd(s, m, (const void*)u, npad, bf16, e, threads);
        },
        py::arg("x"), py::arg("x_cs"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("cin"), py::arg("m"),
        py::arg("u"), py::arg("npad"), py::arg("bf16"), py::arg("bias"), py::arg("prelu"), py::arg("skip"), py::arg("skip_cs"),
        py::arg("y"), py::arg("y_cs"), py::arg("y_off"), py::arg("r"), py::arg("cout"), py::arg("threads"),
        "3x3 conv (stride 1, pad 1) by Winograd F(m x m, 3x3), m = 2, 4 or 6, NHWC float32, fused epilogue (cpu_conv.h)");
  m.def("conv_direct",
        [](uintptr_t x, int64_t x_cs, int n, int h, int w, int cin, int k, uintptr_t wt, int npad, bool bf16,
           uintptr_t bias, uintptr_t prelu, uintptr_t skip, int64_t skip_cs, uintptr_t y, int64_t y_cs, int64_t y_off,
           int r, int cout, int threads) {
          sf::cpu::ConvShape s;
          sf::cpu::Epilogue e;
          conv_args(s, e, x, x_cs, n, h, w, cin, wt, npad, bias, prelu, skip, skip_cs, y, y_cs, y_off, r, cout, threads);
          need(k >= 1 && k % 2 == 1 && k <= 31, "direct: k must be odd, 1..31");
          need(!bf16 || sf::cpu::has_bf16(), "bf16 CPU kernels need avx512_bf16, which this CPU lacks");
          py::gil_scoped_release nogil;
          sf::cpu::direct(s, k, (const void*)wt, npad, bf16, e, threads);
        },
        py::arg("x"), py::arg("x_cs"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("cin"), py::arg("k"),
        py::arg("wt"), py::arg("npad"), py::arg("bf16"), py::arg("bias"), py::arg("prelu"), py::arg("skip"),
        py::arg("skip_cs"), py::arg("y"), py::arg("y_cs"), py::arg("y_off"), py::arg("r"), py::arg("cout"),
        py::arg("threads"), "KxK conv (stride 1, pad K/2) as an implicit GEMM, NHWC float32, fused epilogue");
  m.def("conv_direct_px",
        [](uintptr_t x, int64_t x_cs, int n, int h, int w, int cin, int k, uintptr_t wt, int nc, uintptr_t bias,
           uintptr_t prelu, uintptr_t skip, int64_t skip_cs, uintptr_t y, int64_t y_cs, int64_t y_off, int r, int cout,
           int threads) {
          sf::cpu::ConvShape s;
          sf::cpu::Epilogue e;
          conv_args(s, e, x, x_cs, n, h, w, cin, wt, 16, bias, prelu, skip, skip_cs, y, y_cs, y_off, r, cout, threads);
          need(k >= 1 && k % 2 == 1 && k <= 31, "direct_px: k must be odd, 1..31");
          need((nc == 3 || nc == 6 || nc == 12) && cout <= nc, "direct_px: nc must be 3, 6 or 12, at least cout");
          py::gil_scoped_release nogil;
          sf::cpu::direct_px(s, k, (const float*)wt, nc, e, threads);
        },
        py::arg("x"), py::arg("x_cs"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("cin"), py::arg("k"),
        py::arg("wt"), py::arg("nc"), py::arg("bias"), py::arg("prelu"), py::arg("skip"), py::arg("skip_cs"),
        py::arg("y"), py::arg("y_cs"), py::arg("y_off"), py::arg("r"), py::arg("cout"), py::arg("threads"),
        "KxK conv for at most 12 output channels, vectorised over pixels, NHWC float32, fused epilogue");
}
