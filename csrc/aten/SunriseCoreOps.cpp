// Registration of the core tensor ops for the sunrise device: allocation,
// views, resizing, storage swaps, copies, fills and scalar reads. The logic
// lives in csrc/kernels (device work) and csrc/runtime (storage); this file
// only adapts signatures.
#include "kernels/CopyKernel.h"
#include "kernels/FillKernel.h"

#include <torch_sunrise/SunriseCachingAllocator.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseStorage.h>

#include <ATen/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/native/TensorFactories.h>
#include <ATen/ops/_reshape_alias_native.h>
#include <ATen/ops/as_strided_native.h>
#include <ATen/ops/conj_physical.h>
#include <ATen/ops/view_native.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

const c10::DispatchKeySet kSunriseKeys(c10::DispatchKey::PrivateUse1);

void check_factory_args(std::optional<c10::Layout> layout, std::optional<bool> pin_memory) {
  TORCH_CHECK(!layout || *layout == c10::Layout::Strided, "sunrise tensors support the strided layout only, got ",
              *layout);
  TORCH_CHECK(!pin_memory || !*pin_memory, "Only dense CPU tensors can be pinned");
}

at::Tensor empty_memory_format(c10::IntArrayRef size, std::optional<c10::ScalarType> dtype,
                               std::optional<c10::Layout> layout, std::optional<c10::Device> device,
                               std::optional<bool> pin_memory, std::optional<c10::MemoryFormat> memory_format) {
  check_factory_args(layout, pin_memory);
  const OptionalSunriseGuard guard(device);
  return at::detail::empty_generic(size, caching_allocator::get(), kSunriseKeys,
                                   c10::dtype_or_default(dtype), memory_format);
}

at::Tensor empty_strided(c10::IntArrayRef size, c10::IntArrayRef stride, std::optional<c10::ScalarType> dtype,
                         std::optional<c10::Layout> layout, std::optional<c10::Device> device,
                         std::optional<bool> pin_memory) {
  check_factory_args(layout, pin_memory);
  const OptionalSunriseGuard guard(device);
  return at::detail::empty_strided_generic(size, stride, caching_allocator::get(), kSunriseKeys,
                                           c10::dtype_or_default(dtype));
}

at::Tensor as_strided(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride,
                      std::optional<int64_t> storage_offset) {
  return at::native::as_strided_tensorimpl(self, size, stride, storage_offset);
}

const at::Tensor& resize_(const at::Tensor& self, c10::IntArrayRef size,
                          std::optional<c10::MemoryFormat> memory_format) {
  for (const int64_t s : size) TORCH_CHECK(s >= 0, "Trying to create tensor with negative dimension ", s, ": ", size);
  const SunriseGuard guard(self.device());
  resize_tensor_impl(self.unsafeGetTensorImpl(), size);
  if (memory_format) {
    TORCH_CHECK(*memory_format != c10::MemoryFormat::Preserve, "Unsupported memory format ", *memory_format);
    self.unsafeGetTensorImpl()->empty_tensor_restride(*memory_format);
  }
  return self;
}

at::Tensor& set_storage_offset(at::Tensor& self, c10::Storage source, int64_t storage_offset, c10::IntArrayRef size,
                               c10::IntArrayRef stride) {
  at::native::checkSetStorage(self, std::move(source), storage_offset, size, stride);
  self.unsafeGetTensorImpl()->set_storage_offset(storage_offset);
  std::optional<c10::IntArrayRef> stride_opt;
  if (stride.data() != nullptr) stride_opt = stride;
  const SunriseGuard guard(self.device());
  resize_tensor_impl(self.unsafeGetTensorImpl(), size, stride_opt);
  return self;
}

at::Tensor& set_storage(at::Tensor& self, c10::Storage source) {
  const int64_t numel = static_cast<int64_t>(source.nbytes() / self.dtype().itemsize());
  return set_storage_offset(self, std::move(source), 0, {numel}, {});
}

at::Tensor& set_tensor(at::Tensor& self, const at::Tensor& source) {
  if (self.unsafeGetTensorImpl() == source.unsafeGetTensorImpl()) return self;
  return set_storage_offset(self, source.storage(), source.storage_offset(), source.sizes(), source.strides());
}

at::Tensor& set_empty(at::Tensor& self) {
  const SunriseGuard guard(self.device());
  c10::Storage storage(c10::Storage::use_byte_size_t(), 0, caching_allocator::get(), /*resizable=*/true);
  return set_storage_offset(self, std::move(storage), 0, {0}, {});
}

at::Tensor copy_from(const at::Tensor& self, const at::Tensor& dst, bool non_blocking) {
  return kernels::copy_from(self, dst, non_blocking);
}

at::Tensor copy_from_and_resize(const at::Tensor& self, const at::Tensor& dst) {
  if (!dst.sizes().equals(self.sizes())) {
    TORCH_CHECK(dst.device().is_privateuseone() || dst.device().is_cpu(), "unexpected destination ", dst.device());
    dst.resize_(self.sizes());
  }
  return kernels::copy_from(self, dst, false);
}

