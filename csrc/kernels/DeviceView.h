// CPU tensors over the bytes of sunrise tensors.
//
// The emulated device executes on CPU threads, so its kernels can use ATen's
// CPU kernels as their math library: a device kernel wraps its operands as
// CPU tensors (same sizes, strides, offset, dtype, conj/neg bits, no copy) and
// calls the CPU kernel. Such a view must only be touched by device work on a
// stream, or by the host after synchronizing that stream.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/SmallVector.h>

#include <utility>
#include <vector>

namespace torch_sunrise::kernels {

// A CPU view of a sunrise tensor; keeps the device storage alive.
at::Tensor cpu_view(const at::Tensor& device_tensor);

// Makes CPU views that share one CPU storage per device storage, so that
// tensors aliasing each other on the device alias each other on the CPU too
// (in-place ops and overlap checks depend on it). Storages are resizable, so
// a CPU kernel may grow an out= argument; compare storages afterwards.
class CpuViewSet {
 public:
  at::Tensor view(const at::Tensor& device_tensor);
  // Points an existing view (same TensorImpl, which iterators may hold on to)
  // at the current bytes and metadata of `device_tensor`, after a resize.
  void refresh(const at::Tensor& view, const at::Tensor& device_tensor);
  // The device storage behind a CPU storage made by this set, or nullptr.
  c10::StorageImpl* device_storage_of(const c10::StorageImpl* cpu_storage) const;
  // The CPU storage made for a device storage, or nullptr.
  c10::StorageImpl* cpu_storage_of(const c10::StorageImpl* device_storage) const;

 private:
  // (device storage, its CPU storage); a handful of entries per op, inline.
  c10::SmallVector<std::pair<c10::Storage, c10::Storage>, 4> storages_;
};

}  // namespace torch_sunrise::kernels
