// Procedural weights and inputs of the reference fixtures (shared/fixtures/README.md §1):
// every value is a pure function of a tensor's name, so both sides build identical weights.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/named_tensors.h"

namespace segtool::nn {

struct ModelOptions;
class SegmentationModel;

uint32_t fnv1a32(const std::string& s);
uint32_t mix32(uint32_t x);
// u_i = mix32(fnv1a32(name) ^ mix32(i)) / 2^31 - 1, in [-1, 1).
double procedural_u(uint32_t name_hash, uint32_t i);
// float64 tensor of u_0..u_{n-1} with the given shape.
at::Tensor procedural_uniform(const std::string& name, std::vector<int64_t> shape);

// Sets every tensor of `model` by the README's value rules.
void apply_procedural_weights(SegmentationModel& model);
// The whole state dict of `options`' model, by the README's value rules, in state-dict order.
io::NamedTensors procedural_state_dict(const ModelOptions& options);

// The fixtures' inputs: `input.eval` / `input.train` (float32 u) and `label.train`
// (int64 floor((u + 1) / 2 * 151) - 1).
at::Tensor procedural_input(const std::string& name, std::vector<int64_t> shape);
at::Tensor procedural_label(const std::string& name, std::vector<int64_t> shape);

}  // namespace segtool::nn
