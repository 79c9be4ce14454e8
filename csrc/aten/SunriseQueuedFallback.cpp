#include "SunriseQueuedFallback.h"
#include "MetaMemo.h"
#include "SunriseAsyncSupport.h"
#include "SunriseCpuFallback.h"
#include "SunriseHostCompute.h"

#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseHostWait.h>
#include <torch_sunrise/SunriseStorage.h>

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <c10/util/SmallVector.h>
#include <c10/util/strides.h>

#include <array>
#include <cstring>
#include <memory>
#include <sstream>

namespace torch_sunrise::aten {

// A tensor as the Meta kernel left it.
struct MetaTensor {
  bool defined = false;
  c10::SmallVector<int64_t, 6> sizes, strides;
  c10::ScalarType dtype = c10::ScalarType::Undefined;
  bool conj = false, neg = false;

  static MetaTensor of(const at::Tensor& t) {
    MetaTensor m;
    if (!t.defined()) return m;
    m.defined = true;
    m.sizes.assign(t.sizes().begin(), t.sizes().end());
    m.strides.assign(t.strides().begin(), t.strides().end());
    m.dtype = t.scalar_type();
    m.conj = t.is_conj();
    m.neg = t.is_neg();
    return m;
  }
  at::Tensor allocate(c10::Device device) const {
    if (!defined) return at::Tensor();
    at::Tensor t = at::empty_strided(sizes, strides, at::TensorOptions().dtype(dtype).device(device));
    if (conj) t._set_conj(true);
    if (neg) t._set_neg(true);
    return t;
  }
  bool same_sizes(const at::Tensor& t) const {
    return defined == t.defined() && (!defined || (t.sizes().equals(sizes) && t.scalar_type() == dtype));
  }
  size_t nbytes(size_t storage_offset) const {
    return at::detail::computeStorageNbytes(sizes, strides, c10::elementSize(dtype), storage_offset);
  }
};

// A return or a written argument: none, a tensor, or a list of tensors.
struct MetaValue {
  bool is_list = false;
  bool is_none = false;
  std::vector<MetaTensor> tensors;

  static MetaValue of(const c10::IValue& v) {
    MetaValue m;
    if (v.isTensorList()) {
      m.is_list = true;
      for (const at::Tensor& t : v.toTensorList()) m.tensors.push_back(MetaTensor::of(t));
    } else if (v.isTensor()) {
      m.tensors.push_back(MetaTensor::of(v.toTensor()));
    } else {
      m.is_none = true;  // or a host value, which the CPU kernel gives
    }
    return m;
  }
};

// What a Meta kernel run gave: the written arguments (in QueuedOperator's
// order) and the returns, and its warnings. Verified: a call with these
// arguments ran the CPU kernel, which gave its outputs this geometry (where
// the Meta kernel's strides were not the CPU kernel's, the CPU kernel's).
struct MetaOutcome {
  std::vector<MetaValue> written;
  std::vector<MetaValue> returns;
  std::vector<c10::Warning> warnings;
  bool verified = false;
};

namespace {

using kernels::DeferredTensor;

std::string first_line(const std::exception& e) {
  const auto* error = dynamic_cast<const c10::Error*>(&e);
  std::string what = error != nullptr ? error->what_without_backtrace() : e.what();
  const size_t end = what.find('\n');
  return end == std::string::npos ? what : what.substr(0, end);
}

bool is_tensor_type(const c10::TypePtr& type) {
  if (type->kind() == c10::TypeKind::TensorType) return true;
  if (const auto opt = type->cast<c10::OptionalType>()) return is_tensor_type(opt->getElementType());
  if (const auto list = type->cast<c10::ListType>()) return list->getElementType()->kind() == c10::TypeKind::TensorType;
  return false;
}

std::string geometry_of(const at::Tensor& t) {
  std::ostringstream out;
  out << t.scalar_type() << t.sizes() << " strides " << t.strides() << (t.is_conj() ? " conj" : "");
  return out.str();
}

bool same_geometry(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes().equals(b.sizes()) && a.strides().equals(b.strides()) && a.dtype() == b.dtype() &&
         a.is_conj() == b.is_conj() && a.is_neg() == b.is_neg();
}

// Meta copies of the arguments: one per tensor (a tensor passed twice is one
// meta tensor, as kernels tell in-place from out= by identity).
class MetaCopies {
 public:
  bool made(const at::Tensor& t) const {
    for (const auto& entry : made_) {
      if (entry.first == t.unsafeGetTensorImpl()) return true;
    }
    return false;
  }
  at::Tensor operator()(const at::Tensor& t) {
    if (!t.defined()) return t;
    for (const auto& [impl, copy] : made_) {
      if (impl == t.unsafeGetTensorImpl()) return copy;
    }
    at::Tensor copy = meta_like(t);
    if (t.is_conj()) copy._set_conj(true);
    if (t.is_neg()) copy._set_neg(true);
    // A Python number takes part in type promotion as a scalar.
    if (t.unsafeGetTensorImpl()->is_wrapped_number()) copy.unsafeGetTensorImpl()->set_wrapped_number(true);
    made_.emplace_back(t.unsafeGetTensorImpl(), copy);
    return copy;
  }
  c10::IValue operator()(const c10::IValue& v) {
    if (v.isTensor()) return (*this)(v.toTensor());
    if (v.isTensorList()) {
      c10::List<at::Tensor> list;
      for (const at::Tensor& t : v.toTensorList()) list.push_back((*this)(t));
      return list;
    }
    if (v.isOptionalTensorList()) {
      c10::List<std::optional<at::Tensor>> list;
      for (const std::optional<at::Tensor>& t : v.toOptionalTensorList()) {
        list.push_back(t ? std::optional<at::Tensor>((*this)(*t)) : std::nullopt);
      }
      return list;
    }
    if (v.isDevice() && v.toDevice().is_privateuseone()) return c10::Device(c10::kMeta);
    return v;
  }

