// The device's copy: every direction a sunrise tensor takes part in. Runs as
// work on the current sunrise stream; registration lives in csrc/aten.
#pragma once

#include <ATen/core/Tensor.h>

namespace torch_sunrise::kernels {

// dst.copy_(src) where at least one side is a sunrise tensor: host-to-device,
// device-to-host, device-to-device on one device or across devices; any
// dtypes, any strides. Returns dst.
at::Tensor copy_from(const at::Tensor& src, const at::Tensor& dst, bool non_blocking);

}  // namespace torch_sunrise::kernels
