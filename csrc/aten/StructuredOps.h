// Native sunrise kernels for PyTorch's structured operators.
//
// A structured operator is split by PyTorch into meta() — shapes, dtypes,
// argument checks, output allocation — and impl() — the computation. meta() is
// device-generic (CUDA runs it on CUDA tensors); for every structured op whose
// CPU kernel is exported, generated wrappers (gen_structured_ops.py, run at
// build time against the installed torch) do:
//   host:   run meta() over the sunrise tensors themselves; the set_output
//           hooks below allocate or resize the outputs on the device. Any
//           data meta() touches goes through sunrise ops, in stream order.
//           Nothing waits for the device.
//   device: as a task on the current stream, rebuild the operands as CPU views
//           of device memory (DeferredTensor) and call the CPU kernel's own
//           entry point (at::cpu::<op>_outf, or <op>_ in place) on them: ATen's
//           CPU kernels are the device's math library, with CPU eager's
//           semantics for type promotion, proxies and checks.
#pragma once

#include "kernels/CpuViews.h"
#include "CommonDevice.h"
#include "DeviceParallelism.h"
#include "DtypeCheckedLaunch.h"
#include "MetaMemo.h"

#include <torch_sunrise/SunriseCachingAllocator.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseLaunch.h>
#include <torch_sunrise/SunriseMathThreads.h>

#include <ATen/EmptyTensor.h>
#include <ATen/TensorIterator.h>
#include <ATen/native/Resize.h>

#include <array>
#include <atomic>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace torch_sunrise::aten::structured {

// impl() may flip an output's conjugate or negative bit (linalg_lu_solve with
// left=False solves for X^H and returns a conjugate view of it), but only on
// the CPU view: the device tensor's metadata went to the caller when the op
// returned. The device task makes the flip physical, so the device tensor's
// bytes and bits stay as meta() left them and hold the result.
template <size_t N>
class OutputBits {
 public:
  explicit OutputBits(const std::array<at::Tensor, N>& views) {
    for (size_t i = 0; i < N; ++i) {
      conj_[i] = views[i].defined() && views[i].is_conj();
      neg_[i] = views[i].defined() && views[i].is_neg();
    }
  }
  void resolve(const std::array<at::Tensor, N>& views) const {
    for (size_t i = 0; i < N; ++i) {
      if (!views[i].defined()) continue;
      const bool conj = views[i].is_conj() != conj_[i];
      const bool neg = views[i].is_neg() != neg_[i];
      if (!conj && !neg) continue;
      at::Tensor t = views[i];  // same TensorImpl
      t._set_conj(false);
      t._set_neg(false);
      if (conj) t.conj_physical_();
      if (neg) t.neg_();
      t._set_conj(conj_[i]);
      t._set_neg(neg_[i]);
    }
  }

 private:
  std::array<bool, N> conj_{};
  std::array<bool, N> neg_{};
};

// Straight to the caching allocator (the device guard of the wrapper is set),
// as CUDA's structured kernels call empty_cuda: a dispatcher round trip per
// output is a visible share of a small op's host time.
inline at::Tensor create_out(c10::IntArrayRef sizes, c10::IntArrayRef strides, const c10::TensorOptions& options) {
  constexpr c10::DispatchKeySet keys(c10::DispatchKey::PrivateUse1);
  const c10::ScalarType dtype = options.dtype().toScalarType();
  if (strides.empty()) {
    return at::detail::empty_generic(sizes, caching_allocator::get(), keys, dtype, options.memory_format_opt());
  }
  return at::detail::empty_strided_generic(sizes, strides, caching_allocator::get(), keys, dtype);
}

// TensorIterator ops also record the output in the iterator.
template <typename Meta>
void forward_set_output(Meta* self, int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides,
                        c10::TensorOptions options) {
  if constexpr (std::is_base_of_v<at::TensorIteratorBase, Meta>) {
    self->at::TensorIteratorBase::set_output_raw_strided(i, sizes, strides, options);
  }
}

// The hooks of meta() for the three kinds of wrappers. Meta is PyTorch's
// device-generic meta class of the op (at::meta::structured_<op>).

