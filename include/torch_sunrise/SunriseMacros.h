// TORCH_SUNRISE_API marks what torch_sunrise._C exports to other extensions:
// the declarations of include/torch_sunrise/ (as C10_CUDA_API does for
// c10_cuda). Everything else in the module stays hidden (-fvisibility=hidden),
// so only this API is a promise.
#pragma once

#if defined(_WIN32)
#define TORCH_SUNRISE_API __declspec(dllexport)
#else
#define TORCH_SUNRISE_API __attribute__((visibility("default")))
#endif
