// Dev harness: reads a fixture safetensors file and prints its tensors.
#include <iostream>

#include "io/safetensors.h"

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "../shared/fixtures/models/resnet18-c1.safetensors";
  auto f = segtool::io::read_safetensors(path);
  for (auto& [name, t] : f.tensors) std::cout << name << " " << t.sizes() << " " << t.scalar_type() << "\n";
  for (auto& [k, v] : f.metadata) std::cout << k << " = " << v << "\n";
  segtool::io::write_safetensors("/tmp/st_roundtrip.safetensors", f.tensors, f.metadata);
  auto g = segtool::io::read_safetensors("/tmp/st_roundtrip.safetensors");
  for (size_t i = 0; i < f.tensors.size(); ++i)
    if (!f.tensors[i].second.equal(g.tensors[i].second)) { std::cerr << "mismatch\n"; return 1; }
  std::cout << "roundtrip ok\n";
}
