// The sunrise random generator: counter-based state (seed, offset) as CUDA's
// Philox generator keeps it, so that results depend only on the seed and on how
// many random numbers were drawn before — never on thread scheduling.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

#include <ATen/core/Generator.h>
#include <c10/core/GeneratorImpl.h>

#include <torch_sunrise/SunriseStream.h>

#include <unordered_map>
#include <utility>

namespace torch_sunrise {

// Where a random op finds its numbers: the generator's seed and the first
// counter value reserved for it, fixed when the op is launched; or, for an op
// captured into a graph, read when it runs from the graph's cell (the seed and
// offset the generator had when the replay was launched) plus the op's offset
// within the graph, so that every replay draws fresh numbers (as CUDA graphs
// do with Philox offsets). Trivially copyable: kernels take it by value.
struct PhiloxSeed {
  uint64_t seed = 0;
  uint64_t offset = 0;              // in 32-bit values, a multiple of 4
  const uint64_t* cell = nullptr;   // {seed, offset} of the running replay

  // (seed, offset); called where the random numbers are drawn.
  std::pair<uint64_t, uint64_t> unpack() const {
    if (cell != nullptr) return {cell[0], cell[1] + offset};
    return {seed, offset};
  }
};

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

  // Reserves `increment` counter values for an op launched on `stream`.
  // Callers hold mutex_. Raises if the stream captures into a graph this
  // generator is not registered with: its numbers would repeat on every replay.
  PhiloxSeed philox_seed(uint64_t increment, const SunriseStream& stream);

  // A CPU generator seeded from (seed, reserved offset): lets a CPU kernel that
  // stands in for a device kernel draw reproducible numbers from this stream.
  // Callers hold mutex_. Not for ops captured into a graph (it raises).
  at::Generator derive_cpu_generator(const SunriseStream& stream);

  // Graph capture (SunriseGraph). While capture `capture_id` is underway, ops
  // on its streams draw from `cell` plus their offset within the graph;
  // capture_epilogue returns the values the whole graph consumes, and
  // replay_prologue reserves them for one replay, returning the (seed,
  // offset) to write into the cell. Each takes mutex_.
  void capture_prologue(unsigned long long capture_id, const uint64_t* cell);
  uint64_t capture_epilogue(unsigned long long capture_id);
  std::pair<uint64_t, uint64_t> replay_prologue(uint64_t whole_graph_increment);

  static c10::DeviceType device_type() { return c10::DeviceType::PrivateUse1; }

 private:
  SunriseGeneratorImpl* clone_impl() const override;
  uint64_t seed_;
  uint64_t offset_ = 0;
  struct CaptureCell {
    const uint64_t* cell;
    uint64_t intragraph;  // values reserved so far by the captured ops
  };
  std::unordered_map<unsigned long long, CaptureCell> captures_;
};

// The default generator of a device (index -1: the current device).
TORCH_SUNRISE_API const at::Generator& getDefaultSunriseGenerator(c10::DeviceIndex device_index = -1);
TORCH_SUNRISE_API at::Generator createSunriseGenerator(c10::DeviceIndex device_index = -1);

}  // namespace torch_sunrise
