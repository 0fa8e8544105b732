// Runs the CUDA kernels (lab_conv_kernels.cu built with cuda_on_cpu.h) on a few
// geometries, both dtypes and all three passes, against a direct float64 reference.
// Built by tests/ops/test_cuda_on_cpu.py, with and without ThreadSanitizer.
//
// Exit status: 0 when every result matches, 1 on a mismatch (the first is printed),
// 66 (ThreadSanitizer's) when the sanitizer saw a data race.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "lab_conv_launchers.h"

namespace {

using cnnlab::ConvGeometry;

ConvGeometry Geometry(int64_t n, int64_t h, int64_t w, int64_t c, int64_t fh, int64_t fw, int64_t k, int64_t s,
                      bool same) {
  ConvGeometry g{n, h, w, c, fh, fw, k, s, s, 0, 0, 0, 0};
  cnnlab::WindowedOutputSize(h, fh, s, same, &g.out_h, &g.pad_top);
  cnnlab::WindowedOutputSize(w, fw, s, same, &g.out_w, &g.pad_left);
  return g;
}

// y, dx and dw by direct summation over (image, output pixel, tap, channels).
void Reference(const ConvGeometry& g, const std::vector<double>& x, const std::vector<double>& w,
               const std::vector<double>& dy, std::vector<double>& y, std::vector<double>& dx,
               std::vector<double>& dw) {
  y.assign(g.batch * g.out_h * g.out_w * g.out_c, 0.0);
  dx.assign(x.size(), 0.0);
  dw.assign(w.size(), 0.0);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t fy = 0; fy < g.filter_h; ++fy)
          for (int64_t fx = 0; fx < g.filter_w; ++fx) {
            const int64_t ih = oh * g.stride_h - g.pad_top + fy, iw = ow * g.stride_w - g.pad_left + fx;
            if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;
            for (int64_t ci = 0; ci < g.in_c; ++ci)
              for (int64_t co = 0; co < g.out_c; ++co) {
                const int64_t xi = ((n * g.in_h + ih) * g.in_w + iw) * g.in_c + ci;
                const int64_t wi = ((fy * g.filter_w + fx) * g.in_c + ci) * g.out_c + co;
                const int64_t yi = ((n * g.out_h + oh) * g.out_w + ow) * g.out_c + co;
                y[yi] += x[xi] * w[wi];
                dx[xi] += dy[yi] * w[wi];
                dw[wi] += x[xi] * dy[yi];
              }
          }
}

template <typename T>
bool Check(const char* pass, const ConvGeometry& g, int code, const std::vector<T>& got,
           const std::vector<double>& want, double tolerance) {
  if (code != 0) {
    std::printf("%s: launch failed: %s\n", pass, cnnlab_cuda_error_string(code));
    return false;
  }
  double scale = 1.0;
  for (double v : want) scale = std::fmax(scale, std::fabs(v));
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= tolerance * scale)) {
      std::printf("%s (batch %ld, %ldx%ld x %ld -> %ld): element %zu is %.9g, expected %.9g\n", pass,
                  static_cast<long>(g.batch), static_cast<long>(g.in_h), static_cast<long>(g.in_w),
                  static_cast<long>(g.in_c), static_cast<long>(g.out_c), i, static_cast<double>(got[i]),
                  want[i]);
      return false;
    }
  }
  return true;
}

template <typename T>
bool RunAll(const ConvGeometry& g, const std::vector<double>& x64, const std::vector<double>& w64,
            const std::vector<double>& dy64, double tolerance);

template <>
bool RunAll<float>(const ConvGeometry& g, const std::vector<double>& x64, const std::vector<double>& w64,
                   const std::vector<double>& dy64, double tolerance) {
  std::vector<double> y, dx, dw;
  Reference(g, x64, w64, dy64, y, dx, dw);
  std::vector<float> x(x64.begin(), x64.end()), w(w64.begin(), w64.end()), dy(dy64.begin(), dy64.end());
  std::vector<float> y_out(y.size()), dx_out(dx.size()), dw_out(dw.size());
  return Check("forward f32", g, cnnlab_conv2d_forward_f32(&g, x.data(), w.data(), y_out.data(), nullptr), y_out,
               y, tolerance) &&
         Check("input gradient f32", g,
               cnnlab_conv2d_backprop_input_f32(&g, w.data(), dy.data(), dx_out.data(), nullptr), dx_out, dx,
               tolerance) &&
         Check("filter gradient f32", g,
               cnnlab_conv2d_backprop_filter_f32(&g, x.data(), dy.data(), dw_out.data(), nullptr), dw_out, dw,
               tolerance);
}

template <>
bool RunAll<double>(const ConvGeometry& g, const std::vector<double>& x, const std::vector<double>& w,
                    const std::vector<double>& dy, double tolerance) {
  std::vector<double> y, dx, dw;
  Reference(g, x, w, dy, y, dx, dw);
  std::vector<double> y_out(y.size()), dx_out(dx.size()), dw_out(dw.size());
  return Check("forward f64", g, cnnlab_conv2d_forward_f64(&g, x.data(), w.data(), y_out.data(), nullptr), y_out,
               y, tolerance) &&
         Check("input gradient f64", g,
               cnnlab_conv2d_backprop_input_f64(&g, w.data(), dy.data(), dx_out.data(), nullptr), dx_out, dx,
               tolerance) &&
         Check("filter gradient f64", g,
               cnnlab_conv2d_backprop_filter_f64(&g, x.data(), dy.data(), dw_out.data(), nullptr), dw_out, dw,
               tolerance);
}

}  // namespace

int main() {
  // Small enough for ThreadSanitizer; each filter gradient is split along K (K > 128).
  const ConvGeometry cases[] = {
      Geometry(8, 12, 12, 2, 3, 3, 4, 1, false),  // K = 800: the filter gradient runs as 7 K-split blocks
      Geometry(3, 9, 11, 5, 3, 2, 6, 2, true),    // stride 2, SAME, odd sizes
      Geometry(2, 17, 13, 70, 3, 3, 65, 2, true), // tile edges in M, N and K
  };
  std::mt19937_64 rng(0);
  std::normal_distribution<double> normal;
  for (const ConvGeometry& g : cases) {
    std::vector<double> x(g.batch * g.in_h * g.in_w * g.in_c), w(g.filter_h * g.filter_w * g.in_c * g.out_c),
        dy(g.batch * g.out_h * g.out_w * g.out_c);
    for (auto* v : {&x, &w, &dy})
      for (double& e : *v) e = normal(rng);
    if (!RunAll<double>(g, x, w, dy, 1e-10) || !RunAll<float>(g, x, w, dy, 1e-4)) return 1;
  }
  std::printf("all passes match the float64 reference\n");
  return 0;
}
