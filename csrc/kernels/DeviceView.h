// CPU tensors over the bytes of sunrise tensors.
//
// The emulated device executes on CPU threads, so its kernels can use ATen's
// CPU kernels as their math library: a device kernel wraps its operands as
// CPU tensors (same sizes, strides, offset, dtype, conj/neg bits, no copy) and
// calls the CPU kernel. Such a view must only be touched by device work on a
// stream, or by the host after synchronizing that stream.
#pragma once

#include <ATen/core/IListRef.h>
#include <ATen/core/Tensor.h>
#include <c10/util/SmallVector.h>

#include <optional>

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
  // The CPU storage over `nbytes` at `data`, the bytes `device_storage` held
  // when they were captured (see DeferredTensor).
  const c10::Storage& cpu_storage(const c10::Storage& device_storage, void* data, size_t nbytes);
  // Raises if a CPU kernel reallocated one of the CPU storages (it grew an
  // output beyond the device bytes, so the result would not reach them).
  void check_unmoved() const;
  // The device storage behind a CPU storage made by this set, or nullptr.
  c10::StorageImpl* device_storage_of(const c10::StorageImpl* cpu_storage) const;
  // The CPU storage made for a device storage, or nullptr.
  c10::StorageImpl* cpu_storage_of(const c10::StorageImpl* device_storage) const;

 private:
  // (device storage, its CPU storage); a handful of entries per op, inline.
  c10::SmallVector<std::pair<c10::Storage, c10::Storage>, 4> storages_;
};

// A tensor argument of queued device work: its storage, the bytes that storage
// held at launch, and its metadata. The device thread rebuilds the tensor as a
// CPU view from it.
//
// Why not keep the at::Tensor: copying a tensor that Python owns increments
// its PyObject as well (PyObject preservation, c10/util/intrusive_ptr.h),
// which takes the GIL on both ends, while a storage reference and a few
// integers do not. And why the bytes of launch time: a resize on the host
// later moves the storage to a new block, which work queued before must not
// see (the old block stays reserved for the stream, see resize_storage_bytes).
class DeferredTensor {
 public:
  DeferredTensor() = default;  // an undefined tensor
  // Device tensors and CPU scalars (kept with their wrapped-number flag, which
  // type promotion reads).
  explicit DeferredTensor(const at::Tensor& t);
  // `t` with another geometry: an output as allocated, before meta() reshaped it.
  DeferredTensor(const at::Tensor& t, c10::IntArrayRef sizes, c10::IntArrayRef strides);

  bool defined() const { return defined_; }
  // On the device thread.
  at::Tensor view(CpuViewSet& views) const;

 private:
  c10::Storage storage_;
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  c10::SmallVector<int64_t, 5> sizes_;
  c10::SmallVector<int64_t, 5> strides_;
  int64_t offset_ = 0;
  caffe2::TypeMeta dtype_;
  bool defined_ = false;
  bool on_device_ = false;
  bool conj_ = false;
  bool neg_ = false;
  bool wrapped_number_ = false;
};

// Views of deferred optional tensors and lists, for the generated kernels.
std::optional<at::Tensor> view(const std::optional<DeferredTensor>& t, CpuViewSet& views);
std::vector<at::Tensor> view(const std::vector<DeferredTensor>& list, CpuViewSet& views);
std::optional<DeferredTensor> defer(const std::optional<at::Tensor>& t);
std::vector<DeferredTensor> defer(const c10::IListRef<at::Tensor>& list);

}  // namespace torch_sunrise::kernels
