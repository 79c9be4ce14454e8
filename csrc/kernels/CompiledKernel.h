// Launching a kernel that Inductor compiled for sunrise (torch.compile).
//
// Inductor's C++ codegen emits `extern "C" void kernel(const float* in_ptr0,
// float* out_ptr0, int64_t ks0)`; torch_sunrise appends an entry point with one
// fixed signature that takes the arguments as 64-bit slots and casts each to
// its parameter type, so one launcher serves every generated kernel. The
// launcher runs it as a task on the current stream, in order with eager work,
// and returns at once.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace torch_sunrise::kernels {

// The generated entry point: `args[i]` holds parameter i (a pointer, an
// integer, or a double's bits).
using CompiledKernelEntry = void (*)(const uint64_t* args);

// One argument of a compiled kernel: a tensor, whose data pointer the kernel
// receives (device memory reached through srKernelAddress on the device), or
// the bits of a scalar.
struct CompiledKernelArg {
  at::Tensor tensor;  // undefined for a scalar
  uint64_t bits = 0;
};

void launch_compiled_kernel(CompiledKernelEntry entry, const std::vector<CompiledKernelArg>& args);

}  // namespace torch_sunrise::kernels