 private:
  c10::SmallVector<std::pair<const c10::TensorImpl*, at::Tensor>, 8> made_;
};

// Grows a written argument's storage to hold `meta` (its data kept).
void reserve_for(const at::Tensor& dev, const MetaTensor& meta) {
  const size_t needed = meta.nbytes(static_cast<size_t>(dev.storage_offset()));
  c10::StorageImpl* storage = dev.storage().unsafeGetStorageImpl();
  if (storage->nbytes() < needed) resize_storage_bytes(storage, needed);
}

// Gives a written device argument the geometry the Meta kernel gave its copy
// (an out= tensor resized), as the CPU kernel would have.
void take_geometry(const at::Tensor& dev, const MetaTensor& meta) {
  if (!dev.defined() || (dev.sizes().equals(meta.sizes) && dev.strides().equals(meta.strides))) return;
  reserve_for(dev, meta);
  dev.unsafeGetTensorImpl()->set_sizes_and_strides(meta.sizes, meta.strides, dev.storage_offset());
}

// Describes a call for the memo of its Meta kernel: everything a Meta kernel
// reads (operands' metadata and identity, the other arguments, the default
// dtype). False when an argument cannot be described.
bool describe_call(const c10::FunctionSchema& schema, const c10::IValue* args, structured::MemoKey& key) {
  key.push_back(static_cast<int64_t>(c10::typeMetaToScalarType(c10::get_default_dtype())));
  c10::SmallVector<const c10::TensorImpl*, 8> seen;
  auto tensor = [&](const at::Tensor& t) {
    if (!t.defined()) {
      key.push_back(-1);
      return;
    }
    size_t index = 0;
    while (index < seen.size() && seen[index] != t.unsafeGetTensorImpl()) ++index;
    if (index == seen.size()) seen.push_back(t.unsafeGetTensorImpl());
    key.push_back(static_cast<int64_t>(index));
    structured::memo_describe(t, key);
  };
  auto bits = [](double d) {
    int64_t b = 0;
    std::memcpy(&b, &d, sizeof b);
    return b;
  };
  for (size_t i = 0; i < schema.arguments().size(); ++i) {
    const c10::IValue& v = args[i];
    if (is_generator_argument(schema.arguments()[i])) {
      key.push_back(1);
    } else if (v.isTensor()) {
      key.push_back(2);
      tensor(v.toTensor());
    } else if (v.isTensorList()) {
      key.append({3, static_cast<int64_t>(v.toTensorList().size())});
      for (const at::Tensor& t : v.toTensorList()) tensor(t);
    } else if (v.isOptionalTensorList()) {
      key.append({4, static_cast<int64_t>(v.toOptionalTensorList().size())});
      for (const std::optional<at::Tensor>& t : v.toOptionalTensorList()) tensor(t ? *t : at::Tensor());
    } else if (v.isNone()) {
      key.push_back(5);
    } else if (v.isBool()) {
      key.append({6, v.toBool() ? 1 : 0});
    } else if (v.isInt()) {
      key.append({7, v.toInt()});
    } else if (v.isDouble()) {
      key.append({8, bits(v.toDouble())});
    } else if (v.isComplexDouble()) {
      const c10::complex<double> c = v.toComplexDouble();
      key.append({9, bits(c.real()), bits(c.imag())});
    } else if (v.isString()) {
      const std::string_view text = v.toStringView();
      key.append({10, static_cast<int64_t>(text.size())});
      for (const char ch : text) key.push_back(ch);
    } else if (v.isIntList()) {
      const auto list = v.toIntList();
      key.append({11, static_cast<int64_t>(list.size())});
      for (const int64_t x : list) key.push_back(x);
    } else if (v.isDoubleList()) {
      const auto list = v.toDoubleList();
      key.append({12, static_cast<int64_t>(list.size())});
      for (const double x : list) key.push_back(bits(x));
    } else if (v.isBoolList()) {
      const auto list = v.toBoolList();
      key.append({13, static_cast<int64_t>(list.size())});
      for (const bool x : list) key.push_back(x ? 1 : 0);
    } else if (v.isDevice()) {
      key.append({14, static_cast<int64_t>(v.toDevice().type()), v.toDevice().index()});
    } else {
      return false;
    }
  }
  return true;
}

// The results of a waited call, for the host to check against the outputs it
// allocated and to read host values from.
struct CallReturns {
  torch::jit::Stack returns;
  std::vector<MetaValue> written;  // the written arguments as the CPU kernel left them
};

// The queued CPU call: its arguments as deferred tensors and values.
struct QueuedCall {
  struct Argument {
    enum class Kind : uint8_t { Value, Tensor, TensorList, OptionalTensorList } kind = Kind::Value;
    uint32_t begin = 0, end = 0;  // tensor kinds: their entries in `refs`
    c10::IValue value;            // Value
  };
  // A fresh return and the outputs allocated for it (entries of `refs`).
  struct Fresh {
    size_t index = 0;
    bool list = false;
    uint32_t begin = 0, end = 0;
  };

