// OpenMP teams of threads that go to sleep.
//
// ATen's CPU kernels, the device's math library, parallelise with OpenMP, and
// every OpenMP master thread owns a team: the host thread running CPU eager
// code has one, each stream's device thread another. Idle team workers either
// spin (taking a core from the threads that have work) or, once libgomp sees
// more team threads than cores, fall asleep after a short spin, so that every
// parallel region of the other team pays for waking its workers through the
// kernel. Measured on 2 cores: an 8-layer MLP on sunrise went from 147 to
// ~400 µs per forward after the same process had run CPU eager code, and CPU
// eager slowed 6x after sunrise had run. A thread that is about to block (a
// device thread whose queue ran dry, a host thread waiting for the device)
// releases its team, as OpenMP 5's omp_pause_resource_all allows; the next
// parallel region starts a new one.
#include <sunrise_rt.h>

extern "C" int omp_pause_resource_all(int kind) __attribute__((weak));

namespace torch_sunrise {
namespace {

constexpr int kOmpPauseSoft = 1;  // omp_pause_soft

void release_openmp_team() {
  // Fails harmlessly (nonzero) inside a parallel region.
  if (omp_pause_resource_all != nullptr) omp_pause_resource_all(kOmpPauseSoft);
}

const bool g_registered = [] {
  srSetSleepHook(&release_openmp_team);
  return true;
}();

}  // namespace
}  // namespace torch_sunrise
