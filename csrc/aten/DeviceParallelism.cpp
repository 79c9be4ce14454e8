#include "DeviceParallelism.h"

#include <torch_sunrise/SunriseGraph.h>

#include <ATen/Parallel.h>
#include <sunrise_rt.h>

namespace torch_sunrise::aten {
namespace {

// One-core rates measured on the 2-core development machine (torch 2.13 CPU
// kernels, AVX-512): what matters is the order of magnitude, since the
// threshold is compared with a time no finer than tens of microseconds.
// Elementwise and row-wise kernels: about 12 (softmax) to 50 (add) GB/s.
constexpr double kStreamBytesPerUs = 16e3;
// A vectorised loop's step is two vectors: at most 128 one-byte elements.
constexpr int64_t kSplitAlignment = 128;
// Products of at most 4 rows stream the matrix: 6-7 G multiply-adds/s in
// float32, bfloat16 and float16 alike, half that in float64.
constexpr double kVectorFmasPerUs = 6e3;
// Larger products: float32 35-70 G multiply-adds/s, float64 25-40, and
// bfloat16 / float16 from 6 (32x64x64) to 40.
constexpr double kMatrixFmasPerUs32 = 35e3;
constexpr double kMatrixFmasPerUs64 = 25e3;
constexpr double kMatrixFmasPerUs16 = 6e3;

// Flash attention (both products counted) with at most 4 queries per head,
// token-by-token decoding: bfloat16 / float16 1.2 G multiply-adds/s (the
// kernel converts each block to float32), float32 7; longer queries run at
// 9 and 14.
constexpr int64_t kFewQueries = 4;
constexpr double kAttentionFewFmasPerUs16 = 1.2e3;
constexpr double kAttentionFewFmasPerUs32 = 7e3;
constexpr double kAttentionFmasPerUs16 = 9e3;
constexpr double kAttentionFmasPerUs32 = 14e3;

// Where MKL's products gave the same bits with CPU eager's team as with one
// thread, scanned over m 1-129, k 1-256, n 1-200 with teams of 2 and 4
// (tests/ops/test_linear_algebra.py checks both sides of it). A vector (one
// row or one column) with any team. With a team of two, in at most 2^20
// multiply-adds (a 16x1024x1024 float32 product is not): float32 matrices of
// at most 4, exactly 8, or 12 and more rows per matrix, or fewer than 14
// columns (with 5-7 or 9-11 rows and 14 or more columns the two threads split
// the rows into blocks whose tails round differently); bfloat16 and float16
// any shape; float64 none (its differences follow no shape rule). Float32 and
// 16-bit products of at most 4 rows keep the bits at any size. With a team of
// four nearly every matrix product differs.
constexpr int64_t kInvariantRows = 4;
constexpr int64_t kInvariantFmas = int64_t{1} << 20;

bool thread_invariant_product(at::ScalarType dtype, int64_t matrix_rows, int64_t cols, int64_t fmas) {
  const int team = at::get_num_threads();
  if (team == 1 || matrix_rows == 1 || cols == 1) return true;
  if (team != 2 || !(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf)) return false;
  if (matrix_rows <= kInvariantRows) return true;
  if (fmas > kInvariantFmas) return false;
  return dtype != at::kFloat || matrix_rows == 8 || matrix_rows >= 12 || cols < 14;
}

double threshold_us() {
  srDeviceProp prop{};
  return srGetDeviceProperties(&prop, 0) == srSuccess ? prop.serialWorkUs : 0.0;
}

// True when thread-count-independent work of this estimated one-core time
// (microseconds) should run on the device thread alone.
bool serial_time(double microseconds) {
  static const double threshold = threshold_us();
  return microseconds < threshold;
}

double bytes_of(const at::Tensor& t) {
  return t.defined() ? static_cast<double>(t.numel()) * static_cast<double>(t.element_size()) : 0.0;
}

double bytes_of(std::initializer_list<const at::Tensor*> tensors) {
  double bytes = 0;
  for (const at::Tensor* t : tensors) bytes += bytes_of(*t);
  return bytes;
}

bool serial_bytes(double bytes) { return serial_time(bytes / kStreamBytesPerUs); }

}  // namespace

bool serial_elementwise(std::initializer_list<const at::Tensor*> tensors) {
  const at::Tensor& out = **(tensors.end() - 1);
  const int64_t n = out.numel();
  for (const at::Tensor* t : tensors) {
    if (t->defined() && t->numel() > 1 && !(t->is_contiguous() && t->sizes() == out.sizes())) return false;
  }
  // at::parallel_for gives each of t threads ceil(n / t) elements.
  for (int64_t threads = 2; threads <= at::get_num_threads(); ++threads) {
    if ((n + threads - 1) / threads % kSplitAlignment != 0) return false;
  }
  return serial_bytes(bytes_of(tensors));
}

bool serial_rows(std::initializer_list<const at::Tensor*> tensors) { return serial_bytes(bytes_of(tensors)); }

bool serial_rows(std::initializer_list<at::TensorList> lists) {
  double bytes = 0;
  for (at::TensorList list : lists) {
    for (const at::Tensor& t : list) bytes += bytes_of(t);
  }
  return serial_bytes(bytes);
}

bool serial_product(const at::Tensor& a, const at::Tensor& b) {
  const int64_t inner = a.dim() == 0 ? 1 : a.size(-1);
  const int64_t rows = inner == 0 ? 0 : a.numel() / inner;
  const int64_t cols = b.dim() < 2 ? 1 : b.size(-1);
  const int64_t fmas = rows * inner * cols;
  const int64_t matrix_rows = a.dim() >= 2 ? a.size(-2) : 1;
  if (!thread_invariant_product(a.scalar_type(), matrix_rows, cols, fmas)) return false;
  const bool few_rows = b.dim() >= 2 && rows <= kInvariantRows;
  // Few rows, or a matrix times a vector: the matrix streams through once.
  const bool vector = few_rows || b.dim() < 2;
  double per_us = 0;
  switch (a.scalar_type()) {
    case at::kFloat:
      per_us = vector ? kVectorFmasPerUs : kMatrixFmasPerUs32;
      break;
    case at::kDouble:
      per_us = vector ? kVectorFmasPerUs / 2 : kMatrixFmasPerUs64;
      break;
    case at::kBFloat16:
    case at::kHalf:
      per_us = vector ? kVectorFmasPerUs : kMatrixFmasPerUs16;
      break;
    default:
      return false;  // no measurement: CPU eager's team
  }
  return serial_time(static_cast<double>(fmas) / per_us);
}

bool split_matvec(const at::Tensor& a, const at::Tensor& b, const std::function<void(int64_t, int64_t)>& part) {
  if (!replaying_graph() || a.dim() != 2 || a.size(0) != 1 || b.dim() != 2 || a.scalar_type() != at::kFloat ||
      b.scalar_type() != at::kFloat || at::in_parallel_region()) {
    return false;
  }
  const int64_t threads = at::get_num_threads();
  const int64_t cols = b.size(1);
  // Slices of whole vectors (64 floats: any vector width) per thread.
  constexpr int64_t kAlign = 64;
  if (threads < 2 || cols < 2 * kAlign) return false;
  const int64_t per_thread = ((cols + threads - 1) / threads + kAlign - 1) / kAlign * kAlign;
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t first = t * per_thread;
      if (first < cols) part(first, std::min(per_thread, cols - first));
    }
  });
  return true;
}

bool serial_attention(const at::Tensor& query, const at::Tensor& key, int products) {
  const int64_t queries = query.size(-2);
  const double fmas = static_cast<double>(products) * static_cast<double>(query.numel()) *
                      static_cast<double>(key.size(-2));
  const bool few = queries <= kFewQueries;
  double per_us = 0;
  switch (query.scalar_type()) {
    case at::kFloat:
      // With one query per head, CPU eager's two threads and the device
      // thread alone can differ in the last bit; a team for such small work
      // made tiny models' decoding 4-7x slower than CPU eager (README, "Threads").
      per_us = few ? kAttentionFewFmasPerUs32 : kAttentionFmasPerUs32;
      break;
    case at::kDouble:
      per_us = (few ? kAttentionFewFmasPerUs32 : kAttentionFmasPerUs32) / 2;
      break;
    case at::kBFloat16:
    case at::kHalf:
      per_us = few ? kAttentionFewFmasPerUs16 : kAttentionFmasPerUs16;
      break;
    default:
      return false;
  }
  return serial_time(fmas / per_us);
}

}  // namespace torch_sunrise::aten