// Outputs allocated by the op. The device task gets each output with the
// geometry it was allocated with: meta() may reshape an output afterwards
// through maybe_get_output() (mse_loss with a reduction resizes its
// elementwise output to 0-dim), and the CPU kernel, re-running meta() on the
// device, does the same from the same start.
template <typename Meta, size_t N>
struct Functional final : Meta {
  void set_output_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options) override {
    set(i, sizes, strides, options);
  }
  void set_output_raw_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides,
                              c10::TensorOptions options) override {
    set(i, sizes, strides, options);
  }
  const at::Tensor& maybe_get_output(int64_t i) override { return outputs_[i]; }

  void set(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options) {
    outputs_[i] = create_out(sizes, strides, options);
    sizes_[i] = outputs_[i].sizes();
    strides_[i] = outputs_[i].strides();
    forward_set_output<Meta>(this, i, sizes, strides, options);
  }

  // At launch (the bytes are those of launch time), with the allocated geometry.
  std::array<kernels::DeferredTensor, N> deferred(srStream_t stream) const {
    std::array<kernels::DeferredTensor, N> out;
    for (size_t i = 0; i < N; ++i) {
      if (outputs_[i].defined()) out[i] = kernels::DeferredTensor(outputs_[i], sizes_[i], strides_[i], stream);
    }
    return out;
  }

  // An output as a memoised meta() left it (MetaMemo).
  void adopt(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::ScalarType dtype) {
    outputs_[i] = create_out(sizes, strides, c10::TensorOptions().dtype(dtype));
    sizes_[i] = sizes;
    strides_[i] = strides;
  }

  std::array<at::Tensor, N> outputs_;
  std::array<at::DimVector, N> sizes_;
  std::array<at::DimVector, N> strides_;
};

template <typename Meta, size_t N>
struct Out final : Meta {
  Out(c10::Device device, std::array<std::reference_wrapper<at::Tensor>, N> outs) : device_(device), outputs_(outs) {}

  void set_output_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options) override {
    set(i, sizes, strides, options);
  }
  void set_output_raw_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides,
                              c10::TensorOptions options) override {
    set(i, sizes, strides, options);
  }
  const at::Tensor& maybe_get_output(int64_t i) override { return outputs_[i].get(); }

  void set(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options) {
    at::Tensor& out = outputs_[i].get();
    TORCH_CHECK(options.dtype() == out.dtype(), "Expected out tensor to have dtype ", options.dtype(),
                ", but got ", out.dtype(), " instead");
    TORCH_CHECK(out.device() == device_, "Expected out tensor to be on ", device_, ", but got ", out.device());
    if (at::native::resize_output(out, sizes)) {
      if (!strides.empty()) {
        out.as_strided_(sizes, strides);
      } else if (options.memory_format_opt().has_value()) {
        out.unsafeGetTensorImpl()->empty_tensor_restride(*options.memory_format_opt());
      }
    }
    forward_set_output<Meta>(this, i, sizes, strides, options);
  }

  std::array<kernels::DeferredTensor, N> deferred(srStream_t stream) const {
    std::array<kernels::DeferredTensor, N> out;
    for (size_t i = 0; i < N; ++i) out[i] = kernels::DeferredTensor(outputs_[i].get(), stream);
    return out;
  }

  c10::Device device_;
  std::array<std::reference_wrapper<at::Tensor>, N> outputs_;
};

// self is the output.
template <typename Meta, size_t N>
struct Inplace final : Meta {
  explicit Inplace(at::Tensor& self) : self_(self) {}

  void set_output_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options) override {
    set(i, sizes, strides, options);
  }
  void set_output_raw_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides,
                              c10::TensorOptions options) override {
    set(i, sizes, strides, options);
  }
  const at::Tensor& maybe_get_output(int64_t) override { return self_; }

  void set(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options) {
    TORCH_CHECK(options.dtype() == self_.dtype(), "Bad in-place call: input tensor dtype ", self_.dtype(),
                " and output tensor dtype ", options.dtype(), " should match");
    TORCH_CHECK(sizes == self_.sizes(), "Bad in-place call: input tensor size ", self_.sizes(),
                " and output tensor size ", sizes, " should match");
    forward_set_output<Meta>(this, i, sizes, strides, options);
  }

  at::Tensor& self_;
};

// Views of deferred outputs, on the device thread.
template <size_t N>
std::array<at::Tensor, N> views_of(const std::array<kernels::DeferredTensor, N>& outputs, kernels::CpuViewSet& views) {
  std::array<at::Tensor, N> out;
  for (size_t i = 0; i < N; ++i) out[i] = outputs[i].view(views);
  return out;
}

// Owned copies of array arguments, for the deferred call.
template <typename T>
std::vector<T> own(c10::ArrayRef<T> a) {
  return a.vec();
}
template <typename T>
std::optional<std::vector<T>> own(const at::OptionalArrayRef<T>& a) {
  return a.has_value() ? std::optional<std::vector<T>>(a->vec()) : std::nullopt;
}
inline std::string own(c10::string_view s) { return std::string(s); }
inline std::optional<std::string> own(const std::optional<c10::string_view>& s) {
  return s ? std::optional<std::string>(std::string(*s)) : std::nullopt;
}

}  // namespace torch_sunrise::aten::structured
