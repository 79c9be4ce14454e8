// Filling a sunrise tensor with one value, and reading one value back. Fills
// run as work on the current sunrise stream; registration lives in csrc/aten.
#pragma once

#include <ATen/core/Tensor.h>

namespace torch_sunrise::kernels {

void fill(const at::Tensor& self, const c10::Scalar& value);
void zero(const at::Tensor& self);
// Reads one element: a synchronization point, as on a GPU.
c10::Scalar local_scalar(const at::Tensor& self);

}  // namespace torch_sunrise::kernels
