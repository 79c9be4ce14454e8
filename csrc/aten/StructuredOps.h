// Native sunrise kernels for PyTorch's structured operators.
//
// A structured operator is split by PyTorch into meta() — shapes, dtypes,
// argument checks, output allocation — and impl() — the computation. For every
// structured op whose CPU kernel is exported, generated wrappers
// (gen_structured_ops.py, run at build time against the installed torch) do:
//   host:   run meta() over CPU views of the device operands; the set_output
//           hooks below allocate the outputs on the sunrise device and hand
//           meta() their CPU views. Nothing waits for the device.
//   device: run the CPU kernel's impl() over the same views as a task on the
//           current stream: ATen's vectorized CPU kernels are the device's
//           math library, and any op impl() calls internally acts on CPU views.
// The Operands object owns the views (meta() borrows them; impl() runs later),
// and every other argument impl() needs is copied into the task.
#pragma once

#include "../kernels/DeviceView.h"

#include <torch_sunrise/SunriseCachingAllocator.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseLaunch.h>
#include <torch_sunrise/SunriseStorage.h>

#include <ATen/EmptyTensor.h>
#include <ATen/TensorIterator.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>

#include <forward_list>
#include <initializer_list>
#include <memory>
#include <optional>
#include <vector>

namespace torch_sunrise::aten::structured {

// The device an op runs on: all device operands on one sunrise device; CPU
// tensors only as 0-dim scalars (as CUDA accepts them).
c10::Device common_device(std::initializer_list<const at::Tensor*> tensors,
                          std::initializer_list<const std::optional<at::Tensor>*> optionals,
                          std::initializer_list<const c10::IListRef<at::Tensor>*> lists, const char* op_name);

// CPU views of an op's operands, alive until the op's device work has run.
// Storage is inline for the common case (a per-op heap allocation is a
// noticeable share of a small op's cost); references stay valid because
// slots never move.
class Operands {
 public:
  explicit Operands(c10::Device device) : device_(device) {}
  Operands(const Operands&) = delete;  // views are borrowed by address
  Operands& operator=(const Operands&) = delete;

  // The CPU view of a sunrise tensor (one per TensorImpl, so that `self` of an
  // in-place op and its output are one view); CPU scalars pass through.
  const at::Tensor& hold(const at::Tensor& t);
  const std::optional<at::Tensor>& hold(const std::optional<at::Tensor>& t);
  const std::vector<at::Tensor>& hold(const c10::IListRef<at::Tensor>& list);
  // Updates t's view in place after t's metadata or storage changed (a
  // resized output); the view keeps its TensorImpl, which meta() may hold.
  const at::Tensor& refresh(const at::Tensor& t);
  // The view hold() made for `t`, or nullptr.
  const at::Tensor* view_of(const at::Tensor& t) const;
  // Whether `view` is one of the views over device memory that hold() made.
  bool is_device_view(const c10::TensorImpl* view) const;
  c10::Device device() const { return device_; }

 private:
  at::Tensor& new_slot();

  static constexpr size_t kInline = 8;
  c10::Device device_;
  kernels::CpuViewSet views_;
  std::array<const c10::TensorImpl*, kInline> impls_{};
  std::array<at::Tensor, kInline> inline_{};
  size_t used_ = 0;
  // Node-based (stable references) and, unlike std::deque, free of any
  // allocation until used: most ops never touch them.
  std::forward_list<std::pair<const c10::TensorImpl*, at::Tensor>> overflow_;  // ops with many tensors
  std::forward_list<std::optional<at::Tensor>> optionals_;
  std::forward_list<std::vector<at::Tensor>> lists_;
};

constexpr const char* kCpu = "cpu";

// What set_output does for every kind, parametrised by the output handling.
template <typename Kernel>
void forward_set_output(Kernel* self, int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides,
                        c10::TensorOptions options) {
  if constexpr (std::is_base_of_v<at::TensorIteratorBase, Kernel>) {
    self->Kernel::set_output_raw_strided(i, sizes, strides, options.device(c10::DeviceType::CPU));
  }
}

// meta() may reshape an output after set_output, through the view it was
// handed (mse_loss with a reduction resizes its elementwise output to 0-dim):
// the device tensor takes the view's shape, and the view is re-pointed at the
// (possibly regrown) device storage.
inline void adopt_view_shape(Operands& operands, const at::Tensor& dev, const at::Tensor& view) {
  if (!view.defined() || (view.sizes().equals(dev.sizes()) && view.strides().equals(dev.strides()) &&
                          view.storage_offset() == dev.storage_offset())) {
    return;
  }
  c10::TensorImpl* impl = dev.unsafeGetTensorImpl();
  impl->set_storage_offset(view.storage_offset());
  resize_tensor_impl(impl, view.sizes(), view.strides());
  operands.refresh(dev);
}

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

// What the three kinds of wrappers share.
//
// TensorIterator promotes mixed-dtype inputs of CPU tensors eagerly, while
// meta() runs: it calls .to(common dtype) on the input, which would read device
// memory on the host before queued work has produced it. promoted_views()
// names the inputs that happened to; the generated wrapper then casts those on
// the device (in stream order) and runs meta() again, which then has nothing
// left to promote.
template <typename Kernel>
struct Base : Kernel {
  // meta() reads or writes tensor data on the host (gen_structured_ops.py's
  // META_TOUCHES_DATA; the wrapper synchronizes before meta()): resizing an
  // out= argument queues a copy of its old bytes, which must land before
  // meta() writes the new ones.
  bool meta_touches_data_ = false;

