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
// eager slowed 6x after sunrise had run. A host thread about to block waiting
// for the device, and a device thread with nothing queued for 100 ms
// (stream.cpp says why not sooner), release their team, as OpenMP 5's
// omp_pause_resource_all allows; the next parallel region starts a new one.
#include <torch_sunrise/SunriseMathThreads.h>

#include <sunrise_rt.h>

// Weak: resolved from the OpenMP runtime and MKL that libtorch_cpu loads.
extern "C" int omp_pause_resource_all(int kind) __attribute__((weak));
extern "C" int omp_get_max_threads() __attribute__((weak));
extern "C" void omp_set_num_threads(int n) __attribute__((weak));
// MKL's C entry point (the lower-case names are its Fortran interface, by pointer).
extern "C" int MKL_Set_Num_Threads_Local(int n) __attribute__((weak));

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

SerialMathScope::SerialMathScope(bool serial) {
  if (!serial || omp_get_max_threads == nullptr || omp_set_num_threads == nullptr) return;
  active_ = true;
  omp_threads_ = omp_get_max_threads();
  omp_set_num_threads(1);
  // MKL's thread-local setting outranks the global one torch.set_num_threads makes.
  if (MKL_Set_Num_Threads_Local != nullptr) mkl_threads_ = MKL_Set_Num_Threads_Local(1);
}

SerialMathScope::~SerialMathScope() {
  if (!active_) return;
  if (MKL_Set_Num_Threads_Local != nullptr) MKL_Set_Num_Threads_Local(mkl_threads_);
  omp_set_num_threads(omp_threads_);
}

}  // namespace torch_sunrise
