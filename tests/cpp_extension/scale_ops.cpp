// A user's C++ extension, built by tests/test_cpp_extension.py against the
// headers torch_sunrise installs: a custom op whose kernel runs over blocks on
// the current sunrise stream, as a CUDA extension's kernel would.
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseLaunch.h>
#include <torch_sunrise/SunriseStream.h>

#include <ATen/ops/empty_like.h>
#include <torch/library.h>

namespace {

constexpr int64_t kBlockElements = 4096;

struct ScaleKernel {
  const float* in;
  float* out;
  int64_t n;
  float factor;

  void operator()(uint64_t block) const {
    const int64_t begin = static_cast<int64_t>(block) * kBlockElements;
    const int64_t end = std::min(n, begin + kBlockElements);
    for (int64_t i = begin; i < end; ++i) out[i] = in[i] * factor;
  }
};

at::Tensor scale(const at::Tensor& self, double factor) {
  TORCH_CHECK(self.scalar_type() == at::kFloat && self.is_contiguous(),
              "scale: expected a contiguous float32 tensor, got ", self.scalar_type());
  const torch_sunrise::SunriseGuard guard(self.device());
  at::Tensor out = at::empty_like(self);
  const int64_t n = self.numel();
  // Device work reaches device memory through the runtime's kernel address.
  const ScaleKernel kernel{static_cast<const float*>(srKernelAddress(self.const_data_ptr())),
                           static_cast<float*>(srKernelAddress(out.mutable_data_ptr())), n,
                           static_cast<float>(factor)};
  torch_sunrise::launch_blocks(torch_sunrise::getCurrentSunriseStream(), (n + kBlockElements - 1) / kBlockElements,
                               kernel);
  return out;
}

// The stream the extension sees as current, to compare with Python's.
int64_t current_stream_id(const at::Tensor& like) {
  const torch_sunrise::SunriseGuard guard(like.device());
  return torch_sunrise::getCurrentSunriseStream().id();
}

}  // namespace

TORCH_LIBRARY(sunrise_scale_ops, m) {
  m.def("scale(Tensor self, float factor) -> Tensor");
  m.def("current_stream_id(Tensor like) -> int");
}

TORCH_LIBRARY_IMPL(sunrise_scale_ops, PrivateUse1, m) {
  m.impl("scale", scale);
  m.impl("current_stream_id", current_stream_id);
}
