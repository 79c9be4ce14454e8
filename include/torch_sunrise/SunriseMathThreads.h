// How many threads a device thread's math library may use.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

namespace torch_sunrise {

// While alive (and `serial`), OpenMP regions and MKL calls made by this thread
// run on it alone. For device work whose result does not depend on the number
// of threads (MKL's products give the same bits with one thread or two), when
// a second thread would cost more than it brings: the host thread keeps a core
// busy issuing work, so a team of two on the device makes three runnable
// threads on two cores, and every parallel region then waits for a worker the
// scheduler has parked.
class TORCH_SUNRISE_API SerialMathScope {
 public:
  explicit SerialMathScope(bool serial);
  ~SerialMathScope();
  SerialMathScope(const SerialMathScope&) = delete;
  SerialMathScope& operator=(const SerialMathScope&) = delete;

 private:
  bool active_ = false;
  int omp_threads_ = 0;
  int mkl_threads_ = 0;
};

}  // namespace torch_sunrise