  // CPU scalars are promoted too, harmlessly: they are host memory.
  std::vector<const c10::TensorImpl*> promoted_views(const Operands& operands) const {
    std::vector<const c10::TensorImpl*> out;
    if constexpr (std::is_base_of_v<at::TensorIteratorBase, Kernel>) {
      for (const auto& operand : this->operands_) {
        if (operand.is_output || !operand.original_tensor_base().defined()) continue;
        const c10::TensorImpl* impl = operand.original_tensor_base().unsafeGetTensorImpl();
        if (operands.is_device_view(impl)) out.push_back(impl);
      }
    }
    return out;
  }
  c10::ScalarType promotion_dtype() const {
    if constexpr (std::is_base_of_v<at::TensorIteratorBase, Kernel>) return this->common_dtype();
    return c10::ScalarType::Undefined;
  }
};

// Casts, on the device, the arguments whose views TensorIterator promoted on
// the host; true when anything was cast (the caller runs meta() again).
// Read-only tensor arguments are borrowed (a copy of a tensor that Python owns
// touches its PyObject, which needs the GIL) until a cast replaces them.
bool cast_promoted(const Operands& operands, const std::vector<const c10::TensorImpl*>& promoted,
                   c10::ScalarType dtype, std::initializer_list<c10::MaybeOwned<at::Tensor>*> tensors,
                   std::initializer_list<std::optional<at::Tensor>*> optionals);

// outputs allocated by the op.
template <typename Kernel, size_t N>
struct Functional final : Base<Kernel> {
  explicit Functional(c10::Device device) : operands_storage_(device) {}

  void set_output_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options) override {
    set(i, sizes, strides, options);
  }
  void set_output_raw_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides,
                              c10::TensorOptions options) override {
    set(i, sizes, strides, options);
  }
  const at::Tensor& maybe_get_output(int64_t i) override { return views_[i]; }

  void set(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options) {
    outputs_[i] = create_out(sizes, strides, options);
    views_[i] = operands_->hold(outputs_[i]);
    forward_set_output<Kernel>(this, i, sizes, strides, options);
  }

  // After meta(): see adopt_view_shape.
  void adopt_view_shapes() {
    for (size_t i = 0; i < N; ++i) {
      if (outputs_[i].defined()) adopt_view_shape(*operands_, outputs_[i], views_[i]);
    }
  }

  Operands operands_storage_;
  Operands* const operands_ = &operands_storage_;
  std::array<at::Tensor, N> outputs_;  // on the device
  std::array<at::Tensor, N> views_;    // what meta() and impl() see
};

// out= arguments: resized when they are empty or of another shape (as
// resize_output does), or served through a proxy when the kernel needs other
// strides; the proxy is copied into the argument after the kernel.
template <typename Kernel, size_t N>
struct Out final : Base<Kernel> {
  Out(c10::Device device, std::array<std::reference_wrapper<at::Tensor>, N> outs)
      : operands_storage_(device), outputs_(outs) {
    for (size_t i = 0; i < N; ++i) views_[i] = operands_->hold(outputs_[i].get());
  }

