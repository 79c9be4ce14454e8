#include "kernels/CompiledKernel.h"

#include <torch_sunrise/SunriseCachingAllocator.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseLaunch.h>
#include <torch_sunrise/SunriseStream.h>

#include <c10/util/SmallVector.h>

#include <optional>
#include <utility>

namespace torch_sunrise::kernels {

void launch_compiled_kernel(CompiledKernelEntry entry, const std::vector<CompiledKernelArg>& args) {
  TORCH_CHECK(entry != nullptr, "sunrise: launch of a compiled kernel without an entry point");
  std::optional<c10::DeviceIndex> device;
  for (const CompiledKernelArg& arg : args) {
    if (!arg.tensor.defined() || !arg.tensor.device().is_privateuseone()) continue;
    const c10::DeviceIndex index = arg.tensor.device().index();
    TORCH_CHECK(!device || *device == index, "sunrise: a compiled kernel got tensors on sunrise:", *device,
                " and sunrise:", index, "; all its tensors must be on one device");
    device = index;
  }
  const SunriseStream stream = getCurrentSunriseStream(device.value_or(current_device()));

  c10::SmallVector<uint64_t, 16> slots;
  c10::SmallVector<uint32_t, 16> device_slots;  // slots holding device pointers
  // CPU operands (0-dim tensors: an optimizer's step count, a learning rate)
  // are read as they are at launch, as a device copy of them would be: the
  // host may change them before the kernel runs. The task keeps its snapshot.
  // Device memory follows the caching allocator's rules, as for eager work
  // (see DeferredTensor in CpuViews.h).
  c10::SmallVector<at::Tensor, 2> host_snapshots;
  slots.reserve(args.size());
  for (const CompiledKernelArg& arg : args) {
    if (!arg.tensor.defined()) {
      slots.push_back(arg.bits);
      continue;
    }
    const at::Tensor& t = arg.tensor;
    if (t.device().is_privateuseone()) {
      slots.push_back(reinterpret_cast<uintptr_t>(t.data_ptr()));
      device_slots.push_back(static_cast<uint32_t>(slots.size() - 1));
      if (t.storage()) caching_allocator::recordUseOnStream(t.storage().data_ptr(), stream.handle());
    } else {
      TORCH_CHECK(t.device().is_cpu(), "sunrise: a compiled kernel got a tensor on ", t.device(),
                  "; it reads sunrise and CPU memory only");
      // clone() keeps the strides of a dense tensor, which the kernel indexes by.
      TORCH_CHECK(t.is_non_overlapping_and_dense(), "sunrise: a compiled kernel got a CPU tensor with ",
                  "overlapping or gapped strides; make it contiguous or move it to sunrise");
      host_snapshots.push_back(t.clone());
      slots.push_back(reinterpret_cast<uintptr_t>(host_snapshots.back().data_ptr()));
    }
  }
  launch_task(stream, [entry, slots = std::move(slots), device_slots = std::move(device_slots),
                       host_snapshots = std::move(host_snapshots)]() mutable {
    for (const uint32_t i : device_slots) {
      slots[i] = reinterpret_cast<uintptr_t>(srKernelAddress(reinterpret_cast<const void*>(slots[i])));
    }
    entry(slots.data());
  });
}

}  // namespace torch_sunrise::kernels
