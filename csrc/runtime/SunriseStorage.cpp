#include <torch_sunrise/SunriseCachingAllocator.h>
#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseStorage.h>

#include <ATen/EmptyTensor.h>

namespace torch_sunrise {

void resize_storage_bytes(c10::StorageImpl* storage, size_t new_bytes) {
  TORCH_CHECK(storage->resizable(), "Trying to resize storage that is not resizable");
  const c10::Device device = storage->device();
  TORCH_CHECK(device.is_privateuseone(), "resize_storage_bytes expects a sunrise storage, got ", device);
  SunriseGuard guard(device);
  c10::Allocator* allocator = storage->allocator();
  TORCH_CHECK(allocator != nullptr, "Trying to resize a sunrise storage without an allocator");
  c10::DataPtr new_data = allocator->allocate(new_bytes);
  const c10::DataPtr& old_data = storage->data_ptr();
  const size_t keep = std::min(new_bytes, storage->nbytes());
  const SunriseStream stream = getCurrentSunriseStream(device.index());
  if (old_data.get() != nullptr && keep > 0) {
    SUNRISE_CHECK(srMemcpyAsync(new_data.get(), old_data.get(), keep, srMemcpyDeviceToDevice, stream.handle()));
    // The old block is freed below; keep it from reuse until the copy has run.
    caching_allocator::recordStream(old_data, stream);
  }
  storage->set_data_ptr_noswap(std::move(new_data));
  storage->set_nbytes(new_bytes);
}

void resize_tensor_impl(c10::TensorImpl* self, c10::IntArrayRef size, std::optional<c10::IntArrayRef> stride) {
  if (self->sizes() == size && (!stride || self->strides() == *stride)) return;
  const size_t itemsize = self->dtype().itemsize();
  const size_t offset = static_cast<size_t>(self->storage_offset());
  size_t needed = 0;
  if (stride) {
    self->set_sizes_and_strides(size, *stride);
    needed = at::detail::computeStorageNbytes(size, *stride, itemsize, offset);
  } else {
    self->set_sizes_contiguous(size);
    needed = at::detail::computeStorageNbytesContiguous(size, itemsize, offset);
  }
  // A tensor of zero elements needs no storage, as on CPU.
  if (self->numel() == 0) return;
  const c10::Storage& storage = self->unsafe_storage();
  if (!storage) {
    auto fresh = c10::make_intrusive<c10::StorageImpl>(c10::StorageImpl::use_byte_size_t(), needed,
                                                       caching_allocator::get(), /*resizable=*/true);
    self->set_storage_keep_dtype(c10::Storage(std::move(fresh)));
  } else if (needed > storage.nbytes()) {
    resize_storage_bytes(storage.unsafeGetStorageImpl(), needed);
  }
}

}  // namespace torch_sunrise