at::Tensor& fill_scalar(at::Tensor& self, const c10::Scalar& value) {
  kernels::fill(self, value);
  return self;
}

at::Tensor& fill_tensor(at::Tensor& self, const at::Tensor& value) {
  TORCH_CHECK(value.dim() == 0, "fill_ only supports 0-dimension value tensor but got tensor with ", value.dim(),
              " dimensions.");
  if (value.device().is_cpu()) {
    kernels::fill(self, value.item());
  } else {
    // Stay on the device: no host round trip for a device-resident value.
    kernels::copy_from(value, self, false);
  }
  return self;
}

at::Tensor& zero_(at::Tensor& self) {
  kernels::zero(self);
  return self;
}

c10::Scalar local_scalar_dense(const at::Tensor& self) { return kernels::local_scalar(self); }

// Module.to() swaps parameter data in place (keeping Parameter identity, which
// optimizers and tied weights depend on) only when the two tensors are
// "shallow-copy compatible"; torch's built-in list of dense backends omits
// PrivateUse1, so it must be stated here.
bool has_compatible_shallow_copy_type(const at::Tensor& self, const at::Tensor& from) {
  auto dense = [](const at::Tensor& t) {
    return t.layout() == c10::Layout::Strided && (t.device().is_privateuseone() || t.device().is_cpu());
  };
  return dense(self) && dense(from);
}

// conj_physical_'s generic kernel calls the conj DispatchStub, which has no
// sunrise entry; the out= variant with out=self dispatches to sunrise.
at::Tensor& conj_physical_(at::Tensor& self) {
  if (!self.is_complex()) return self;
  return at::conj_physical_out(self, self);
}

// As CUDA's: a ZeroTensor without storage (autograd's efficient zeros). The
// ZeroTensor dispatch key materializes it for ops that need the values.
at::Allocator* zero_tensor_allocator(c10::DeviceIndex index) {
  static const auto allocators = [] {
    std::vector<std::unique_ptr<at::native::ZeroTensorAllocator>> all;
    for (c10::DeviceIndex i = 0; i < device_count(); ++i) {
      all.push_back(std::make_unique<at::native::ZeroTensorAllocator>(c10::Device(c10::DeviceType::PrivateUse1, i)));
    }
    return all;
  }();
  check_device_index(index);
  return allocators[index].get();
}

at::Tensor efficientzerotensor(c10::IntArrayRef size, std::optional<c10::ScalarType> dtype,
                               std::optional<c10::Layout> layout, std::optional<c10::Device> device,
                               std::optional<bool> pin_memory) {
  check_factory_args(layout, pin_memory);
  const c10::DeviceIndex index = device && device->has_index() ? device->index() : current_device();
  const auto keys = kSunriseKeys | c10::DispatchKeySet(c10::DispatchKey::ZeroTensor);
  return at::detail::empty_generic(size, zero_tensor_allocator(index), keys, c10::dtype_or_default(dtype),
                                   std::nullopt);
}

void record_stream(at::Tensor& self, c10::Stream stream) {
  TORCH_CHECK(stream.device() == self.device(), "record_stream: the stream is on ", stream.device(),
              " but the tensor is on ", self.device());
  caching_allocator::recordStream(self.storage().data_ptr(), SunriseStream(stream));
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("empty.memory_format", empty_memory_format);
  m.impl("empty_strided", empty_strided);
  m.impl("as_strided", as_strided);
  m.impl("view", TORCH_FN(at::native::view));
  m.impl("_reshape_alias", TORCH_FN(at::native::_reshape_alias));
  m.impl("resize_", resize_);
  m.impl("set_.source_Storage", set_storage);
  m.impl("set_.source_Storage_storage_offset", set_storage_offset);
  m.impl("set_.source_Tensor", set_tensor);
  m.impl("set_", set_empty);
  m.impl("_copy_from", copy_from);
  m.impl("_copy_from_and_resize", copy_from_and_resize);
  m.impl("fill_.Scalar", fill_scalar);
  m.impl("fill_.Tensor", fill_tensor);
  m.impl("zero_", zero_);
  m.impl("_local_scalar_dense", local_scalar_dense);
  m.impl("record_stream", record_stream);
  m.impl("_has_compatible_shallow_copy_type", has_compatible_shallow_copy_type);
  m.impl("conj_physical_", conj_physical_);
  m.impl("_efficientzerotensor", efficientzerotensor);
}

// Copies resolve conjugate and negative bits themselves (the CPU copy kernel
// they run honours them). Without these fallthroughs the conj/neg fallbacks
// would materialize the source with clone(), which copies, which recurses.
TORCH_LIBRARY_IMPL(aten, Conjugate, m) {
  m.impl("_copy_from", torch::CppFunction::makeFallthrough());
  m.impl("_copy_from_and_resize", torch::CppFunction::makeFallthrough());
}
TORCH_LIBRARY_IMPL(aten, Negative, m) {
  m.impl("_copy_from", torch::CppFunction::makeFallthrough());
  m.impl("_copy_from_and_resize", torch::CppFunction::makeFallthrough());
}

}  // namespace torch_sunrise::aten
