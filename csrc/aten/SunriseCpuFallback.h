// The boxed CPU fallback for operators without a sunrise kernel, and its
// accounting (torch_sunrise.fallback_stats()). SunriseCpuFallback.cpp tells its
// two paths apart: queued as device work, or synchronous.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>
#include <unordered_map>

namespace torch_sunrise::aten {

enum class FallbackMode { Warn, Silent, Error };

// Initialised from SUNRISE_FALLBACK (warn | silent | error; default warn).
FallbackMode fallback_mode();
void set_fallback_mode(FallbackMode mode);

struct FallbackStat {
  // The synchronous path: calls, host time (the synchronization included),
  // and why the last call could not be queued.
  uint64_t calls = 0;
  uint64_t nanoseconds = 0;
  std::string sync_reason;
  // The queued path (the CPU kernel as device work): calls and host time.
  uint64_t queued_calls = 0;
  uint64_t queued_nanoseconds = 0;
};

// Operators that ran through the fallback since the last reset.
std::unordered_map<std::string, FallbackStat> fallback_stats();
void reset_fallback_stats();

// A Generator or Generator? argument.
bool is_generator_argument(const c10::Argument& arg);
// A CPU generator that draws the next numbers of the sunrise generator `gen`
// (a Generator, or None for the device's default), advancing it.
at::Generator cpu_generator_for(const c10::IValue& gen, c10::DeviceIndex device, const std::string& op_name);

}  // namespace torch_sunrise::aten