  c10::OperatorHandle op;
  std::vector<Argument> args;
  std::vector<Fresh> fresh;
  std::vector<int32_t> refs;  // indices into `tensors`; -1: none
  std::vector<DeferredTensor> tensors;
  std::vector<uint32_t> written;  // indices of the written arguments in `args`
  std::shared_ptr<CallReturns> returns;  // waited calls only

  void operator()() const {
    kernels::CpuViewSet set;
    std::vector<at::Tensor> cpu;
    cpu.reserve(tensors.size());
    for (const DeferredTensor& t : tensors) cpu.push_back(t.view(set));
    auto cpu_of = [&](uint32_t entry) { return refs[entry] < 0 ? at::Tensor() : cpu[refs[entry]]; };

    torch::jit::Stack stack;
    stack.reserve(args.size());
    for (const Argument& a : args) {
      switch (a.kind) {
        case Argument::Kind::Value:
          stack.push_back(a.value);
          break;
        case Argument::Kind::Tensor:
          stack.emplace_back(cpu_of(a.begin));
          break;
        case Argument::Kind::TensorList: {
          c10::List<at::Tensor> list;
          list.reserve(a.end - a.begin);
          for (uint32_t i = a.begin; i < a.end; ++i) list.push_back(cpu_of(i));
          stack.emplace_back(std::move(list));
          break;
        }
        case Argument::Kind::OptionalTensorList: {
          c10::List<std::optional<at::Tensor>> list;
          list.reserve(a.end - a.begin);
          for (uint32_t i = a.begin; i < a.end; ++i) {
            list.push_back(refs[i] < 0 ? std::nullopt : std::optional<at::Tensor>(cpu[refs[i]]));
          }
          stack.emplace_back(std::move(list));
          break;
        }
      }
    }
    op.redispatchBoxed(c10::DispatchKeySet(c10::DispatchKey::CPU), &stack);
    set.check_unmoved();

    for (const Fresh& f : fresh) {
      const c10::IValue& result = stack[f.index];
      if (f.list) {
        const auto results = result.toTensorVector();
        if (results.size() != f.end - f.begin) {
          TORCH_CHECK(returns, op.schema().name(), ": the CPU kernel returned ", results.size(),
                      " tensors, its Meta kernel ", f.end - f.begin);
          continue;  // the waiting host takes the CPU kernel's results
        }
        for (uint32_t i = f.begin; i < f.end; ++i) put(results[i - f.begin], cpu_of(i));
      } else if (result.isTensor()) {
        put(result.toTensor(), cpu_of(f.begin));
      }
    }
    if (returns) {
      for (const uint32_t w : written) {
        const Argument& a = args[w];
        returns->written.push_back(a.kind == Argument::Kind::Tensor ? MetaValue::of(cpu_of(a.begin))
                                                                    : MetaValue{});
      }
      returns->returns = std::move(stack);
    }
  }

