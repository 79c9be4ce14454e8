#include "FillKernel.h"
#include "CpuViews.h"

#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseHostWait.h>
#include <torch_sunrise/SunriseLaunch.h>

#include <ATen/Dispatch_v2.h>
#include <ATen/EmptyTensor.h>
#include <ATen/core/LegacyTypeDispatch.h>

namespace torch_sunrise::kernels {

void fill(const at::Tensor& self, const c10::Scalar& value) {
  // Bad values (overflow, NaN into an integer) must raise here, at the call,
  // as on CPU, not later from the device thread.
  AT_DISPATCH_V2(self.scalar_type(), "fill_", AT_WRAP([&] { (void)value.to<scalar_t>(); }), AT_EXPAND(AT_ALL_TYPES_AND_COMPLEX),
                 at::kBool, at::kHalf, at::kBFloat16, AT_EXPAND(AT_FLOAT8_TYPES), AT_EXPAND(AT_BAREBONES_UNSIGNED_TYPES),
                 at::kComplexHalf);
  if (self.numel() == 0) return;
  SunriseGuard guard(self.device());
  const SunriseStream stream = getCurrentSunriseStream(self.device().index());
  launch_task(stream, [dst = cpu_view(self), value]() mutable {
    dst.fill_(value);
  });
}

void zero(const at::Tensor& self) {
  if (self.numel() == 0) return;
  if (!self.is_non_overlapping_and_dense()) {
    kernels::fill(self, 0);
    return;
  }
  SunriseGuard guard(self.device());
  const SunriseStream stream = getCurrentSunriseStream(self.device().index());
  SUNRISE_CHECK(srMemsetAsync(self.data_ptr(), 0, static_cast<size_t>(self.numel()) * self.element_size(),
                              stream.handle()));
}

c10::Scalar local_scalar(const at::Tensor& self) {
  TORCH_CHECK(self.numel() == 1, "a Tensor with ", self.numel(), " elements cannot be converted to Scalar");
  SunriseGuard guard(self.device());
  const SunriseStream stream = getCurrentSunriseStream(self.device().index());
  before_host_wait(stream, "Tensor.item() (aten::_local_scalar_dense, which reads a device value on the host)",
                   "read values after replaying the graph, outside the captured region");
  at::Tensor host = at::detail::empty_cpu({}, self.scalar_type(), std::nullopt, std::nullopt, std::nullopt,
                                          std::nullopt);
  // A pageable destination: the runtime returns once the stream has reached
  // and run this copy, which is exactly the sync point .item() is.
  SUNRISE_CHECK(srMemcpyAsync(host.data_ptr(), self.data_ptr(), self.element_size(), srMemcpyDeviceToHost,
                              stream.handle()));
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (self.is_conj()) host = host.conj();
  if (self.is_neg()) host = host.neg();
  return host.item();
}

}  // namespace torch_sunrise::kernels
