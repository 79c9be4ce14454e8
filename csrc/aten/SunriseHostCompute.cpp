#include "SunriseHostCompute.h"

#include "kernels/CopyKernel.h"

#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseStorage.h>

#include <ATen/ops/empty_strided.h>

namespace torch_sunrise::aten {

at::Tensor copy_result_to_device(const at::Tensor& cpu, c10::Device device) {
  at::Tensor src = cpu;
  if (!src.is_non_overlapping_and_dense()) src = src.contiguous();
  at::Tensor out = at::empty_strided(src.sizes(), src.strides(), src.options().device(device));
  if (src.is_conj()) out._set_conj(true);
  if (src.is_neg()) out._set_neg(true);
  kernels::copy_from(src, out, /*non_blocking=*/false);
  return out;
}

namespace {

// A sunrise tensor with the CPU tensor's view metadata on device storage.
at::Tensor device_alias(const at::Tensor& cpu, c10::StorageImpl* device_storage) {
  auto out = at::detail::make_tensor<c10::TensorImpl>(
      c10::Storage(c10::intrusive_ptr<c10::StorageImpl>::reclaim_copy(device_storage)),
      c10::DispatchKeySet(c10::DispatchKey::PrivateUse1), cpu.dtype());
  out.unsafeGetTensorImpl()->set_sizes_and_strides(cpu.sizes(), cpu.strides(), cpu.storage_offset());
  if (cpu.is_conj()) out._set_conj(true);
  if (cpu.is_neg()) out._set_neg(true);
  return out;
}

}  // namespace

HostCompute::HostCompute(c10::Device device) : device_(device), guard_(device) {
  // Stream order: pending device work on the operands finishes first.
  getCurrentSunriseStream(device.index()).synchronize();
}

at::Tensor HostCompute::in(const at::Tensor& t) {
  if (!t.defined() || !t.device().is_privateuseone()) return t;
  // One view per device tensor: kernels tell "out is also an input" (in-place
  // through out=) by tensor identity.
  for (const auto& [view, dev] : passed_) {
    if (dev.unsafeGetTensorImpl() == t.unsafeGetTensorImpl()) return view;
  }
  at::Tensor v = views_.view(t);
  passed_.emplace_back(v, t);
  return v;
}

at::Tensor HostCompute::out(const at::Tensor& cpu) {
  if (!cpu.defined()) return cpu;
  TORCH_CHECK_NOT_IMPLEMENTED(cpu.layout() == c10::Layout::Strided,
                              "sunrise supports strided (dense) tensors only; this op produced a ", cpu.layout(),
                              " tensor. Keep sparse work on the CPU.");
  for (const auto& [view, dev] : passed_) {
    if (view.unsafeGetTensorImpl() == cpu.unsafeGetTensorImpl()) return dev;
  }
  if (c10::StorageImpl* dstore = views_.device_storage_of(cpu.storage().unsafeGetStorageImpl())) {
    return device_alias(cpu, dstore);
  }
  return copy_result_to_device(cpu, device_);
}

void HostCompute::write_back(const at::Tensor& dev, const at::Tensor& cpu) {
  if (!dev.defined() || !cpu.defined()) return;
  c10::StorageImpl* dstore = dev.storage().unsafeGetStorageImpl();
  c10::StorageImpl* cstore = cpu.storage().unsafeGetStorageImpl();
  const bool same_bytes = views_.device_storage_of(cstore) == dstore &&
                          cstore->data() == srKernelAddress(dstore->data()) && cstore->nbytes() == dstore->nbytes();
  if (!same_bytes) {
    // The kernel reallocated (grew) the argument's storage on the CPU side.
    const SunriseGuard guard(dev.device());
    if (cstore->nbytes() != dstore->nbytes()) resize_storage_bytes(dstore, cstore->nbytes());
    if (cstore->nbytes() > 0) {
      SUNRISE_CHECK(srMemcpyAsync(dstore->mutable_data(), cstore->data(), cstore->nbytes(), srMemcpyHostToDevice,
                                  getCurrentSunriseStream(dev.device().index()).handle()));
    }
  }
  auto* impl = dev.unsafeGetTensorImpl();
  if (!impl->sizes().equals(cpu.sizes()) || !impl->strides().equals(cpu.strides()) ||
      impl->storage_offset() != cpu.storage_offset()) {
    impl->set_sizes_and_strides(cpu.sizes(), cpu.strides(), cpu.storage_offset());
  }
}

}  // namespace torch_sunrise::aten
