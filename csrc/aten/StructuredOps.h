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
#include "DeviceParallelism.h"
#include "DtypeCheckedLaunch.h"

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

// The device an op runs on: all device operands on one sunrise device; CPU
// tensors only as 0-dim scalars (as CUDA accepts them).
c10::Device common_device(std::initializer_list<const at::Tensor*> tensors,
                          std::initializer_list<const std::optional<at::Tensor>*> optionals,
                          std::initializer_list<const c10::IListRef<at::Tensor>*> lists, const char* op_name);

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

// Memo of meta() for the functional variant of TensorIterator ops.
//
// A TensorIterator meta() is a pure function of its operands' dtypes,
// geometries and flags, the other arguments and the default dtype: it reads no
// data and has no side effects besides allocating its output. Small ops run
// it on the host on every call, and there it is the largest share of a
// 16-element add's host time; the device would not start the op sooner, but
// the host would issue the next one later. So the last few outcomes per op are
// kept, and a call whose key matches one of them allocates the output it
// allocated, without building an iterator. The device still runs the CPU
// kernel's full meta() over the real operands, so any check (for argument
// values, say) still fires on the device, as an asynchronous error.
using MemoKey = c10::SmallVector<int64_t, 32>;

// Appends an operand's flags, dtype, sizes and strides to a memo key; false
// for an undefined operand.
inline bool memo_describe(const at::Tensor& t, MemoKey& key) {
  if (!t.defined()) return false;
  const c10::TensorImpl* impl = t.unsafeGetTensorImpl();
  key.push_back((t.device().is_cpu() ? 1 : 0) | (impl->is_wrapped_number() ? 2 : 0) | (t.is_conj() ? 4 : 0) |
                (t.is_neg() ? 8 : 0) | (t._is_zerotensor() ? 16 : 0) |
                (static_cast<int64_t>(impl->dtype().toScalarType()) << 8) | (t.dim() << 16));
  const c10::IntArrayRef sizes = t.sizes();
  const c10::IntArrayRef strides = t.strides();
  key.append(sizes.begin(), sizes.end());
  key.append(strides.begin(), strides.end());
  return true;
}

// Owned copies of the memoised arguments, and their comparison.
template <typename T>
struct MemoOwned {
  using type = std::decay_t<T>;
};
template <>
struct MemoOwned<c10::string_view> {
  using type = std::string;
};
template <>
struct MemoOwned<std::optional<c10::string_view>> {
  using type = std::optional<std::string>;
};

inline bool memo_same(const at::Scalar& a, const at::Scalar& b) {
  if (a.isSymbolic() || b.isSymbolic() || a.type() != b.type()) return false;
  switch (a.type()) {
    case c10::ScalarType::Double: {
      const double x = a.toDouble(), y = b.toDouble();
      return std::memcmp(&x, &y, sizeof(double)) == 0;
    }
    case c10::ScalarType::Long: return a.toLong() == b.toLong();
    case c10::ScalarType::UInt64: return a.toUInt64() == b.toUInt64();
    case c10::ScalarType::Bool: return a.toBool() == b.toBool();
    case c10::ScalarType::ComplexDouble: return a.toComplexDouble() == b.toComplexDouble();
    default: return false;
  }
}
inline bool memo_same(const std::optional<at::Scalar>& a, const std::optional<at::Scalar>& b) {
  return a.has_value() == b.has_value() && (!a || memo_same(*a, *b));
}
inline bool memo_same(const std::string& a, c10::string_view b) { return c10::string_view(a) == b; }
inline bool memo_same(const std::optional<std::string>& a, const std::optional<c10::string_view>& b) {
  return a.has_value() == b.has_value() && (!a || c10::string_view(*a) == *b);
}
template <typename T>
bool memo_same(const T& a, const T& b) {
  return a == b;
}

