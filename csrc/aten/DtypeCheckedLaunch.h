// Dtype errors at the call, as CPU and CUDA raise them.
//
// A device kernel here is ATen's CPU kernel, and its dtype dispatch
// (AT_DISPATCH_*: `"abs_cpu" not implemented for 'Bool'`) runs where the
// kernel runs, on the device thread: the call would return and the error
// surface as a sticky launch failure at whatever synchronizes next. CPU and
// CUDA raise NotImplementedError from the call itself.
//
// So the first launch from a call site with a given combination of operand
// dtypes waits for the kernel and raises its error at the call (the device
// keeps working), and its warnings too: the ones a kernel raises once per
// process are raised by its first launch. A combination that ran is
// remembered per site, and later launches with it are asynchronous: a
// kernel's dtype dispatch and argument checks depend on the dtypes (and on
// whether an operand is empty: many kernels return before dispatching; a
// hand-written op adds what else picks its CPU kernel, Capture::key_on). A
// combination that failed is not remembered, so it fails at the call every
// time. The dtypes CPU kernels support on some paths only (uint16-64,
// complex32, float8) are never remembered: their launches always wait. An
// index out of range in the data (c10::IndexError) stays asynchronous, on the
// first launch too, as on CUDA.
#pragma once

#include <torch_sunrise/SunriseLaunch.h>
#include <torch_sunrise/SunriseStream.h>

#include <ATen/core/IListRef.h>
#include <ATen/core/Tensor.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>

namespace torch_sunrise::aten {

// The dtypes CPU kernels support on some paths only (flip's memcpy along the
// first dimension, not along the last): uint16-64 (and the sub-byte ones),
// float8, complex32. A bit per ScalarType, for the launch path.
inline const uint64_t kPartlySupportedDtypes = [] {
  uint64_t mask = 0;
  for (int i = 0; i < static_cast<int>(c10::ScalarType::NumOptions) && i < 64; ++i) {
    const auto t = static_cast<c10::ScalarType>(i);
    if (c10::isBarebonesUnsignedType(t) || c10::isFloat8Type(t) || t == c10::kComplexHalf) mask |= uint64_t{1} << i;
  }
  return mask;
}();

// The dtypes of a kernel's tensor operands, in order, as one number.
class DtypeKey {
 public:
  void add(const at::Tensor& t) {
    // A wrapped number (a Python scalar) takes part in type promotion
    // differently; many kernels return before their dtype dispatch when a
    // tensor has no elements, so an empty operand is another combination.
    if (!t.defined()) {
      mix(0);
      return;
    }
    const c10::TensorImpl* impl = t.unsafeGetTensorImpl();
    const auto dtype = static_cast<uint64_t>(c10::typeMetaToScalarType(impl->dtype()));
    mix((dtype + 1) | (impl->is_wrapped_number() ? 0x100 : 0) | (impl->numel() == 0 ? 0x400 : 0));
    partial_ |= (kPartlySupportedDtypes >> (dtype & 63)) & 1;
  }
  void add(const std::optional<at::Tensor>& t) { t ? add(*t) : mix(0); }
  void add(const at::ITensorListRef& list) {
    mix((uint64_t{1} << 32) | list.size());
    for (const at::Tensor& t : list) add(t);
  }
  // Arguments that pick a kernel's path.
  void add_value(uint64_t value) { mix(value | (uint64_t{1} << 40)); }
  void add(bool v) { add_value(v ? 2 : 1); }
  void add(int64_t v) { add_value(static_cast<uint64_t>(v)); }
  void add(c10::ScalarType v) { add_value(static_cast<uint64_t>(v) + 0x100); }
  void add(c10::string_view v) {
    for (const char ch : v) mix(static_cast<unsigned char>(ch));
    add_value(v.size());
  }
  template <typename T>
  void add(const std::optional<T>& v) {
    v ? add(*v) : mix(0);
  }
  template <size_t N>
  void add(const std::array<at::Tensor, N>& tensors) {
    for (const at::Tensor& t : tensors) add(t);
  }
  // kAlwaysWait when an operand has a dtype CPU kernels support only partly.
  uint64_t value() const { return partial_ || hash_ == kAlwaysWait ? kAlwaysWait : hash_; }

