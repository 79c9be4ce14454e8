// Storage-level helpers for sunrise tensors.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

#include <c10/core/StorageImpl.h>
#include <c10/core/TensorImpl.h>

#include <optional>

namespace torch_sunrise {

// Grows or shrinks a sunrise storage to new_bytes; the old contents are copied
// on the current stream (so pending writes to them are kept).
TORCH_SUNRISE_API void resize_storage_bytes(c10::StorageImpl* storage, size_t new_bytes);

// Resizes a sunrise tensor in place to `size` (contiguous) or to `size` with
// `stride`, growing its storage when needed, as resize_ does on CPU.
TORCH_SUNRISE_API void resize_tensor_impl(c10::TensorImpl* self, c10::IntArrayRef size,
                        std::optional<c10::IntArrayRef> stride = std::nullopt);

}  // namespace torch_sunrise
