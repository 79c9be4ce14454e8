#include "RandomKernels.h"

#include "CpuViews.h"
#include "Philox.h"

#include <torch_sunrise/SunriseGenerator.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseLaunch.h>

#include <ATen/AccumulateType.h>
#include <ATen/Dispatch_v2.h>
#include <ATen/core/DistributionsHelper.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace torch_sunrise::kernels {
namespace {

constexpr int64_t kBlockElements = int64_t{1} << 16;  // elements per launched block (a multiple of 4)

// Reserves `values` 32-bit draws from the tensor's device generator, for an
// op launched on the device's current stream.
PhiloxSeed reserve(const at::Tensor& self, std::optional<at::Generator> gen, uint64_t values) {
  const c10::DeviceIndex device = self.device().index();
  auto* impl = at::get_generator_or_default<SunriseGeneratorImpl>(gen, getDefaultSunriseGenerator(device));
  std::lock_guard<std::mutex> lock(impl->mutex_);
  return impl->philox_seed(values, getCurrentSunriseStream(device));
}

// The seed and first Philox counter of a reserved range, where it is drawn.
std::pair<uint64_t, uint64_t> counters(const PhiloxSeed& reserved) {
  const auto [seed, offset] = reserved.unpack();
  return {seed, offset / 4};
}

// Fills a dense buffer of n elements: every group of 4 words (one Philox call,
// counter base + group) becomes kPerGroup values through `Transform`.
template <typename scalar_t, typename Transform>
struct PhiloxFill {
  scalar_t* data;
  int64_t n;
  PhiloxSeed reserved;
  Transform transform;

  void operator()(uint64_t block) const {
    constexpr int64_t per = Transform::kPerGroup;
    const auto [seed, base] = counters(reserved);
    const int64_t begin = static_cast<int64_t>(block) * kBlockElements;
    const int64_t end = std::min(n, begin + kBlockElements);
    for (int64_t i = begin; i < end; i += per) {
      const auto words = Philox4x32::generate(seed, base + static_cast<uint64_t>(i / per));
      scalar_t out[4];
      transform(words, out);
      const int64_t m = std::min<int64_t>(per, end - i);
      for (int64_t k = 0; k < m; ++k) data[i + k] = out[k];
    }
  }
};

template <typename scalar_t>
struct UniformTransform {
  using acc_t = at::acc_type<scalar_t, false>;
  static constexpr int64_t kPerGroup = std::is_same_v<scalar_t, double> ? 2 : 4;
  acc_t from, range;
  scalar_t to;
  void operator()(const std::array<uint32_t, 4>& w, scalar_t* out) const {
    for (int k = 0; k < kPerGroup; ++k) {
      acc_t u;
      if constexpr (std::is_same_v<scalar_t, double>) u = uniform_double(w[2 * k], w[2 * k + 1]);
      else u = uniform_float(w[k]);
      scalar_t v = static_cast<scalar_t>(from + range * u);
      // Rounding to a narrow type can land on `to`, which [from, to) excludes.
      if (static_cast<acc_t>(v) >= static_cast<acc_t>(to) && range > 0) v = static_cast<scalar_t>(from);
      out[k] = v;
    }
  }
};

template <typename scalar_t>
struct NormalTransform {
  using acc_t = at::acc_type<scalar_t, false>;
  static constexpr int64_t kPerGroup = std::is_same_v<scalar_t, double> ? 2 : 4;
  acc_t mean, std;
  void operator()(const std::array<uint32_t, 4>& w, scalar_t* out) const {
    // Box-Muller: each pair of uniforms gives two normals.
    if constexpr (std::is_same_v<scalar_t, double>) {
      const double u1 = uniform_double_open0(w[0], w[1]);
      const double u2 = uniform_double(w[2], w[3]);
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double theta = 2.0 * M_PI * u2;
      out[0] = mean + std * r * std::cos(theta);
      out[1] = mean + std * r * std::sin(theta);
    } else {
      for (int k = 0; k < 4; k += 2) {
        const float u1 = uniform_float_open0(w[k]);
        const float u2 = uniform_float(w[k + 1]);
        const float r = std::sqrt(-2.0f * std::log(u1));
        const float theta = 2.0f * static_cast<float>(M_PI) * u2;
        out[k] = static_cast<scalar_t>(mean + std * r * std::cos(theta));
        out[k + 1] = static_cast<scalar_t>(mean + std * r * std::sin(theta));
      }
    }
  }
};

template <typename scalar_t>
struct RandomTransform {
  static constexpr int64_t kPerGroup = 2;  // two words per value: 64-bit ranges
  int64_t from;
  uint64_t range;  // 0: the full 64-bit range
  void operator()(const std::array<uint32_t, 4>& w, scalar_t* out) const {
    for (int k = 0; k < 2; ++k) {
      const uint64_t bits = (uint64_t{w[2 * k]} << 32) | w[2 * k + 1];
      const uint64_t r = range == 0 ? bits : bits % range;
      out[k] = static_cast<scalar_t>(static_cast<int64_t>(static_cast<uint64_t>(from) + r));
    }
  }
};

template <typename scalar_t>
struct BernoulliTransform {
  static constexpr int64_t kPerGroup = 4;
  float p;
  void operator()(const std::array<uint32_t, 4>& w, scalar_t* out) const {
    for (int k = 0; k < 4; ++k) out[k] = static_cast<scalar_t>(uniform_float(w[k]) < p ? 1 : 0);
  }
};

// Runs `body(dense)` on `self` when it is dense, else on a dense temporary
// that is copied into self afterwards (in stream order).
template <typename Body>
void on_dense(const at::Tensor& self, Body&& body) {
  if (self.is_non_overlapping_and_dense()) {
    body(self);
    return;
  }
  at::Tensor tmp = at::empty_like(self, at::MemoryFormat::Contiguous);
  body(tmp);
  self.copy_(tmp);
}

template <typename scalar_t, typename Transform>
void launch_fill(const at::Tensor& dense, std::optional<at::Generator> gen, Transform transform) {
  const int64_t n = dense.numel();
  const uint64_t groups = static_cast<uint64_t>((n + Transform::kPerGroup - 1) / Transform::kPerGroup);
  const PhiloxSeed reserved = reserve(dense, std::move(gen), groups * 4);
  PhiloxFill<scalar_t, Transform> fill{static_cast<scalar_t*>(srKernelAddress(dense.data_ptr())), n, reserved,
                                       transform};
  launch_blocks(getCurrentSunriseStream(dense.device().index()),
                static_cast<uint64_t>((n + kBlockElements - 1) / kBlockElements), fill);
}

}  // namespace

