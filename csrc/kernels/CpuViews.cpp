#include "CpuViews.h"

#include <torch_sunrise/SunriseCachingAllocator.h>

#include <c10/core/CPUAllocator.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/intrusive_ptr.h>

#include <algorithm>

namespace torch_sunrise::kernels {
namespace {

void release_device_storage(void* ctx) {
  c10::raw::intrusive_ptr::decref(static_cast<c10::StorageImpl*>(ctx));
}

c10::Storage make_cpu_storage(const c10::Storage& device_storage) {
  c10::StorageImpl* impl = device_storage.unsafeGetStorageImpl();
  // The CPU storage holds a reference on the device storage, so the bytes
  // outlive any CPU tensor a kernel keeps around.
  c10::raw::intrusive_ptr::incref(impl);
  c10::DataPtr data(srKernelAddress(impl->mutable_data()), impl, &release_device_storage,
                    c10::Device(c10::DeviceType::CPU));
  return c10::Storage(c10::make_intrusive<c10::StorageImpl>(c10::StorageImpl::use_byte_size_t(), impl->nbytes(),
                                                            std::move(data), c10::GetCPUAllocator(),
                                                            /*resizable=*/true));
}

at::Tensor view_on(c10::Storage storage, const at::Tensor& t) {
  auto out = at::detail::make_tensor<c10::TensorImpl>(std::move(storage), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                                      t.dtype());
  out.unsafeGetTensorImpl()->set_sizes_and_strides(t.sizes(), t.strides(), t.storage_offset());
  if (t.is_conj()) out._set_conj(true);
  if (t.is_neg()) out._set_neg(true);
  return out;
}

}  // namespace

at::Tensor cpu_view(const at::Tensor& device_tensor) {
  return view_on(make_cpu_storage(device_tensor.storage()), device_tensor);
}

at::Tensor CpuViewSet::view(const at::Tensor& device_tensor) {
  const c10::Storage& storage = device_tensor.storage();
  for (auto& [dev, cpu] : storages_) {
    if (dev.unsafeGetStorageImpl() != storage.unsafeGetStorageImpl()) continue;
    // A resize may have moved the device bytes since the CPU storage was made.
    if (cpu.data() != srKernelAddress(dev.data()) || cpu.nbytes() != dev.nbytes()) cpu = make_cpu_storage(dev);
    return view_on(cpu, device_tensor);
  }
  storages_.emplace_back(storage, make_cpu_storage(storage));
  return view_on(storages_.back().second, device_tensor);
}

const c10::Storage& CpuViewSet::cpu_storage(void* data, size_t nbytes) {
  // Empty storages have no bytes to share: tensors without elements (all at
  // nullptr) must not look like aliases of each other to the CPU kernel.
  const bool shareable = data != nullptr;
  for (auto& [bytes, cpu] : blocks_) {
    if (shareable && bytes == data && cpu.nbytes() == nbytes) return cpu;
  }
  // Not owning: the bytes stay valid while the task that views them runs.
  // The context keeps the device pointer (check_unmoved compares it).
  c10::DataPtr ptr(srKernelAddress(data), data, [](void*) {}, c10::Device(c10::DeviceType::CPU));
  blocks_.emplace_back(data, c10::Storage(c10::make_intrusive<c10::StorageImpl>(
                                 c10::StorageImpl::use_byte_size_t(), nbytes, std::move(ptr), c10::GetCPUAllocator(),
                                 /*resizable=*/true)));
  return blocks_.back().second;
}

void CpuViewSet::check_unmoved() const {
  for (const auto& [bytes, cpu] : blocks_) {
    TORCH_CHECK(cpu.data_ptr().get_context() == bytes,
                "sunrise internal error: a CPU kernel reallocated the storage of a device tensor (it grew an "
                "output beyond the size the host computed), so its result did not reach device memory; "
                "please report this with the operator that raised it");
  }
}

DeferredTensor::DeferredTensor(const at::Tensor& t, srStream_t stream)
    : DeferredTensor(t, t.defined() ? t.sizes() : c10::IntArrayRef(), t.defined() ? t.strides() : c10::IntArrayRef(),
                     stream) {}

DeferredTensor::DeferredTensor(const at::Tensor& t, c10::IntArrayRef sizes, c10::IntArrayRef strides,
                               srStream_t stream) {
  if (!t.defined()) return;
  defined_ = true;
  on_device_ = t.device().is_privateuseone();
  TORCH_CHECK(on_device_ || t.device().is_cpu(), "sunrise: unexpected ", t.device(), " tensor argument");
  const c10::Storage& storage = t.storage();
  if (on_device_) {
    if (storage) {
      data_ = storage.unsafeGetStorageImpl()->mutable_data();
      nbytes_ = storage.nbytes();
      caching_allocator::recordUseOnStream(storage.data_ptr(), stream);
    }
  } else {
    cpu_storage_ = storage;
  }
  dim_ = static_cast<int64_t>(sizes.size());
  int64_t* geometry = inline_geometry_.data();
  if (sizes.size() > kInlineDims) {
    heap_geometry_ = std::make_unique<int64_t[]>(2 * sizes.size());
    geometry = heap_geometry_.get();
  }
  std::copy(sizes.begin(), sizes.end(), geometry);
  std::copy(strides.begin(), strides.end(), geometry + dim_);
  offset_ = t.storage_offset();
  dtype_ = t.dtype();
  conj_ = t.is_conj();
  neg_ = t.is_neg();
  wrapped_number_ = t.unsafeGetTensorImpl()->is_wrapped_number();
}

at::Tensor DeferredTensor::view(CpuViewSet& views) const {
  if (!defined_) return at::Tensor();
  c10::Storage storage = on_device_ ? views.cpu_storage(data_, nbytes_) : cpu_storage_;
  auto out = at::detail::make_tensor<c10::TensorImpl>(std::move(storage), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                                      dtype_);
  out.unsafeGetTensorImpl()->set_sizes_and_strides(sizes(), strides(), offset_);
  if (conj_) out._set_conj(true);
  if (neg_) out._set_neg(true);
  if (wrapped_number_) out.unsafeGetTensorImpl()->set_wrapped_number(true);
  return out;
}

std::optional<at::Tensor> view(const std::optional<DeferredTensor>& t, CpuViewSet& views) {
  return t ? std::optional<at::Tensor>(t->view(views)) : std::nullopt;
}

std::vector<at::Tensor> view(const std::vector<DeferredTensor>& list, CpuViewSet& views) {
  std::vector<at::Tensor> out;
  out.reserve(list.size());
  for (const DeferredTensor& t : list) out.push_back(t.view(views));
  return out;
}

std::optional<DeferredTensor> defer(const std::optional<at::Tensor>& t, srStream_t stream) {
  return t ? std::optional<DeferredTensor>(DeferredTensor(*t, stream)) : std::nullopt;
}

std::vector<DeferredTensor> defer(const c10::IListRef<at::Tensor>& list, srStream_t stream) {
  std::vector<DeferredTensor> out;
  out.reserve(list.size());
  for (const at::Tensor& t : list) out.emplace_back(t, stream);
  return out;
}

c10::StorageImpl* CpuViewSet::device_storage_of(const c10::StorageImpl* cpu_storage) const {
  for (const auto& [dev, cpu] : storages_) {
    if (cpu.unsafeGetStorageImpl() == cpu_storage) return dev.unsafeGetStorageImpl();
  }
  return nullptr;
}

c10::StorageImpl* CpuViewSet::cpu_storage_of(const c10::StorageImpl* device_storage) const {
  for (const auto& [dev, cpu] : storages_) {
    if (dev.unsafeGetStorageImpl() == device_storage) return cpu.unsafeGetStorageImpl();
  }
  return nullptr;
}

}  // namespace torch_sunrise::kernels
