// Random-number kernels: Philox streams on the device. Each op reserves its
// counters from the generator on the host (under the generator's lock) before
// launching, so results are reproducible after re-seeding whatever the
// scheduling.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <optional>

namespace torch_sunrise::kernels {

void uniform_(const at::Tensor& self, double from, double to, std::optional<at::Generator> gen);
void normal_(const at::Tensor& self, double mean, double std, std::optional<at::Generator> gen);
// Integers drawn uniformly from [from, from + range) (range 0 means 2^64).
void random_(const at::Tensor& self, int64_t from, uint64_t range, std::optional<at::Generator> gen);
void bernoulli_(const at::Tensor& self, double p, std::optional<at::Generator> gen);
void bernoulli_(const at::Tensor& self, const at::Tensor& p, std::optional<at::Generator> gen);
at::Tensor multinomial(const at::Tensor& probs, int64_t num_samples, bool replacement,
                       std::optional<at::Generator> gen);
void randperm(int64_t n, const at::Tensor& out, std::optional<at::Generator> gen);

}  // namespace torch_sunrise::kernels