  void put(const at::Tensor& result, const at::Tensor& out) const {
    if (!result.defined() || !out.defined()) return;
    if (!same_geometry(result, out)) {
      if (returns) return;  // the waiting host takes the CPU kernel's result
      TORCH_CHECK(result.sizes().equals(out.sizes()) && result.dtype() == out.dtype(), op.schema().name(),
                  ": the CPU kernel's result (", geometry_of(result), ") is not what its Meta kernel gave (",
                  geometry_of(out), ")");
    }
    out.copy_(result);
  }
};

// Builds a QueuedCall's tensor arguments.
class CallBuilder {
 public:
  CallBuilder(QueuedCall& call, srStream_t stream) : call_(call), stream_(stream) {}

  // An argument, or an output allocated on the host; undefined: none.
  void tensor(const at::Tensor& t) { call_.refs.push_back(t.defined() ? index_of(t) : -1); }
  uint32_t mark() const { return static_cast<uint32_t>(call_.refs.size()); }

 private:
  int32_t index_of(const at::Tensor& t) {
    for (size_t i = 0; i < impls_.size(); ++i) {
      if (impls_[i] == t.unsafeGetTensorImpl()) return static_cast<int32_t>(i);
    }
    impls_.push_back(t.unsafeGetTensorImpl());
    if (t.device().is_privateuseone()) {
      call_.tensors.emplace_back(t, stream_);
    } else {
      // A CPU operand (a scalar, an index) is read when the work runs: copy
      // it now, as CUDA copies it to the device, so the caller may reuse it.
      at::Tensor copy = t.clone();
      if (t.unsafeGetTensorImpl()->is_wrapped_number()) copy.unsafeGetTensorImpl()->set_wrapped_number(true);
      call_.tensors.emplace_back(copy, stream_);
    }
    return static_cast<int32_t>(impls_.size() - 1);
  }

  QueuedCall& call_;
  srStream_t stream_;
  c10::SmallVector<const c10::TensorImpl*, 8> impls_;
};

bool writes_cpu_tensor(const c10::IValue& v) {
  auto on_cpu = [](const at::Tensor& t) { return t.defined() && !t.device().is_privateuseone(); };
  if (v.isTensor()) return on_cpu(v.toTensor());
  if (v.isTensorList()) {
    for (const at::Tensor& t : v.toTensorList()) {
      if (on_cpu(t)) return true;
    }
  }
  return false;
}

}  // namespace

// The last outcomes of an operator's Meta kernel. A Meta kernel is a pure
// function of what describe_call() keys; some are Python decompositions that
// cost a millisecond a call (huber_loss), which a loop would pay every step.
class QueuedOperator::MetaMemo {
 public:
  std::shared_ptr<const MetaOutcome> find(const structured::MemoKey& key) {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [k, outcome] : entries_) {
      if (outcome && k == key) return outcome;
    }
    return nullptr;
  }
  // Adds an outcome, or replaces the one under the same key (verified now).
  void insert(const structured::MemoKey& key, std::shared_ptr<const MetaOutcome> outcome) {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [k, o] : entries_) {
      if (o && k == key) {
        o = std::move(outcome);
        return;
      }
    }
    entries_[next_++ % entries_.size()] = {key, std::move(outcome)};
  }

 private:
  std::mutex mutex_;
  std::array<std::pair<structured::MemoKey, std::shared_ptr<const MetaOutcome>>, 16> entries_;
  size_t next_ = 0;
};

QueuedOperator::~QueuedOperator() = default;