void uniform_(const at::Tensor& self, double from, double to, std::optional<at::Generator> gen) {
  if (self.numel() == 0) return;
  const SunriseGuard guard(self.device());
  on_dense(self, [&](const at::Tensor& dense) {
    AT_DISPATCH_V2(dense.scalar_type(), "uniform_", AT_WRAP([&] {
                     using acc_t = at::acc_type<scalar_t, false>;
                     launch_fill<scalar_t>(dense, gen,
                                           UniformTransform<scalar_t>{static_cast<acc_t>(from),
                                                                      static_cast<acc_t>(to - from),
                                                                      static_cast<scalar_t>(to)});
                   }),
                   AT_EXPAND(AT_FLOATING_TYPES), at::kHalf, at::kBFloat16);
  });
}

void normal_(const at::Tensor& self, double mean, double std, std::optional<at::Generator> gen) {
  if (self.numel() == 0) return;
  const SunriseGuard guard(self.device());
  on_dense(self, [&](const at::Tensor& dense) {
    AT_DISPATCH_V2(dense.scalar_type(), "normal_", AT_WRAP([&] {
                     using acc_t = at::acc_type<scalar_t, false>;
                     launch_fill<scalar_t>(dense, gen,
                                           NormalTransform<scalar_t>{static_cast<acc_t>(mean), static_cast<acc_t>(std)});
                   }),
                   AT_EXPAND(AT_FLOATING_TYPES), at::kHalf, at::kBFloat16);
  });
}

void random_(const at::Tensor& self, int64_t from, uint64_t range, std::optional<at::Generator> gen) {
  if (self.numel() == 0) return;
  const SunriseGuard guard(self.device());
  on_dense(self, [&](const at::Tensor& dense) {
    AT_DISPATCH_V2(dense.scalar_type(), "random_", AT_WRAP([&] {
                     launch_fill<scalar_t>(dense, gen, RandomTransform<scalar_t>{from, range});
                   }),
                   AT_EXPAND(AT_ALL_TYPES), at::kBool, at::kHalf, at::kBFloat16, AT_EXPAND(AT_BAREBONES_UNSIGNED_TYPES));
  });
}

