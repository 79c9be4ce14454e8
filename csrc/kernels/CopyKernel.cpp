// Copies involving sunrise tensors.
//
// Dense copies with matching layout and dtype are plain runtime memcpys (which
// the runtime splits across compute units). Anything else — dtype conversion,
// strides, broadcasting sources, conj/neg bits — runs ATen's CPU copy kernel as
// device work on views of device memory, in one pass without staging buffers.
//
// Host memory rules, as CUDA's: a copy from or to pageable memory has finished
// when copy_ returns; with non_blocking=True and pinned memory it is only
// queued, and the pinned block is kept from reuse until the copy has run.
#include "CopyKernel.h"
#include "CpuViews.h"

#include <torch_sunrise/SunriseEvent.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseHostAllocator.h>
#include <torch_sunrise/SunriseHostWait.h>
#include <torch_sunrise/SunriseLaunch.h>

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <ATen/ExpandUtils.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/core/LegacyTypeDispatch.h>

namespace torch_sunrise::kernels {
namespace {

bool is_memcpy_compatible(const at::Tensor& dst, const at::Tensor& src) {
  return dst.dtype() == src.dtype() && dst.sizes().equals(src.sizes()) && dst.strides().equals(src.strides()) &&
         dst.is_non_overlapping_and_dense() && dst.is_conj() == src.is_conj() && dst.is_neg() == src.is_neg();
}

size_t dense_nbytes(const at::Tensor& t) { return static_cast<size_t>(t.numel()) * t.element_size(); }

// The lowest address of a dense tensor's elements (its strides may be permuted
// but are non-negative, so data_ptr is the start of the span).
void* dense_begin(const at::Tensor& t) { return t.data_ptr(); }

class DropWarnings final : public c10::WarningHandler {
 public:
  void process(const c10::Warning& /*warning*/) override {}
};

// Runs dst.copy_(src) on CPU views as device work on `stream`. `src_host` /
// `dst_host` are CPU tensors used directly; the task owns references to every
// operand until it has run.
void enqueue_strided_copy(const SunriseStream& stream, at::Tensor dst_cpu, at::Tensor src_cpu) {
  // ATen's copy_ warns before it copies, on the calling thread (where Python
  // sees it); the device's copy_ would warn again, on the device thread.
  const bool drops_imaginary = src_cpu.is_complex() && !dst_cpu.is_complex();
  if (drops_imaginary) {
    TORCH_WARN_ONCE("Casting complex values to real discards the imaginary part");
  }
  launch_task(stream, [dst = std::move(dst_cpu), src = std::move(src_cpu), drops_imaginary]() mutable {
    if (drops_imaginary) {
      DropWarnings warned_on_the_host;
      const c10::WarningUtils::WarningHandlerGuard quiet(&warned_on_the_host);
      dst.copy_(src);
    } else {
      dst.copy_(src);
    }
  });
}

// Keeps a pinned host block from reuse until `stream` has passed this point.
void record_pinned(const at::Tensor& host, const SunriseStream& stream) {
  const c10::Storage& s = host.storage();
  getCachingHostAllocator()->record_event(s.mutable_data(), s.data_ptr().get_context(), stream.unwrap());
}

void copy_host_to_device(const at::Tensor& dst, const at::Tensor& src, bool non_blocking) {
  SunriseGuard guard(dst.device());
  const SunriseStream stream = getCurrentSunriseStream(dst.device().index());
  const bool pinned = is_pinned_ptr(src.storage().data());
  if (!(pinned && non_blocking))
    before_host_wait(stream, "a copy from CPU memory that is not pinned, or without non_blocking=True (it waits)",
                     "copy from pinned memory with non_blocking=True, or before capturing");
  if (is_memcpy_compatible(dst, src)) {
    SUNRISE_CHECK(srMemcpyAsync(dense_begin(dst), dense_begin(src), dense_nbytes(dst), srMemcpyHostToDevice,
                                stream.handle()));
  } else {
    enqueue_strided_copy(stream, cpu_view(dst), src);
  }
  if (pinned && non_blocking) {
    record_pinned(src, stream);
  } else {
    stream.synchronize();
  }
}

void copy_device_to_host(const at::Tensor& dst, const at::Tensor& src, bool non_blocking) {
  SunriseGuard guard(src.device());
  const SunriseStream stream = getCurrentSunriseStream(src.device().index());
  const bool pinned = is_pinned_ptr(dst.storage().data());
  if (!(pinned && non_blocking))
    before_host_wait(stream, "a copy to CPU memory that is not pinned, or without non_blocking=True (it waits)",
                     "copy into pinned memory with non_blocking=True, or after replaying the graph");
  if (is_memcpy_compatible(dst, src)) {
    SUNRISE_CHECK(srMemcpyAsync(dense_begin(dst), dense_begin(src), dense_nbytes(dst), srMemcpyDeviceToHost,
                                stream.handle()));
  } else {
    enqueue_strided_copy(stream, dst, cpu_view(src));
  }
  if (pinned && non_blocking) {
    record_pinned(dst, stream);
  } else {
    stream.synchronize();
  }
}

void copy_device_to_device(const at::Tensor& dst, const at::Tensor& src) {
  const c10::DeviceIndex dst_device = dst.device().index();
  const c10::DeviceIndex src_device = src.device().index();
  SunriseGuard guard(dst.device());
  const SunriseStream dst_stream = getCurrentSunriseStream(dst_device);
  if (src_device != dst_device) {
    // The copy runs on the destination's stream once the source's stream has
    // produced src (as CUDA orders peer copies).
    SunriseEvent ready;
    ready.record(getCurrentSunriseStream(src_device));
    ready.block(dst_stream);
  }
  if (is_memcpy_compatible(dst, src)) {
    SUNRISE_CHECK(
        srMemcpyAsync(dense_begin(dst), dense_begin(src), dense_nbytes(dst), srMemcpyDeviceToDevice, dst_stream.handle()));
  } else {
    enqueue_strided_copy(dst_stream, cpu_view(dst), cpu_view(src));
  }
  if (src_device != dst_device) {
    // Later work on the source's stream (e.g. overwriting src) waits for the copy.
    SunriseEvent done;
    done.record(dst_stream);
    done.block(getCurrentSunriseStream(src_device));
  }
}

}  // namespace

at::Tensor copy_from(const at::Tensor& src, const at::Tensor& dst, bool non_blocking) {
  TORCH_CHECK(dst.sizes().equals(src.sizes()) || src.numel() == 1 || dst.numel() == 0 ||
                  at::is_expandable_to(src.sizes(), dst.sizes()),
              "copy_: source of shape ", src.sizes(), " cannot be broadcast to destination of shape ", dst.sizes());
  if (dst.numel() == 0) return dst;
  // Overlap errors are raised here, on the host, as CPU and CUDA raise them.
  at::assert_no_internal_overlap(dst);
  at::assert_no_partial_overlap(dst, src);
  const bool dst_dev = dst.device().is_privateuseone();
  const bool src_dev = src.device().is_privateuseone();
  TORCH_CHECK((dst_dev || dst.device().is_cpu()) && (src_dev || src.device().is_cpu()),
              "sunrise can copy to and from cpu and sunrise tensors only, got ", src.device(), " -> ", dst.device());
  // Broadcasting is expressed by expanding the source: a zero-stride view.
  const at::Tensor source = src.sizes().equals(dst.sizes()) ? src : src.expand(dst.sizes());
  if (dst_dev && src_dev) {
    copy_device_to_device(dst, source);
  } else if (dst_dev) {
    copy_host_to_device(dst, source, non_blocking);
  } else {
    copy_device_to_host(dst, source, non_blocking);
  }
  return dst;
}

}  // namespace torch_sunrise::kernels
