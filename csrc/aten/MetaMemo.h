// The host's memo of TensorIterator meta() for generated functional wrappers
// (StructuredOps.h): what a memoised call's output looked like.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/SmallVector.h>

#include <array>
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace torch_sunrise::aten::structured {

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
}  // namespace torch_sunrise::aten::structured
