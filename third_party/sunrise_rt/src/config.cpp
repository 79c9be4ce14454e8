// Environment parsing, done once. An invalid value does not abort: every API
// call then reports srErrorInitializationError with the reason.
#include "internal.h"

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <sstream>

namespace sunrise_rt {
namespace {

constexpr size_t kGiB = size_t{1} << 30;
constexpr size_t kDefaultMemoryCap = 16 * kGiB;

size_t host_ram_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return kDefaultMemoryCap;
  return static_cast<size_t>(pages) * static_cast<size_t>(page_size);
}

bool parse_int(const char* text, long lo, long hi, long* out) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

Config load() {
  Config c;
  std::ostringstream err;
  if (const char* s = std::getenv("SUNRISE_DEVICE_COUNT")) {
    long v = 0;
    if (parse_int(s, 1, 64, &v)) c.device_count = static_cast<int>(v);
    else err << "SUNRISE_DEVICE_COUNT='" << s << "' is not a whole number from 1 to 64. ";
  }
  // Half the host RAM at most by default: the emulated device lives in host
  // memory, and the device should report OOM before the host kernel kills us.
  c.memory_bytes = std::min(kDefaultMemoryCap, host_ram_bytes() / 2);
  if (const char* s = std::getenv("SUNRISE_DEVICE_MEMORY")) {
    size_t v = 0;
    if (parse_byte_size(s, &v) && v > 0) c.memory_bytes = v;
    else err << "SUNRISE_DEVICE_MEMORY='" << s << "' is not a size such as 16GiB or 512MiB. ";
  }
  const unsigned hw = std::thread::hardware_concurrency();
  c.compute_units = hw == 0 ? 1 : static_cast<int>(hw);
  if (const char* s = std::getenv("SUNRISE_COMPUTE_UNITS")) {
    long v = 0;
    if (parse_int(s, 1, 1024, &v)) c.compute_units = static_cast<int>(v);
    else err << "SUNRISE_COMPUTE_UNITS='" << s << "' is not a whole number from 1 to 1024. ";
  }
  if (const char* s = std::getenv("SUNRISE_LAUNCH_BLOCKING")) {
    c.launch_blocking = std::string(s) == "1";
  }
  if (const char* s = std::getenv("SUNRISE_SPIN_US")) {
    long v = 0;
    if (parse_int(s, 0, 10'000'000, &v)) c.spin_ns = int64_t{v} * 1000;
    else err << "SUNRISE_SPIN_US='" << s << "' is not a whole number of microseconds. ";
  }
  if (const char* s = std::getenv("SUNRISE_SERIAL_US")) {
    long v = 0;
    if (parse_int(s, 0, 1'000'000, &v)) c.serial_us = static_cast<int>(v);
    else err << "SUNRISE_SERIAL_US='" << s << "' is not a whole number of microseconds from 0 to 1000000. ";
  }
  if (const char* s = std::getenv("SUNRISE_MAX_QUEUED")) {
    long v = 0;
    if (parse_int(s, 1, 1'000'000, &v)) c.max_queued = v;
    else err << "SUNRISE_MAX_QUEUED='" << s << "' is not a whole number from 1 to 1000000. ";
  }
  if (const char* s = std::getenv("SUNRISE_MEMCHECK")) {
    if (std::string(s) == "1") c.memcheck = true;
    else if (std::string(s) != "0" && *s != '\0') err << "SUNRISE_MEMCHECK='" << s << "' is neither 0 nor 1. ";
  }
  c.error = err.str();
  return c;
}

}  // namespace

bool parse_byte_size(const std::string& text, size_t* out) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return false;
  double number = 0;
  try {
    number = std::stod(text.substr(0, i));
  } catch (...) {
    return false;
  }
  std::string unit;
  for (; i < text.size(); ++i) {
    if (!std::isspace(static_cast<unsigned char>(text[i])))
      unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  }
  double scale = 1;
  if (unit.empty() || unit == "b") scale = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") scale = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib") scale = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib") scale = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb" || unit == "tib") scale = 1024.0 * 1024 * 1024 * 1024;
  else return false;
  const double bytes = number * scale;
  if (!(bytes >= 0) || bytes > 1e18) return false;
  *out = static_cast<size_t>(bytes);
  return true;
}

const Config& config() {
  static const Config c = load();
  return c;
}

}  // namespace sunrise_rt
