#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseGenerator.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/GeneratorForPrivateuseone.h>
#include <ATen/EmptyTensor.h>
#include <c10/core/TensorImpl.h>

#include <cstring>
#include <deque>
#include <mutex>

namespace torch_sunrise {
namespace {

constexpr size_t kStateBytes = 2 * sizeof(uint64_t);

// SplitMix64 finaliser: turns (seed, offset) into a well-mixed CPU seed.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

SunriseGeneratorImpl::SunriseGeneratorImpl(c10::DeviceIndex device_index, uint64_t seed)
    : c10::GeneratorImpl(c10::Device(c10::DeviceType::PrivateUse1, device_index),
                         c10::DispatchKeySet(c10::DispatchKey::PrivateUse1)),
      seed_(seed) {}

void SunriseGeneratorImpl::set_current_seed(uint64_t seed) {
  seed_ = seed;
  offset_ = 0;
}

uint64_t SunriseGeneratorImpl::current_seed() const { return seed_; }

uint64_t SunriseGeneratorImpl::seed() {
  const uint64_t s = c10::detail::getNonDeterministicRandom(/*is_cuda=*/true);
  set_current_seed(s);
  return s;
}

void SunriseGeneratorImpl::set_offset(uint64_t offset) { offset_ = offset; }
uint64_t SunriseGeneratorImpl::get_offset() const { return offset_; }

void SunriseGeneratorImpl::set_state(const c10::TensorImpl& new_state) {
  TORCH_CHECK_TYPE(new_state.dtype() == caffe2::TypeMeta::Make<uint8_t>(),
                   "RNG state must be a torch.ByteTensor, got ", new_state.dtype());
  TORCH_CHECK(new_state.numel() == static_cast<int64_t>(kStateBytes), "RNG state is wrong size: expected ",
              kStateBytes, " bytes, got ", new_state.numel());
  TORCH_CHECK(new_state.is_contiguous() && new_state.device().is_cpu(), "RNG state must be a contiguous CPU tensor");
  const auto* bytes = static_cast<const uint8_t*>(new_state.data());
  std::memcpy(&seed_, bytes, sizeof(uint64_t));
  std::memcpy(&offset_, bytes + sizeof(uint64_t), sizeof(uint64_t));
}

c10::intrusive_ptr<c10::TensorImpl> SunriseGeneratorImpl::get_state() const {
  auto state = at::detail::empty_cpu({static_cast<int64_t>(kStateBytes)}, c10::ScalarType::Byte, std::nullopt,
                                     std::nullopt, std::nullopt, std::nullopt);
  auto* bytes = static_cast<uint8_t*>(state.data_ptr());
  std::memcpy(bytes, &seed_, sizeof(uint64_t));
  std::memcpy(bytes + sizeof(uint64_t), &offset_, sizeof(uint64_t));
  return state.getIntrusivePtr();
}

PhiloxSeed SunriseGeneratorImpl::philox_seed(uint64_t increment, const SunriseStream& stream) {
  // Multiples of 4, as CUDA's Philox consumes 4 values per counter step.
  increment = ((increment + 3) / 4) * 4;
  if (const unsigned long long id = stream.capture_id()) {
    auto it = captures_.find(id);
    TORCH_CHECK(it != captures_.end(),
                "sunrise: a random op on a capturing stream draws from a generator that is not registered with the "
                "graph being captured, so it would repeat the same numbers on every replay; register it before "
                "capture (graph.register_generator_state(generator)) or use the default generator");
    const uint64_t start = it->second.intragraph;
    it->second.intragraph += increment;
    return {0, start, it->second.cell};
  }
  const uint64_t start = offset_;
  offset_ += increment;
  return {seed_, start, nullptr};
}

at::Generator SunriseGeneratorImpl::derive_cpu_generator(const SunriseStream& stream) {
  // Checked before reserving: a refused op must not move the graph's offsets.
  TORCH_CHECK(!stream.is_capturing(),
              "sunrise: this random op runs as a CPU kernel seeded when it is launched, so a graph replay would "
              "repeat its numbers; it cannot be captured (run it outside the captured region)");
  const PhiloxSeed reserved = philox_seed(4, stream);
  return at::detail::createCPUGenerator(mix(reserved.seed ^ mix(reserved.offset)));
}

void SunriseGeneratorImpl::capture_prologue(unsigned long long capture_id, const uint64_t* cell) {
  std::lock_guard<std::mutex> lock(mutex_);
  captures_[capture_id] = CaptureCell{cell, 0};
}

uint64_t SunriseGeneratorImpl::capture_epilogue(unsigned long long capture_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = captures_.find(capture_id);
  if (it == captures_.end()) return 0;
  const uint64_t increment = it->second.intragraph;
  captures_.erase(it);
  return increment;
}

std::pair<uint64_t, uint64_t> SunriseGeneratorImpl::replay_prologue(uint64_t whole_graph_increment) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t start = offset_;
  offset_ += whole_graph_increment;
  return {seed_, start};
}

SunriseGeneratorImpl* SunriseGeneratorImpl::clone_impl() const {
  auto gen = std::make_unique<SunriseGeneratorImpl>(device_.index(), seed_);
  gen->offset_ = offset_;
  return gen.release();
}

const at::Generator& getDefaultSunriseGenerator(c10::DeviceIndex device_index) {
  static std::once_flag once;
  static std::deque<at::Generator>* generators = nullptr;
  std::call_once(once, [] {
    // Leaked on purpose: generators are referenced by Python objects that can
    // outlive static destruction.
    generators = std::make_unique<std::deque<at::Generator>>().release();
    for (c10::DeviceIndex i = 0; i < device_count(); ++i) {
      // Seeded with the same default as CUDA's, so initial_seed() matches.
      generators->push_back(at::make_generator<SunriseGeneratorImpl>(i));
    }
  });
  const c10::DeviceIndex index = device_index < 0 ? current_device() : device_index;
  check_device_index(index);
  return (*generators)[static_cast<size_t>(index)];
}

at::Generator createSunriseGenerator(c10::DeviceIndex device_index) {
  const c10::DeviceIndex index = device_index < 0 ? current_device() : device_index;
  check_device_index(index);
  return at::make_generator<SunriseGeneratorImpl>(index);
}

}  // namespace torch_sunrise