namespace {

// Outputs of ATen ops that have no Meta kernel, as their CPU kernels shape them.
// Helpers whose outputs are written arguments their caller sized
// (cummax/cummin resize values and indices to self's shape first).
std::shared_ptr<const MetaOutcome> written_as_given(const c10::IValue* args, const QueuedOperator& queued) {
  auto outcome = std::make_shared<MetaOutcome>();
  for (size_t i : queued.written()) outcome->written.push_back(MetaValue::of(args[i]));
  return outcome;
}

// A fresh result of self's shape and dtype, contiguous (_logcumsumexp's
// empty_like(self, MemoryFormat::Contiguous)).
std::shared_ptr<const MetaOutcome> contiguous_like_self(const c10::IValue* args, const QueuedOperator&) {
  auto outcome = std::make_shared<MetaOutcome>();
  const at::Tensor& self = args[0].toTensor();
  MetaTensor result;
  result.defined = true;
  result.sizes.assign(self.sizes().begin(), self.sizes().end());
  const c10::DimVector strides = c10::contiguous_strides(self.sizes());
  result.strides.assign(strides.begin(), strides.end());
  result.dtype = self.scalar_type();
  outcome->returns.push_back(MetaValue{false, false, {result}});
  return outcome;
}

QueuedOperator::ShapeRule shape_rule_of(const c10::FunctionSchema& schema) {
  if (!schema.overload_name().empty()) return nullptr;
  if (schema.name() == "aten::_cummax_helper" || schema.name() == "aten::_cummin_helper") return &written_as_given;
  if (schema.name() == "aten::_logcumsumexp") return &contiguous_like_self;
  return nullptr;
}

}  // namespace

QueuedOperator::QueuedOperator(const c10::OperatorHandle& op)
    : shape_rule_(shape_rule_of(op.schema())), memo_(std::make_unique<MetaMemo>()) {
  const c10::FunctionSchema& schema = op.schema();
  const auto& arguments = schema.arguments();
  if (schema.name().rfind("aten::", 0) != 0) {
    // Another library's CPU kernel may be Python, which would need the GIL
    // on the device thread while the host holds it.
    take_sync_path("it is not an ATen operator");
  }
  if (shape_rule_ == nullptr && !op.hasKernelForDispatchKey(c10::DispatchKey::Meta) &&
      !op.hasKernelForDispatchKey(c10::DispatchKey::CompositeExplicitAutograd) &&
      !op.hasKernelForDispatchKey(c10::DispatchKey::CompositeExplicitAutogradNonFunctional)) {
    take_sync_path("it has no Meta kernel to size its outputs");
  }
  for (size_t i = 0; i < arguments.size(); ++i) {
    const c10::AliasInfo* alias = arguments[i].alias_info();
    if (alias != nullptr && alias->isWrite()) written_.push_back(i);
    if (arguments[i].type()->kind() == c10::TypeKind::StorageType) take_sync_path("it takes a Storage");
  }
  for (const c10::Argument& r : schema.returns()) {
    Return ret{Return::Kind::Fresh};
    if (const c10::AliasInfo* alias = r.alias_info()) {
      if (!alias->isWrite()) {
        take_sync_path("it returns a view of an argument");
      } else {
        ret.kind = Return::Kind::Argument;
        ret.argument = arguments.size();
        for (size_t i : written_) {
          if (arguments[i].alias_info()->beforeSets() == alias->beforeSets()) ret.argument = i;
        }
        if (ret.argument == arguments.size()) take_sync_path("it returns a written tensor that is not an argument");
      }
    } else if (!is_tensor_type(r.type())) {
      ret.kind = Return::Kind::HostValue;
      returns_host_value_ = true;
    }
    returns_.push_back(ret);
  }
}

std::string QueuedOperator::sync_reason() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return sync_reason_;
}

void QueuedOperator::take_sync_path(std::string reason) {
  const std::lock_guard<std::mutex> lock(mutex_);
  if (sync_only_.load(std::memory_order_relaxed)) return;
  sync_reason_ = std::move(reason);
  sync_only_.store(true, std::memory_order_release);
}

