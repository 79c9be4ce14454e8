#include "CommonDevice.h"

#include <torch_sunrise/SunriseFunctions.h>

namespace torch_sunrise::aten {
namespace {

struct DeviceFinder {
  const char* op_name;
  std::optional<c10::Device> device;

  void add(const at::Tensor& t, bool is_output = false) {
    if (!t.defined()) return;
    if (t.device().is_privateuseone()) {
      TORCH_CHECK(!device || *device == t.device(),
                  "Expected all tensors to be on the same device, but found at least two devices, ", *device, " and ",
                  t.device(), "! (when checking arguments for ", op_name, ")");
      device = t.device();
      return;
    }
    TORCH_CHECK(t.device().is_cpu() && t.dim() == 0 && !is_output,
                "Expected all tensors to be on the same device, but found at least two devices, sunrise and ",
                t.device(), "! (when checking arguments for ", op_name, ")");
  }
};

}  // namespace

c10::Device common_device(std::initializer_list<const at::Tensor*> tensors,
                          std::initializer_list<const std::optional<at::Tensor>*> optionals,
                          std::initializer_list<const c10::IListRef<at::Tensor>*> lists, const char* op_name,
                          std::initializer_list<const at::Tensor*> outputs) {
  DeviceFinder finder{op_name, std::nullopt};
  for (const at::Tensor* t : tensors) finder.add(*t);
  for (const auto* t : optionals) {
    if (t->has_value()) finder.add(**t);
  }
  for (const auto* list : lists) {
    for (const at::Tensor& t : *list) finder.add(t);
  }
  for (const at::Tensor* t : outputs) finder.add(*t, /*is_output=*/true);
  return finder.device.value_or(c10::Device(c10::DeviceType::PrivateUse1, current_device()));
}

}  // namespace torch_sunrise::aten
