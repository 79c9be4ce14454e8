// The device an op runs on, and the mixed-device error CPU and CUDA raise.
#pragma once

#include <ATen/core/IListRef.h>
#include <ATen/core/Tensor.h>

#include <initializer_list>
#include <optional>

namespace torch_sunrise::aten {

// All device operands on one sunrise device; CPU tensors only as 0-dim
// scalars (as CUDA accepts them).
c10::Device common_device(std::initializer_list<const at::Tensor*> tensors,
                          std::initializer_list<const std::optional<at::Tensor>*> optionals,
                          std::initializer_list<const c10::IListRef<at::Tensor>*> lists, const char* op_name);

}  // namespace torch_sunrise::aten
