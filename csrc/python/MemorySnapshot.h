#pragma once

#include <torch/csrc/utils/pybind.h>

namespace torch_sunrise {

// _memory_snapshot and _record_memory_history (torch.sunrise.memory).
void bind_memory_snapshot(pybind11::module_& m);

}  // namespace torch_sunrise