void bernoulli_(const at::Tensor& self, double p, std::optional<at::Generator> gen) {
  if (self.numel() == 0) return;
  const SunriseGuard guard(self.device());
  on_dense(self, [&](const at::Tensor& dense) {
    AT_DISPATCH_V2(dense.scalar_type(), "bernoulli_", AT_WRAP([&] {
                     launch_fill<scalar_t>(dense, gen, BernoulliTransform<scalar_t>{static_cast<float>(p)});
                   }),
                   AT_EXPAND(AT_ALL_TYPES), at::kBool, at::kHalf, at::kBFloat16);
  });
}

void bernoulli_(const at::Tensor& self, const at::Tensor& p, std::optional<at::Generator> gen) {
  if (self.numel() == 0) return;
  const SunriseGuard guard(self.device());
  on_dense(self, [&](const at::Tensor& dense) {
    // Probabilities laid out exactly like the output, as float.
    at::Tensor probs = at::empty_like(dense, dense.options().dtype(at::kFloat));
    probs.copy_(p.expand(dense.sizes()));
    const int64_t n = dense.numel();
    const PhiloxSeed reserved = reserve(dense, gen, static_cast<uint64_t>((n + 3) / 4) * 4);
    AT_DISPATCH_V2(dense.scalar_type(), "bernoulli_", AT_WRAP([&] {
                     struct Kernel {
                       scalar_t* out;
                       const float* p;
                       int64_t n;
                       PhiloxSeed reserved;
                       void operator()(uint64_t block) const {
                         const auto [seed, base] = counters(reserved);
                         const int64_t begin = static_cast<int64_t>(block) * kBlockElements;
                         const int64_t end = std::min(n, begin + kBlockElements);
                         for (int64_t i = begin; i < end; i += 4) {
                           const auto w = Philox4x32::generate(seed, base + static_cast<uint64_t>(i / 4));
                           for (int64_t k = 0; k < 4 && i + k < end; ++k)
                             out[i + k] = static_cast<scalar_t>(uniform_float(w[k]) < p[i + k] ? 1 : 0);
                         }
                       }
                     };
                     Kernel kernel{static_cast<scalar_t*>(srKernelAddress(dense.data_ptr())),
                                   static_cast<const float*>(srKernelAddress(probs.const_data_ptr())), n, reserved};
                     launch_blocks(getCurrentSunriseStream(dense.device().index()),
                                   static_cast<uint64_t>((n + kBlockElements - 1) / kBlockElements), kernel);
                   }),
                   AT_EXPAND(AT_ALL_TYPES), at::kBool, at::kHalf, at::kBFloat16);
    // The kernel reads `probs` asynchronously; keep it alive until it ran.
    launch_task(getCurrentSunriseStream(dense.device().index()), [keep = std::move(probs)] {});
  });
}

