#include "nn/arch.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <utility>

namespace segtool::nn {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

using AliasTable = std::vector<std::pair<std::string, std::string>>;  // accepted name -> canonical

const AliasTable& encoder_table() {
  static const AliasTable t = {
      {"mobilenetv2dilated", "mobilenetv2dilated"},
      {"resnet18", "resnet18"},
      {"resnet18dilated", "resnet18dilated"},
      {"resnet50", "resnet50"},
      {"resnet50dilated", "resnet50dilated"},
      {"resnet101", "resnet101"},
      {"resnet101dilated", "resnet101dilated"},
      {"resnext101", "resnext101"},
      {"hrnetv2", "hrnetv2"},
      {"resnet50_dilated8", "resnet50dilated"},
      {"resnet50_dilated16", "resnet50dilated16"},
      {"resnet50dilated16", "resnet50dilated16"},
      {"resnet101_dilated8", "resnet101dilated"},
      {"resnet101_dilated16", "resnet101dilated16"},
      {"resnet101dilated16", "resnet101dilated16"},
      {"resnext101_dilated8", "resnext101dilated"},
      {"resnext101_dilated16", "resnext101dilated16"},
      {"resnext101dilated", "resnext101dilated"},
      {"resnext101dilated16", "resnext101dilated16"},
  };
  return t;
}

const AliasTable& decoder_table() {
  static const AliasTable t = {
      {"c1", "c1"},
      {"c1_deepsup", "c1_deepsup"},
      {"ppm", "ppm"},
      {"ppm_deepsup", "ppm_deepsup"},
      {"upernet_lite", "upernet_lite"},
      {"upernet", "upernet"},
      {"c1_bilinear", "c1"},
      {"c1_bilinear_deepsup", "c1_deepsup"},
      {"ppm_bilinear", "ppm"},
      {"ppm_bilinear_deepsup", "ppm_deepsup"},
  };
  return t;
}

std::vector<std::string> names_of(const AliasTable& table) {
  std::vector<std::string> v;
  for (const auto& [name, canonical] : table) v.push_back(name);
  return v;
}

std::string resolve(const AliasTable& table, const std::string& what, const std::string& name) {
  const std::string key = lower(name);
  for (const auto& [accepted, canonical] : table)
    if (accepted == key) return canonical;
  std::string nearest, list;
  size_t best = SIZE_MAX;
  for (const auto& [accepted, canonical] : table) {
    list += (list.empty() ? "" : ", ") + accepted;
    const size_t d = edit_distance(key, accepted);
    if (d < best) best = d, nearest = accepted;
  }
  throw std::invalid_argument("unknown " + what + " '" + name + "' (did you mean '" + nearest +
                              "'?); valid: " + list);
}

bool is_resnet_family(const std::string& e) { return e.rfind("resnet", 0) == 0 || e.rfind("resnext", 0) == 0; }

}  // namespace

const std::vector<std::string>& encoder_names() {
  static const std::vector<std::string> v = names_of(encoder_table());
  return v;
}

const std::vector<std::string>& decoder_names() {
  static const std::vector<std::string> v = names_of(decoder_table());
  return v;
}

std::string canonical_encoder(const std::string& name) { return resolve(encoder_table(), "encoder", name); }
std::string canonical_decoder(const std::string& name) { return resolve(decoder_table(), "decoder", name); }

EncoderShape encoder_shape(const std::string& e) {
  if (e == "hrnetv2") return {{720}, {4}};
  if (e == "mobilenetv2dilated") return {{24, 32, 64, 160, 320}, {4, 8, 8, 8, 8}};
  if (!is_resnet_family(e)) throw std::invalid_argument("unknown encoder: " + e);
  std::vector<int64_t> channels;
  if (e.rfind("resnet18", 0) == 0) channels = {64, 128, 256, 512};
  else channels = {256, 512, 1024, 2048};  // ResNet-50/101 (x4) and ResNeXt-101 (128 x 2)
  std::vector<int64_t> strides = {4, 8, 16, 32};
  const bool dilated16 = e.size() > 9 && e.compare(e.size() - 9, 9, "dilated16") == 0;
  if (dilated16) strides = {4, 8, 16, 16};
  else if (e.find("dilated") != std::string::npos) strides = {4, 8, 8, 8};
  return {channels, strides};
}

int64_t default_fc_dim(const std::string& encoder) {
  return encoder_shape(canonical_encoder(encoder)).channels.back();
}

int64_t output_stride(const std::string& e, const std::string& d) {
  const EncoderShape s = encoder_shape(e);
  return d.rfind("upernet", 0) == 0 ? s.strides.front() : s.strides.back();
}

std::string incompatibility(const std::string& e, const std::string& d, int64_t fc_dim) {
  const EncoderShape s = encoder_shape(e);
  const int64_t last = s.channels.back();
  if (fc_dim != last)
    return "fc_dim " + std::to_string(fc_dim) + " does not match encoder " + e + ", whose last feature map has " +
           std::to_string(last) + " channels (use fc_dim " + std::to_string(last) + ")";
  if (d.rfind("upernet", 0) == 0 && s.channels != std::vector<int64_t>{256, 512, 1024, 2048})
    return "decoder " + d + " needs a 4-stage encoder with 256, 512, 1024, 2048 channels " +
           "(resnet50*, resnet101*, resnext101*); " + e + " has a different pyramid";
  if (d.size() > 8 && d.compare(d.size() - 8, 8, "_deepsup") == 0) {
    if (s.channels.size() < 2 || s.channels[s.channels.size() - 2] * 2 != last)
      return "decoder " + d + " needs a second-to-last feature map with fc_dim/2 channels; encoder " + e +
             " has none";
    if (s.strides[s.strides.size() - 2] != s.strides.back())
      return "decoder " + d + " supervises the stride-" + std::to_string(s.strides[s.strides.size() - 2]) +
             " map against labels at stride " + std::to_string(s.strides.back()) + "; use a dilated encoder (" +
             e + "dilated)";
  }
  return {};
}

}  // namespace segtool::nn
