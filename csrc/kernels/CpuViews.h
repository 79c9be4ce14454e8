// CPU tensors over the bytes of sunrise tensors.
//
// The emulated device executes on CPU threads, so its kernels can use ATen's
// CPU kernels as their math library: a device kernel wraps its operands as
// CPU tensors (same sizes, strides, offset, dtype, conj/neg bits, no copy) and
// calls the CPU kernel. Such a view must only be touched by device work on a
// stream, or by the host after synchronizing that stream.
#pragma once

#include <sunrise_rt.h>

#include <ATen/core/IListRef.h>
#include <ATen/core/Tensor.h>
#include <c10/util/SmallVector.h>

#include <array>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace torch_sunrise::kernels {

// CPU views reach device bytes through srKernelAddress, as device work must
// (under SUNRISE_MEMCHECK=1 the device pointers themselves have no access).
//
// A CPU view of a sunrise tensor; keeps the device storage alive.
at::Tensor cpu_view(const at::Tensor& device_tensor);

// Makes CPU views that share one CPU storage per device storage, so that
// tensors aliasing each other on the device alias each other on the CPU too
// (in-place ops and overlap checks depend on it). Storages are resizable, so
// a CPU kernel may grow an out= argument; compare storages afterwards.
class CpuViewSet {
 public:
  at::Tensor view(const at::Tensor& device_tensor);
  // A CPU storage over `nbytes` of device memory at `data`, one per block of
  // bytes (see DeferredTensor). It does not own the bytes.
  const c10::Storage& cpu_storage(void* data, size_t nbytes);
  // Raises if a CPU kernel reallocated one of those CPU storages (it grew an
  // output beyond the device bytes, so the result would not reach them).
  void check_unmoved() const;
  // The device storage behind a CPU storage made by this set, or nullptr.
  c10::StorageImpl* device_storage_of(const c10::StorageImpl* cpu_storage) const;
  // The CPU storage made for a device storage, or nullptr.
  c10::StorageImpl* cpu_storage_of(const c10::StorageImpl* device_storage) const;

 private:
  // (device storage, its CPU storage); a handful of entries per op, inline.
  c10::SmallVector<std::pair<c10::Storage, c10::Storage>, 4> storages_;
  // (device bytes, CPU storage over them), for deferred tensors.
  c10::SmallVector<std::pair<void*, c10::Storage>, 4> blocks_;
};

// A tensor argument of queued device work: the device bytes its storage held
// at launch, and its metadata. The device thread rebuilds the tensor as a CPU
// view from it.
//
// It keeps neither the tensor nor its storage alive. As on CUDA, memory the
// host frees goes back to its stream's pool at once and is reused by later
// work on that stream, which runs after this work (recordUseOnStream covers
// work on another stream). A task holding its operands instead would keep
// every queued op's memory reserved: a host running ahead by a few hundred
// ops would cycle through that many fresh buffers, out of the caches, where
// CPU eager reuses one warm buffer. The bytes are those of launch time, as a
// later resize moves the storage to a new block that work queued before must
// not see. And copying a tensor that Python owns would touch its PyObject as
// well (PyObject preservation, c10/util/intrusive_ptr.h), which needs the GIL.
class DeferredTensor {
 public:
  DeferredTensor() = default;  // an undefined tensor
  // Device tensors used by work on `stream`, and CPU scalars (kept alive,
  // with their wrapped-number flag, which type promotion reads).
  DeferredTensor(const at::Tensor& t, srStream_t stream);
  // `t` with another geometry: an output as allocated, before meta() reshaped it.
  DeferredTensor(const at::Tensor& t, c10::IntArrayRef sizes, c10::IntArrayRef strides, srStream_t stream);

  bool defined() const { return defined_; }
  // On the device thread.
  at::Tensor view(CpuViewSet& views) const;

 private:
  c10::IntArrayRef sizes() const { return {geometry(), static_cast<size_t>(dim_)}; }
  c10::IntArrayRef strides() const { return {geometry() + dim_, static_cast<size_t>(dim_)}; }
  const int64_t* geometry() const { return heap_geometry_ ? heap_geometry_.get() : inline_geometry_.data(); }

  c10::Storage cpu_storage_;  // CPU scalars only
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  // Sizes then strides. A fixed array rather than small vectors: every launch
  // makes and moves a few of these, and copying a SmallVector goes through
  // its out-of-line assignment.
  static constexpr size_t kInlineDims = 5;
  std::array<int64_t, 2 * kInlineDims> inline_geometry_{};
  std::unique_ptr<int64_t[]> heap_geometry_;  // more than kInlineDims dimensions
  int64_t dim_ = 0;
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
std::optional<DeferredTensor> defer(const std::optional<at::Tensor>& t, srStream_t stream);
std::vector<DeferredTensor> defer(const c10::IListRef<at::Tensor>& list, srStream_t stream);

}  // namespace torch_sunrise::kernels