  static constexpr uint64_t kAlwaysWait = 0;

 private:
  void mix(uint64_t v) { hash_ = (hash_ ^ v) * 0x100000001b3ULL; }  // FNV-1a
  uint64_t hash_ = 0xcbf29ce484222325ULL;
  uint64_t partial_ = 0;
};

template <typename... Operands>
uint64_t dtype_key(const Operands&... operands) {
  DtypeKey key;
  (key.add(operands), ...);
  return key.value();
}

// The dtype keys a call site launched without an error. Read on every
// launch without a lock; a full set forgets its oldest keys (which then cost
// one wait again).
class CheckedDtypes {
 public:
  bool contains(uint64_t key) const noexcept {
    const int n = size_.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
      if (keys_[i].load(std::memory_order_relaxed) == key) return true;
    }
    return false;
  }
  void insert(uint64_t key) {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (contains(key)) return;
    const int n = size_.load(std::memory_order_relaxed);
    if (n < kCapacity) {
      keys_[n].store(key, std::memory_order_relaxed);
      size_.store(n + 1, std::memory_order_release);
    } else {
      keys_[next_evicted_++ % kCapacity].store(key, std::memory_order_relaxed);
    }
  }

 private:
  static constexpr int kCapacity = 32;
  std::array<std::atomic<uint64_t>, kCapacity> keys_{};
  std::atomic<int> size_{0};
  std::mutex mutex_;
  int next_evicted_ = 0;
};

// One set per call site: F, a lambda, is a type of its own at each site.
template <typename F>
CheckedDtypes& checked_dtypes_of() {
  static CheckedDtypes checked;
  return checked;
}

// Waits for a task launched with `result` and raises its warnings and error
// here, at the call. True if it ran without error; an index out of range found
// in the data (c10::IndexError) is queued again as the device's asynchronous
// error instead, as on CUDA, and gives false (if `index_errors_async`).
inline bool wait_for_checked_launch(const SunriseStream& stream, const detail::CallResult& result,
                                    bool index_errors_async = true) {
  stream.synchronize();
  for (const c10::Warning& warning : result.warnings) c10::warn(warning);
  if (!result.error) return true;
  if (!index_errors_async) std::rethrow_exception(result.error);
  try {
    std::rethrow_exception(result.error);
  } catch (const c10::IndexError&) {
    // CUDA's device-side assert, the device's asynchronous error.
    launch_task(stream, [error = result.error] { std::rethrow_exception(error); });
  }
  // Anything else was raised above, at the call: a dtype error, or one of the
  // argument checks CPU kernels make as they start (mixed dtypes in a matrix
  // product, an integral out= of a mean), which CUDA makes on the host.
  return false;
}

// launch_task, with an error of the kernel raised here the first time the
// site launches these operand dtypes (`dtypes`: dtype_key of the operands).
template <typename F>
void launch_checked(const SunriseStream& stream, uint64_t dtypes, F&& f) {
  CheckedDtypes& checked = checked_dtypes_of<std::decay_t<F>>();
  // A capturing stream records the task, so there is nothing to wait for: an
  // error shows at replay, as the device's asynchronous error.
  if (checked.contains(dtypes) || stream.is_capturing()) {
    launch_task(stream, std::forward<F>(f));
    return;
  }
  auto result = std::make_shared<detail::CallResult>();
  launch_task(stream, std::forward<F>(f), result);
  if (wait_for_checked_launch(stream, *result) && dtypes != DtypeKey::kAlwaysWait) checked.insert(dtypes);
}

}  // namespace torch_sunrise::aten