  void set_output_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options) override {
    set(i, sizes, strides, options, /*allow_proxy=*/true);
  }
  void set_output_raw_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides,
                              c10::TensorOptions options) override {
    set(i, sizes, strides, options, /*allow_proxy=*/false);
  }
  const at::Tensor& maybe_get_output(int64_t i) override { return views_[i]; }

  void set(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options,
           bool allow_proxy) {
    at::Tensor& out = outputs_[i].get();
    TORCH_CHECK(options.dtype() == out.dtype(), "Expected out tensor to have dtype ", options.dtype(),
                ", but got ", out.dtype(), " instead");
    TORCH_CHECK(out.device() == operands_->device(), "Expected out tensor to be on ", operands_->device(),
                ", but got ", out.device());
    if (at::native::resize_output(out, sizes)) {
      if (!strides.empty()) {
        out.as_strided_(sizes, strides);
      } else if (options.memory_format_opt().has_value()) {
        out.unsafeGetTensorImpl()->empty_tensor_restride(*options.memory_format_opt());
      }
      if (this->meta_touches_data_) getCurrentSunriseStream(operands_->device().index()).synchronize();
    }
    if (allow_proxy && !strides.empty() && !out.strides().equals(strides)) {
      proxies_[i] = create_out(sizes, strides, options);
      views_[i] = operands_->hold(*proxies_[i]);
    } else {
      views_[i] = operands_->refresh(out);
    }
    forward_set_output<Kernel>(this, i, sizes, strides, options);
  }

  // After meta(): see adopt_view_shape.
  void adopt_view_shapes() {
    for (size_t i = 0; i < N; ++i) adopt_view_shape(*operands_, proxies_[i] ? *proxies_[i] : outputs_[i].get(), views_[i]);
  }

  // Queues the copies from proxies into the real out= arguments.
  void finish() {
    for (size_t i = 0; i < N; ++i) {
      if (proxies_[i]) outputs_[i].get().copy_(*proxies_[i]);
    }
  }

  Operands operands_storage_;
  Operands* const operands_ = &operands_storage_;
  std::array<std::reference_wrapper<at::Tensor>, N> outputs_;
  std::array<std::optional<at::Tensor>, N> proxies_;
  std::array<at::Tensor, N> views_;
};

// self is the output.
template <typename Kernel, size_t N>
struct Inplace final : Base<Kernel> {
  Inplace(c10::Device device, at::Tensor& self) : operands_storage_(device), self_(self) {
    views_[0] = operands_->hold(self);
  }

  void set_output_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options) override {
    set(i, sizes, strides, options, true);
  }
  void set_output_raw_strided(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides,
                              c10::TensorOptions options) override {
    set(i, sizes, strides, options, false);
  }
  const at::Tensor& maybe_get_output(int64_t i) override { return views_[i]; }

  void set(int64_t i, c10::IntArrayRef sizes, c10::IntArrayRef strides, c10::TensorOptions options,
           bool allow_proxy) {
    TORCH_CHECK(options.dtype() == self_.dtype(), "Bad in-place call: input tensor dtype ", self_.dtype(),
                " and output tensor dtype ", options.dtype(), " should match");
    TORCH_CHECK(sizes == self_.sizes(), "Bad in-place call: input tensor size ", self_.sizes(),
                " and output tensor size ", sizes, " should match");
    if (allow_proxy && !strides.empty() && !self_.strides().equals(strides)) {
      proxy_ = create_out(sizes, strides, options);
      views_[i] = operands_->hold(*proxy_);
    }
    forward_set_output<Kernel>(this, i, sizes, strides, options);
  }

  // In-place outputs keep self's shape (set() checks it).
  void adopt_view_shapes() {}

  void finish() {
    if (proxy_) self_.copy_(*proxy_);
  }

  Operands operands_storage_;
  Operands* const operands_ = &operands_storage_;
  at::Tensor& self_;
  std::optional<at::Tensor> proxy_;
  std::array<at::Tensor, N> views_;
};

// Runs `body` (the impl() call) as device work on the current stream.
template <typename Body>
void launch(c10::Device device, Body&& body) {
  launch_task(getCurrentSunriseStream(device.index()), [body = std::forward<Body>(body)]() mutable {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    body();
  });
}

// Owned copies of array arguments, for the deferred impl() call.
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
