// Device kernels for the core tensor ops (copy, fill, scalar read). They run
// as work on the current sunrise stream; registration lives in csrc/aten.
#pragma once

#include <ATen/core/Tensor.h>

namespace torch_sunrise::kernels {

// dst.copy_(src) where at least one side is a sunrise tensor: host-to-device,
// device-to-host, device-to-device on one device or across devices; any
// dtypes, any strides. Returns dst.
at::Tensor copy_from(const at::Tensor& src, const at::Tensor& dst, bool non_blocking);

void fill(const at::Tensor& self, const c10::Scalar& value);
void zero(const at::Tensor& self);
// Reads one element: a synchronization point, as on a GPU.
c10::Scalar local_scalar(const at::Tensor& self);

}  // namespace torch_sunrise::kernels
