#include "DeviceView.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/intrusive_ptr.h>

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
  c10::DataPtr data(impl->mutable_data(), impl, &release_device_storage, c10::Device(c10::DeviceType::CPU));
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
    if (cpu.data() != dev.data() || cpu.nbytes() != dev.nbytes()) cpu = make_cpu_storage(dev);
    return view_on(cpu, device_tensor);
  }
  storages_.emplace_back(storage, make_cpu_storage(storage));
  return view_on(storages_.back().second, device_tensor);
}

void CpuViewSet::refresh(const at::Tensor& view, const at::Tensor& device_tensor) {
  const at::Tensor fresh = this->view(device_tensor);
  auto* impl = view.unsafeGetTensorImpl();
  impl->set_storage_keep_dtype(fresh.storage());
  impl->set_sizes_and_strides(device_tensor.sizes(), device_tensor.strides(), device_tensor.storage_offset());
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