namespace {

// Runs the operator's Meta kernel over meta copies of `args`; null, with
// `reason`, if it raised or gave what the device cannot hold.
std::shared_ptr<const MetaOutcome> run_meta_kernel(const c10::OperatorHandle& op, const c10::IValue* args,
                                                   const QueuedOperator& queued, std::string& reason) {
  const auto& arguments = op.schema().arguments();
  const size_t num_args = arguments.size();
  // An out= tensor is given to it empty (unless it is an input too), so that
  // it resizes it without warning: one with elements and another shape takes
  // the synchronous path, where the CPU kernel warns in its own words.
  MetaCopies meta;
  for (size_t i = 0; i < num_args; ++i) {
    if (!arguments[i].is_out()) meta(args[i]);
  }
  torch::jit::Stack meta_stack;
  meta_stack.reserve(num_args);
  for (size_t i = 0; i < num_args; ++i) {
    const c10::IValue& v = args[i];
    if (is_generator_argument(arguments[i])) {
      meta_stack.emplace_back();
    } else if (arguments[i].is_out() && v.isTensor() && v.toTensor().defined() && !meta.made(v.toTensor())) {
      meta_stack.emplace_back(at::empty({0}, v.toTensor().options().device(c10::kMeta)));
    } else {
      meta_stack.push_back(meta(v));
    }
  }
  auto outcome = std::make_shared<MetaOutcome>();
  std::vector<c10::IValue> written;
  for (size_t i : queued.written()) written.push_back(meta_stack[i]);
  try {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    // Its warnings are the CPU kernel's too: raised again if the CPU
    // kernel's (relayed when the call waits for it) are not.
    detail::CollectWarnings collect(outcome->warnings);
    const c10::WarningUtils::WarningHandlerGuard warnings_guard(&collect);
    op.redispatchBoxed(c10::DispatchKeySet(c10::DispatchKey::Meta), &meta_stack);
  } catch (const std::exception& e) {
    // Outputs that depend on the data (nonzero, unique), or arguments the
    // CPU kernel will refuse with its own message.
    reason = "its Meta kernel raised: " + first_line(e);
    return nullptr;
  }
  TORCH_INTERNAL_ASSERT(meta_stack.size() == op.schema().returns().size(), op.schema().name(), ": expected ",
                        op.schema().returns().size(), " returns from the Meta kernel, got ", meta_stack.size());
  for (const c10::IValue& v : meta_stack) {
    const bool ok = !v.isTensor() || !v.toTensor().defined() ||
                    (v.toTensor().is_meta() && v.toTensor().layout() == c10::Layout::Strided);
    if (!ok) {
      reason = "its Meta kernel returned a " + v.toTensor().toString() + " tensor";
      return nullptr;
    }
    outcome->returns.push_back(MetaValue::of(v));
  }
  for (const c10::IValue& v : written) outcome->written.push_back(MetaValue::of(v));
  return outcome;
}

// After a waited call: the outputs take the geometry the CPU kernel gave
// them (out= tensors it resized, results whose strides the Meta kernel did
// not predict, copied into tensors of the CPU's strides), host values are
// read, and the memo (under `key`) keeps the verified outcome for later calls.
// Sizes or dtypes other than the Meta kernel's mean outputs that depend on
// the data: the operator takes the synchronous path from then on.
void learn_from_cpu(QueuedOperator& queued, const MetaOutcome& outcome, const CallReturns& cpu, c10::Device device,
                    const c10::IValue* args, std::vector<c10::IValue>& returns, const structured::MemoKey* key) {
  auto learned = std::make_shared<MetaOutcome>(outcome);
  learned->verified = true;
  std::string data_dependent;
  for (size_t k = 0; k < queued.written().size(); ++k) {
    const c10::IValue& dev = args[queued.written()[k]];
    if (!dev.isTensor() || cpu.written[k].tensors.empty()) continue;
    const MetaTensor& geometry = cpu.written[k].tensors[0];
    take_geometry(dev.toTensor(), geometry);
    learned->written[k].tensors[0] = geometry;
  }
  auto check = [&](const at::Tensor& result, at::Tensor& out, MetaTensor& learned_geometry) {
    if (result.defined() == out.defined() && (!result.defined() || same_geometry(result, out))) return;
    if (!learned_geometry.same_sizes(result)) {
      data_dependent = (result.defined() ? geometry_of(result) : "none") + " on the CPU, " +
                       (out.defined() ? geometry_of(out) : "none") + " from the Meta kernel";
    }
    learned_geometry = MetaTensor::of(result);
    out = result.defined() ? copy_result_to_device(result, device) : at::Tensor();
  };
  for (size_t j = 0; j < returns.size(); ++j) {
    const c10::IValue& result = cpu.returns[j];
    MetaValue& geometry = learned->returns[j];
    switch (queued.returns()[j].kind) {
      case QueuedOperator::Return::Kind::HostValue:
        returns[j] = result;
        break;
      case QueuedOperator::Return::Kind::Argument:
        break;
      case QueuedOperator::Return::Kind::Fresh:
        if (returns[j].isTensor()) {
          at::Tensor out = returns[j].toTensor();
          check(result.toTensor(), out, geometry.tensors.at(0));
          returns[j] = out;
        } else if (returns[j].isTensorList()) {
          std::vector<at::Tensor> outs = returns[j].toTensorVector();
          const std::vector<at::Tensor> results = result.toTensorVector();
          if (results.size() != outs.size()) {
            data_dependent = std::to_string(results.size()) + " results on the CPU, " +
                             std::to_string(outs.size()) + " from the Meta kernel";
            outs.assign(results.size(), at::Tensor());
            geometry.tensors.assign(results.size(), MetaTensor());
          }
          for (size_t k = 0; k < outs.size(); ++k) check(results[k], outs[k], geometry.tensors[k]);
          returns[j] = c10::List<at::Tensor>(outs);
        }
        break;
    }
  }
  if (!data_dependent.empty()) {
    queued.take_sync_path("its outputs' sizes depend on the data: " + data_dependent);
  } else if (key != nullptr) {
    queued.memo().insert(*key, std::move(learned));
  }
}

}  // namespace

