// The sunrise random generator: counter-based state (seed, offset) as CUDA's
// Philox generator keeps it, so that results depend only on the seed and on how
// many random numbers were drawn before — never on thread scheduling.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

#include <ATen/core/Generator.h>
#include <c10/core/GeneratorImpl.h>

namespace torch_sunrise {

struct TORCH_SUNRISE_API SunriseGeneratorImpl : public c10::GeneratorImpl {
  explicit SunriseGeneratorImpl(c10::DeviceIndex device_index, uint64_t seed = c10::default_rng_seed_val);
  ~SunriseGeneratorImpl() override = default;

  void set_current_seed(uint64_t seed) override;
  uint64_t current_seed() const override;
  uint64_t seed() override;
  void set_offset(uint64_t offset) override;
  uint64_t get_offset() const override;
  // State tensor: 16 bytes, seed then offset (uint8, as CUDA's).
  void set_state(const c10::TensorImpl& new_state) override;
  c10::intrusive_ptr<c10::TensorImpl> get_state() const override;

  // Reserves `increment` counter values and returns the offset to start from.
  // Callers hold mutex_.
  uint64_t philox_offset(uint64_t increment);

  // A CPU generator seeded from (seed, reserved offset): lets a CPU kernel that
  // stands in for a device kernel draw reproducible numbers from this stream.
  // Callers hold mutex_.
  at::Generator derive_cpu_generator();

  static c10::DeviceType device_type() { return c10::DeviceType::PrivateUse1; }

 private:
  SunriseGeneratorImpl* clone_impl() const override;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The default generator of a device (index -1: the current device).
TORCH_SUNRISE_API const at::Generator& getDefaultSunriseGenerator(c10::DeviceIndex device_index = -1);
TORCH_SUNRISE_API at::Generator createSunriseGenerator(c10::DeviceIndex device_index = -1);

}  // namespace torch_sunrise