at::Tensor multinomial(const at::Tensor& probs, int64_t num_samples, bool replacement,
                       std::optional<at::Generator> gen) {
  TORCH_CHECK(probs.dim() == 1 || probs.dim() == 2, "prob_dist must be 1 or 2 dim");
  TORCH_CHECK(at::isFloatingType(probs.scalar_type()), "multinomial only supports floating-point dtypes for input, got: ",
              probs.scalar_type());
  TORCH_CHECK(num_samples > 0, "cannot sample n_sample <= 0 samples");
  const int64_t categories = probs.size(-1);
  TORCH_CHECK(replacement || num_samples <= categories,
              "cannot sample n_sample > prob_dist.size(-1) samples without replacement");
  const SunriseGuard guard(probs.device());
  const int64_t rows = probs.dim() == 1 ? 1 : probs.size(0);
  at::Tensor result = probs.dim() == 1 ? at::empty({num_samples}, probs.options().dtype(at::kLong))
                                       : at::empty({rows, num_samples}, probs.options().dtype(at::kLong));
  if (rows == 0) return result;
  const at::Tensor p = probs.to(at::kDouble).contiguous();
  const int64_t draws_per_row = replacement ? num_samples : categories;
  const PhiloxSeed reserved = reserve(probs, std::move(gen), static_cast<uint64_t>(rows * draws_per_row) * 2);
  // One task: sampling is a sequential scan per row (cumulative sums, top-k).
  launch_task(getCurrentSunriseStream(probs.device().index()),
              [pv = cpu_view(p), out = cpu_view(result), rows, categories, num_samples, replacement, reserved] {
                const auto [seed, base] = counters(reserved);
                const double* pd = pv.const_data_ptr<double>();
                int64_t* od = out.mutable_data_ptr<int64_t>();
                std::vector<double> work(static_cast<size_t>(categories));
                std::vector<int64_t> order(static_cast<size_t>(categories));
                for (int64_t r = 0; r < rows; ++r) {
                  const double* row = pd + r * categories;
                  double total = 0;
                  for (int64_t k = 0; k < categories; ++k) {
                    TORCH_CHECK(std::isfinite(row[k]) && row[k] >= 0,
                                "multinomial: probability tensor contains either `inf`, `nan` or element < 0");
                    total += row[k];
                  }
                  TORCH_CHECK(total > 0, "multinomial: invalid multinomial distribution (sum of probabilities <= 0)");
                  // Draw d of row r: two words (64 bits) from counter stream.
                  auto draw = [&](int64_t d) {
                    const uint64_t index = static_cast<uint64_t>(r * (replacement ? num_samples : categories) + d);
                    const auto w = Philox4x32::generate(seed, base + index / 2);
                    const int lane = static_cast<int>(index % 2) * 2;
                    return std::make_pair(w[lane], w[lane + 1]);
                  };
                  if (replacement) {
                    // Inverse CDF.
                    double acc = 0;
                    for (int64_t k = 0; k < categories; ++k) work[k] = (acc += row[k]);
                    for (int64_t s = 0; s < num_samples; ++s) {
                      const auto [hi, lo] = draw(s);
                      const double u = uniform_double(hi, lo) * acc;
                      int64_t k = std::upper_bound(work.begin(), work.end(), u) - work.begin();
                      k = std::min(k, categories - 1);
                      while (k > 0 && row[k] == 0) --k;  // never return a zero-probability category
                      od[r * num_samples + s] = k;
                    }
                  } else {
                    // Exponential race: the smallest E_k / p_k are a draw without replacement.
                    for (int64_t k = 0; k < categories; ++k) {
                      const auto [hi, lo] = draw(k);
                      const double e = -std::log(uniform_double_open0(hi, lo));
                      work[k] = row[k] > 0 ? e / row[k] : std::numeric_limits<double>::infinity();
                    }
                    std::iota(order.begin(), order.end(), 0);
                    std::partial_sort(order.begin(), order.begin() + num_samples, order.end(),
                                      [&](int64_t a, int64_t b) { return work[a] < work[b] || (work[a] == work[b] && a < b); });
                    for (int64_t s = 0; s < num_samples; ++s) od[r * num_samples + s] = order[s];
                  }
                }
              });
  return result;
}

void randperm(int64_t n, const at::Tensor& out, std::optional<at::Generator> gen) {
  TORCH_CHECK(n >= 0, "n must be non-negative, got", n);
  const SunriseGuard guard(out.device());
  out.resize_({n});
  if (n == 0) return;
  const PhiloxSeed reserved = reserve(out, std::move(gen), static_cast<uint64_t>(n) * 2);
  // Sorting random 64-bit keys gives a uniform permutation (ties broken by index).
  launch_task(getCurrentSunriseStream(out.device().index()), [o = cpu_view(out), n, reserved]() mutable {
    const auto [seed, base] = counters(reserved);
    std::vector<std::pair<uint64_t, int64_t>> keyed(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const auto w = Philox4x32::generate(seed, base + static_cast<uint64_t>(i / 2));
      const int lane = static_cast<int>(i % 2) * 2;
      keyed[static_cast<size_t>(i)] = {(uint64_t{w[lane]} << 32) | w[lane + 1], i};
    }
    std::sort(keyed.begin(), keyed.end());
    AT_DISPATCH_V2(o.scalar_type(), "randperm", AT_WRAP([&] {
                     auto acc = o.accessor<scalar_t, 1>();
                     for (int64_t i = 0; i < n; ++i) acc[i] = static_cast<scalar_t>(keyed[static_cast<size_t>(i)].second);
                   }),
                   AT_EXPAND(AT_ALL_TYPES), at::kHalf, at::kBFloat16);
  });
}

}  // namespace torch_sunrise::kernels
