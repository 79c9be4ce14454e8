// GradScaler's kernels as device work. Both are in-place on device tensors
// whose shapes are already known, so they are queued on the stream (ATen's CPU
// kernels over views of device memory) instead of synchronizing through the
// fallback: a training step with a GradScaler stays asynchronous until the
// optimizer reads found_inf.
#include "kernels/CpuViews.h"

#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseLaunch.h>

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>
#include <ATen/ops/_amp_update_scale.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

void check_on(const at::Tensor& t, c10::Device device, const char* what) {
  TORCH_CHECK(t.device() == device, what, " must be on ", device, ", got ", t.device());
}

void amp_foreach_non_finite_check_and_unscale_(at::TensorList self, at::Tensor& found_inf,
                                               const at::Tensor& inv_scale) {
  const c10::Device device = found_inf.device();
  check_on(inv_scale, device, "inv_scale");
  TORCH_CHECK(inv_scale.numel() == 1 && found_inf.numel() == 1, "found_inf and inv_scale must be 1-element tensors");
  if (self.empty()) return;
  std::vector<at::Tensor> grads;
  grads.reserve(self.size());
  for (const at::Tensor& g : self) {
    check_on(g, device, "every gradient");
    grads.push_back(kernels::cpu_view(g));
  }
  const SunriseGuard guard(device);
  launch_task(getCurrentSunriseStream(device.index()),
              [grads = std::move(grads), inf = kernels::cpu_view(found_inf), scale = kernels::cpu_view(inv_scale)]() mutable {
                at::_amp_foreach_non_finite_check_and_unscale_(grads, inf, scale);
              });
}

at::Tensor& amp_update_scale_(at::Tensor& self, at::Tensor& growth_tracker, const at::Tensor& found_inf,
                              double growth_factor, double backoff_factor, int64_t growth_interval) {
  const c10::Device device = self.device();
  check_on(growth_tracker, device, "growth_tracker");
  check_on(found_inf, device, "found_inf");
  const SunriseGuard guard(device);
  launch_task(getCurrentSunriseStream(device.index()),
              [scale = kernels::cpu_view(self), tracker = kernels::cpu_view(growth_tracker),
               inf = kernels::cpu_view(found_inf), growth_factor, backoff_factor, growth_interval]() mutable {
                at::_amp_update_scale_(scale, tracker, inf, growth_factor, backoff_factor, growth_interval);
              });
  return self;
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_amp_foreach_non_finite_check_and_unscale_", amp_foreach_non_finite_check_and_unscale_);
  m.impl("_amp_update_scale_", amp_update_scale_);
}

}  // namespace torch_sunrise::aten
