// The boxed CPU fallback for operators without a sunrise kernel, and its
// accounting (torch_sunrise.fallback_stats()).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

namespace torch_sunrise::aten {

enum class FallbackMode { Warn, Silent, Error };

// Initialised from SUNRISE_FALLBACK (warn | silent | error; default warn).
FallbackMode fallback_mode();
void set_fallback_mode(FallbackMode mode);

struct FallbackStat {
  uint64_t calls = 0;
  uint64_t nanoseconds = 0;  // host time spent in the fallback, sync included
};

std::unordered_map<std::string, FallbackStat> fallback_stats();
void reset_fallback_stats();

}  // namespace torch_sunrise::aten
