// One parameter's update of torch.optim.SGD (dampening 0, no Nesterov), in PyTorch's order:
// d_p = grad + weight_decay * param; buf = d_p (first step) or momentum * buf + d_p;
// param -= lr * buf.
#pragma once
#include <ATen/core/Tensor.h>

namespace segtool::nn {

// `momentum_buffer` undefined = first step (it is created). Call without grad recording.
inline void sgd_update(at::Tensor& param, const at::Tensor& grad, at::Tensor& momentum_buffer, double lr,
                       double momentum, double weight_decay) {
  at::Tensor d_p = grad;
  if (weight_decay != 0) d_p = d_p.add(param, weight_decay);
  if (momentum != 0) {
    if (!momentum_buffer.defined()) {
      momentum_buffer = d_p.clone();
    } else {
      momentum_buffer.mul_(momentum).add_(d_p);
    }
    d_p = momentum_buffer;
  }
  param.add_(d_p, -lr);
}

}  // namespace segtool::nn
