// Fused Adam / AdamW (torch.optim's fused=True path) as one device task per
// step: every argument is updated in place, so nothing needs a shape.
#include "SunriseAsyncSupport.h"

#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

template <bool AdamW>
void fused_adam_impl(at::TensorList self, at::TensorList grads, at::TensorList exp_avgs,
                     at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                     double lr, const std::optional<at::Tensor>& lr_tensor, double beta1, double beta2,
                     double weight_decay, double eps, bool amsgrad, bool maximize,
                     const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf) {
  if (self.empty()) return;
  // Every list, not just the first parameter: optimizer state on another
  // device raises here, as it does on CUDA, instead of being read as if local.
  const c10::IListRef<at::Tensor> lists[] = {self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps};
  const c10::Device device = common_device(
      {}, {&lr_tensor, &grad_scale, &found_inf}, {&lists[0], &lists[1], &lists[2], &lists[3], &lists[4], &lists[5]},
      AdamW ? "aten::_fused_adamw_" : "aten::_fused_adam_");
  const SunriseGuard guard(device);
  const bool serial = serial_rows({self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs});
  const Capture c(device);
  c.launch([p = c(self), g = c(grads), m = c(exp_avgs), s = c(exp_avg_sqs), mx = c(max_exp_avg_sqs),
                  st = c(state_steps), lr, lr_tensor = c(lr_tensor), beta1, beta2, weight_decay, eps, amsgrad,
                  maximize, grad_scale = c(grad_scale), found_inf = c(found_inf), serial] {
    Views v;
    const SerialMathScope one_thread(serial);
    auto run = [&](auto learning_rate) {
      if constexpr (AdamW) {
        at::_fused_adamw_(v(p), v(g), v(m), v(s), v(mx), v(st), learning_rate, beta1, beta2, weight_decay, eps,
                          amsgrad, maximize, v(grad_scale), v(found_inf));
      } else {
        at::_fused_adam_(v(p), v(g), v(m), v(s), v(mx), v(st), learning_rate, beta1, beta2, weight_decay, eps,
                         amsgrad, maximize, v(grad_scale), v(found_inf));
      }
    };
    if (lr_tensor) run(v(*lr_tensor));
    else run(lr);
  });
}

template <bool AdamW>
void fused_adam(at::TensorList self, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                at::TensorList max_exp_avg_sqs, at::TensorList state_steps, double lr, double beta1, double beta2,
                double weight_decay, double eps, bool amsgrad, bool maximize,
                const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf) {
  fused_adam_impl<AdamW>(self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr, std::nullopt, beta1,
                         beta2, weight_decay, eps, amsgrad, maximize, grad_scale, found_inf);
}

template <bool AdamW>
void fused_adam_tensor_lr(at::TensorList self, at::TensorList grads, at::TensorList exp_avgs,
                          at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                          const at::Tensor& lr, double beta1, double beta2, double weight_decay, double eps,
                          bool amsgrad, bool maximize, const std::optional<at::Tensor>& grad_scale,
                          const std::optional<at::Tensor>& found_inf) {
  fused_adam_impl<AdamW>(self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, 0.0, lr, beta1, beta2,
                         weight_decay, eps, amsgrad, maximize, grad_scale, found_inf);
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_fused_adamw_", fused_adam<true>);
  m.impl("_fused_adamw_.tensor_lr", fused_adam_tensor_lr<true>);
  m.impl("_fused_adam_", fused_adam<false>);
  m.impl("_fused_adam_.tensor_lr", fused_adam_tensor_lr<false>);
}

}  // namespace torch_sunrise::aten
