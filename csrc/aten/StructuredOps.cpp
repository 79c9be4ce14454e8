#include "StructuredOps.h"

#include <torch_sunrise/SunriseFunctions.h>

#include <algorithm>

namespace torch_sunrise::aten::structured {
namespace {

struct DeviceFinder {
  const char* op_name;
  std::optional<c10::Device> device;

  void add(const at::Tensor& t) {
    if (!t.defined()) return;
    if (t.device().is_privateuseone()) {
      TORCH_CHECK(!device || *device == t.device(),
                  "Expected all tensors to be on the same device, but found at least two devices, ", *device, " and ",
                  t.device(), "! (when checking arguments for ", op_name, ")");
      device = t.device();
      return;
    }
    TORCH_CHECK(t.device().is_cpu() && t.dim() == 0,
                "Expected all tensors to be on the same device, but found at least two devices, sunrise and ",
                t.device(), "! (when checking arguments for ", op_name, ")");
  }
};

}  // namespace

c10::Device common_device(std::initializer_list<const at::Tensor*> tensors,
                          std::initializer_list<const std::optional<at::Tensor>*> optionals,
                          std::initializer_list<const c10::IListRef<at::Tensor>*> lists, const char* op_name) {
  DeviceFinder finder{op_name, std::nullopt};
  for (const at::Tensor* t : tensors) finder.add(*t);
  for (const auto* t : optionals) {
    if (t->has_value()) finder.add(**t);
  }
  for (const auto* list : lists) {
    for (const at::Tensor& t : *list) finder.add(t);
  }
  return finder.device.value_or(c10::Device(c10::DeviceType::PrivateUse1, current_device()));
}

at::Tensor& Operands::new_slot() {
  if (used_ < kInline) return inline_[used_++];
  overflow_.emplace_front(nullptr, at::Tensor());
  return overflow_.front().second;
}

const at::Tensor& Operands::hold(const at::Tensor& t) {
  if (const at::Tensor* known = view_of(t)) return *known;
  const c10::TensorImpl* key = t.unsafeGetTensorImpl();
  const bool inline_slot = used_ < kInline;
  at::Tensor& slot = new_slot();
  slot = t.defined() && t.device().is_privateuseone() ? views_.view(t) : t;
  if (inline_slot) {
    impls_[used_ - 1] = key;
  } else {
    overflow_.front().first = key;
  }
  return slot;
}

const at::Tensor* Operands::view_of(const at::Tensor& t) const {
  const c10::TensorImpl* key = t.unsafeGetTensorImpl();
  for (size_t i = 0; i < used_; ++i) {
    if (impls_[i] == key) return &inline_[i];
  }
  for (const auto& [impl, view] : overflow_) {
    if (impl == key) return &view;
  }
  return nullptr;
}

bool Operands::is_device_view(const c10::TensorImpl* view) const {
  auto made_here = [&](const at::Tensor& held) {
    return held.unsafeGetTensorImpl() == view &&
           views_.device_storage_of(held.storage().unsafeGetStorageImpl()) != nullptr;
  };
  for (size_t i = 0; i < used_; ++i) {
    if (made_here(inline_[i])) return true;
  }
  for (const auto& slot : overflow_) {
    if (made_here(slot.second)) return true;
  }
  return false;
}

bool cast_promoted(const Operands& operands, const std::vector<const c10::TensorImpl*>& promoted,
                   c10::ScalarType dtype, std::initializer_list<c10::MaybeOwned<at::Tensor>*> tensors,
                   std::initializer_list<std::optional<at::Tensor>*> optionals) {
  if (promoted.empty() || dtype == c10::ScalarType::Undefined) return false;
  auto was_promoted = [&](const at::Tensor& t) {
    if (!t.defined() || !t.device().is_privateuseone() || t.scalar_type() == dtype) return false;
    const at::Tensor* view = operands.view_of(t);
    return view != nullptr &&
           std::find(promoted.begin(), promoted.end(), view->unsafeGetTensorImpl()) != promoted.end();
  };
  bool cast = false;
  for (c10::MaybeOwned<at::Tensor>* t : tensors) {
    if (was_promoted(**t)) {
      *t = c10::MaybeOwned<at::Tensor>::owned((*t)->to(dtype));
      cast = true;
    }
  }
  for (std::optional<at::Tensor>* t : optionals) {
    if (t->has_value() && was_promoted(**t)) {
      *t = (*t)->to(dtype);
      cast = true;
    }
  }
  return cast;
}

const at::Tensor& Operands::refresh(const at::Tensor& t) {
  const at::Tensor& view = hold(t);
  views_.refresh(view, t);
  return view;
}

const std::optional<at::Tensor>& Operands::hold(const std::optional<at::Tensor>& t) {
  optionals_.push_front(t.has_value() ? std::optional<at::Tensor>(hold(*t)) : std::nullopt);
  return optionals_.front();
}

const std::vector<at::Tensor>& Operands::hold(const c10::IListRef<at::Tensor>& list) {
  std::vector<at::Tensor> views;
  views.reserve(list.size());
  for (const at::Tensor& t : list) views.push_back(hold(t));
  lists_.push_front(std::move(views));
  return lists_.front();
}

}  // namespace torch_sunrise::aten::structured