template <size_t NT, typename... Args>
class MetaMemo {
 public:
  // Allocates the output as the matching memoised meta() did; false (and
  // nothing done) when no entry matches. `key` receives the call's key for
  // record(), empty when the call cannot be memoised.
  template <typename Op>
  bool replay(Op& op, MemoKey& key, c10::Device device, const std::array<const at::Tensor*, NT>& tensors,
              const Args&... args) {
    if (!describe(device, tensors, key)) {
      key.clear();
      return false;
    }
    Guard guard(busy_);
    if (!guard.owns) return false;
    for (const Entry& e : entries_) {
      if (e.key == key && same(e.args, std::index_sequence_for<Args...>{}, args...)) {
        op.adopt(0, e.sizes, e.strides, e.dtype);
        return true;
      }
    }
    return false;
  }

  // Keeps the outcome of a meta() that just ran, under the key replay() made.
  template <typename Op>
  void record(const Op& op, MemoKey&& key, const Args&... args) {
    const at::Tensor& out = op.outputs_[0];
    if (key.empty() || !out.defined() || out.sizes() != c10::IntArrayRef(op.sizes_[0]) ||
        out.strides() != c10::IntArrayRef(op.strides_[0])) {
      return;  // not memoisable, or meta() reshaped its output (not a plain TensorIterator op)
    }
    Guard guard(busy_);
    if (!guard.owns) return;
    Entry& e = entries_[next_++ % kEntries];
    e.key = std::move(key);
    e.args = std::tuple<typename MemoOwned<Args>::type...>(typename MemoOwned<Args>::type(args)...);
    e.sizes = op.sizes_[0];
    e.strides = op.strides_[0];
    e.dtype = out.scalar_type();
  }

 private:
  static constexpr size_t kEntries = 4;
  struct Entry {
    MemoKey key;  // empty: unused (a call's key is never empty)
    std::tuple<typename MemoOwned<Args>::type...> args;
    at::DimVector sizes;
    at::DimVector strides;
    c10::ScalarType dtype = c10::ScalarType::Undefined;
  };
  // Concurrent callers skip the memo rather than wait for it.
  struct Guard {
    explicit Guard(std::atomic<bool>& busy) : busy_(busy), owns(!busy.exchange(true, std::memory_order_acquire)) {}
    ~Guard() {
      if (owns) busy_.store(false, std::memory_order_release);
    }
    std::atomic<bool>& busy_;
    const bool owns;
  };

  static bool describe(c10::Device device, const std::array<const at::Tensor*, NT>& tensors, MemoKey& key) {
    key.push_back(device.index());
    key.push_back(static_cast<int64_t>(c10::typeMetaToScalarType(c10::get_default_dtype())));
    for (const at::Tensor* t : tensors) {
      if (!memo_describe(*t, key)) return false;
    }
    return true;
  }

  template <size_t... I>
  static bool same(const std::tuple<typename MemoOwned<Args>::type...>& owned, std::index_sequence<I...>,
                   const Args&... args) {
    return (memo_same(std::get<I>(owned), args) && ...);
  }

  std::atomic<bool> busy_{false};
  std::array<Entry, kEntries> entries_;
  size_t next_ = 0;
};

// Other structured ops: their meta() may do more than compute a geometry
// (baddbmm's copies its input into the output), so it always runs.
template <size_t NT, typename... Args>
struct NoMetaMemo {
  template <typename Op>
  bool replay(Op&, MemoKey&, c10::Device, const std::array<const at::Tensor*, NT>&, const Args&...) {
    return false;
  }
  template <typename Op>
  void record(const Op&, MemoKey&&, const Args&...) {}
};

template <typename Op, size_t NT, typename... Args>
using MetaMemoFor = std::conditional_t<std::is_base_of_v<at::TensorIteratorBase, Op>, MetaMemo<NT, Args...>,
                                       NoMetaMemo<NT, Args...>>;

// out= arguments, resized on the host when they are empty or of another shape
// (as resize_output does, with its warning); the CPU kernel on the device
// then finds them sized and serves other strides through its own proxy.
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