bool queue_cpu_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack, c10::Device device,
                      QueuedOperator& queued, std::string& reason) {
  if (queued.sync_only_.load(std::memory_order_acquire)) {
    reason = queued.sync_reason();
    return false;
  }
  const c10::FunctionSchema& schema = op.schema();
  const auto& arguments = schema.arguments();
  const size_t num_args = arguments.size();
  const size_t first = stack->size() - num_args;
  auto arg = [&](size_t i) -> const c10::IValue& { return (*stack)[first + i]; };

  for (size_t i = 0; i < num_args; ++i) {
    const c10::IValue& v = arg(i);
    if (v.isStorage() || v.isObject() || v.isCapsule() || v.isFuture() || v.isStream() || v.isQuantizer() ||
        v.isSymInt() || v.isSymFloat() || v.isSymBool() || v.isPyObject()) {
      reason = "it takes a " + v.tagKind() + " argument";
      return false;
    }
  }
  for (size_t i : queued.written_) {
    if (writes_cpu_tensor(arg(i))) {
      reason = "it writes a CPU tensor";
      return false;
    }
  }

  // 1. The Meta kernel sizes the outputs, and checks the arguments, here
  // (or the memo of a run with the same arguments' metadata and values).
  structured::MemoKey key;
  const bool memoisable = describe_call(schema, &arg(0), key);
  std::shared_ptr<const MetaOutcome> outcome = memoisable ? queued.memo_->find(key) : nullptr;
  if (!outcome) {
    outcome = queued.shape_rule_ != nullptr ? queued.shape_rule_(&arg(0), queued)
                                            : run_meta_kernel(op, &arg(0), queued, reason);
    if (!outcome) return false;
    if (memoisable) queued.memo_->insert(key, outcome);
  }

  for (size_t k = 0; k < queued.written_.size(); ++k) {
    const c10::IValue& dev = arg(queued.written_[k]);
    if (!dev.isTensor() || !dev.toTensor().defined() ||
        dev.toTensor().sizes().equals(outcome->written[k].tensors.at(0).sizes)) {
      continue;
    }
    if (!arguments[queued.written_[k]].is_out()) {
      // An in-place argument keeps its shape (CPU kernels raise otherwise; a
      // Meta kernel that resized it went through a generic out= kernel, as
      // addr_'s does).
      reason = "its Meta kernel resized an in-place argument";
      return false;
    }
    if (dev.toTensor().numel() != 0) {
      // Deprecated, and warned about in words of each CPU kernel's own.
      reason = "an out= tensor with elements is resized";
      return false;
    }
  }

  // 2. Outputs: written arguments take the Meta kernel's geometry; fresh
  // results are allocated on the device.
  const SunriseGuard guard(device);
  // The geometry the CPU kernel gives the outputs is known once a call with
  // these arguments ran it. Until then, the call waits, and the CPU kernel
  // resizes its out= tensors itself.
  const bool verified = memoisable && outcome->verified;
  for (size_t k = 0; k < queued.written_.size(); ++k) {
    const c10::IValue& dev = arg(queued.written_[k]);
    const std::vector<MetaTensor>& metas = outcome->written[k].tensors;
    if (dev.isTensor()) {
      // An out= tensor of the right shape keeps its strides, as on the CPU.
      const at::Tensor& t = dev.toTensor();
      if (!arguments[queued.written_[k]].is_out()) {
        take_geometry(t, metas.at(0));
      } else if (!t.sizes().equals(metas.at(0).sizes)) {
        verified ? take_geometry(t, metas.at(0)) : reserve_for(t, metas.at(0));
      }
    } else if (dev.isTensorList()) {
      const auto devs = dev.toTensorVector();
      for (size_t j = 0; j < devs.size() && j < metas.size(); ++j) take_geometry(devs[j], metas[j]);
    }
  }
  std::vector<c10::IValue> returns(queued.returns_.size());
  for (size_t j = 0; j < returns.size(); ++j) {
    const QueuedOperator::Return& r = queued.returns_[j];
    const MetaValue& m = outcome->returns[j];
    if (r.kind == QueuedOperator::Return::Kind::Argument) {
      returns[j] = arg(r.argument);
    } else if (r.kind == QueuedOperator::Return::Kind::Fresh && !m.is_none) {
      if (m.is_list) {
        c10::List<at::Tensor> list;
        for (const MetaTensor& t : m.tensors) list.push_back(t.allocate(device));
        returns[j] = std::move(list);
      } else {
        returns[j] = m.tensors.at(0).allocate(device);
      }
    }
  }

  // 3. The CPU kernel, queued.
  const SunriseStream stream = getCurrentSunriseStream(device.index());
  QueuedCall call{op};
  CallBuilder build(call, stream.handle());
  call.args.resize(num_args);
  for (size_t i = 0; i < num_args; ++i) {
    const c10::IValue& v = arg(i);
    QueuedCall::Argument& a = call.args[i];
    a.begin = build.mark();
    if (v.isTensor() && v.toTensor().defined()) {
      a.kind = QueuedCall::Argument::Kind::Tensor;
      build.tensor(v.toTensor());
    } else if (v.isTensorList()) {
      a.kind = QueuedCall::Argument::Kind::TensorList;
      for (const at::Tensor& t : v.toTensorList()) build.tensor(t);
    } else if (v.isOptionalTensorList()) {
      a.kind = QueuedCall::Argument::Kind::OptionalTensorList;
      for (const std::optional<at::Tensor>& t : v.toOptionalTensorList()) build.tensor(t ? *t : at::Tensor());
    } else if (is_generator_argument(arguments[i])) {
      a.value = cpu_generator_for(v, device.index(), schema.name());
    } else if (v.isDevice() && v.toDevice().is_privateuseone()) {
      a.value = c10::Device(c10::kCPU);
    } else {
      a.value = v;
    }
    a.end = build.mark();
  }
  for (size_t j = 0; j < returns.size(); ++j) {
    if (queued.returns_[j].kind != QueuedOperator::Return::Kind::Fresh) continue;
    QueuedCall::Fresh f{j, returns[j].isTensorList(), build.mark(), 0};
    if (f.list) {
      for (const at::Tensor& t : returns[j].toTensorList()) build.tensor(t);
    } else if (returns[j].isTensor()) {
      build.tensor(returns[j].toTensor());
    }
    f.end = build.mark();
    call.fresh.push_back(f);
  }
  for (size_t i : queued.written_) call.written.push_back(static_cast<uint32_t>(i));

  // A call waits (its CPU kernel's errors arrive here) until its outputs'
  // geometry is verified; a call returning a host value always waits.
  const bool wait = queued.returns_host_value_ || !verified;
  if (wait) {
    const std::string what = "operator '" + schema.operator_name().name + "' (through the CPU fallback, " +
                             (queued.returns_host_value_ ? "returning a value to the host)"
                                                         : "first run with these shapes, checked on the host)");
    before_host_wait(stream, what.c_str(),
                     queued.returns_host_value_
                         ? "move it out of the captured region"
                         : "run the captured code once before capturing (warm-up), as for CUDA graphs");
  }
  if (!wait) {
    for (const c10::Warning& warning : outcome->warnings) c10::warn(warning);
    launch_task(stream, std::move(call));
  } else {
    auto cpu = std::make_shared<CallReturns>();
    call.returns = cpu;
    auto result = std::make_shared<detail::CallResult>();
    launch_task(stream, std::move(call), result);
    // A call that returns a host value has none to return after an error.
    if (wait_for_checked_launch(stream, *result, /*index_errors_async=*/!queued.returns_host_value_)) {
      learn_from_cpu(queued, *outcome, *cpu, device, &arg(0), returns, memoisable ? &key : nullptr);
    }
  }
  torch::jit::drop(*stack, num_args);
  for (c10::IValue& r : returns) stack->push_back(std::move(r));
  return true;
}

}  // namespace torch_sunrise::aten
