// The device an op runs on, and the mixed-device error CPU and CUDA raise.
#pragma once

#include <ATen/core/IListRef.h>
#include <ATen/core/Tensor.h>

#include <initializer_list>
#include <optional>

namespace torch_sunrise::aten {

// All device operands on one sunrise device; CPU tensors only as 0-dim
// scalar inputs (as CUDA accepts them), never as `outputs` (out= tensors,
// which the op writes on the device).
c10::Device common_device(std::initializer_list<const at::Tensor*> tensors,
                          std::initializer_list<const std::optional<at::Tensor>*> optionals,
                          std::initializer_list<const c10::IListRef<at::Tensor>*> lists, const char* op_name,
                          std::initializer_list<const at::Tensor*> outputs = {});

}  // namespace torch_sunrise::aten
