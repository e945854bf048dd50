// Dev harness for native/io/pth: loads every fixture checkpoint and checks keys (order, shapes,
// dtypes) against test/fixtures/state-dict-keys.json and values against the procedural
// weights; writes .pth files and has torch.load (Debian's /usr/bin/python3) compare them;
// feeds bad input and requires a FormatError naming the file for each, never a crash.
//
//   pth_test [REPO_ROOT]      (default: the checkout this file was compiled from)
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include <caffe2/serialize/inline_container.h>

#include "io/file.h"
#include "io/json.h"
#include "io/pth.h"
#include "nn/procedural.h"

namespace fs = std::filesystem;
using namespace segtool;
using io::FormatError;
using io::PyValue;

namespace {

int g_checks = 0, g_failures = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::cout << "  FAIL " << what << "\n";
  }
}

// ---------------------------------------------------------------- procedural weights (README §1)

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct KeySpec {
  std::string name;
  std::vector<int64_t> shape;
  at::ScalarType dtype;
};

std::vector<KeySpec> expected_keys(const io::JsonValue& all, const std::string& arch) {
  const io::JsonValue* list = all.find(arch);
  if (!list) throw std::runtime_error("state-dict-keys.json lacks " + arch);
  std::vector<KeySpec> out;
  for (const auto& e : list->array) {
    KeySpec k;
    k.name = e.array.at(0).string;
    for (const auto& d : e.array.at(1).array) k.shape.push_back(static_cast<int64_t>(d.number));
    const std::string& dt = e.array.at(2).string;
    k.dtype = dt == "float32" ? at::kFloat : dt == "int64" ? at::kLong : throw std::runtime_error("dtype " + dt);
    out.push_back(std::move(k));
  }
  return out;
}

// The value rules of README §1 for the key `name` (already prefixed encoder./decoder.).
at::Tensor procedural(const std::string& name, const KeySpec& spec) {
  if (ends_with(name, "num_batches_tracked")) return at::zeros(spec.shape, at::kLong);
  if (ends_with(name, "_running_iter")) return at::ones(spec.shape, at::kFloat);
  std::string hash_name = name;
  if (ends_with(name, "_tmp_running_mean")) hash_name = name.substr(0, name.size() - 17) + "running_mean";
  if (ends_with(name, "_tmp_running_var")) hash_name = name.substr(0, name.size() - 16) + "running_var";
  at::Tensor u = nn::procedural_uniform(hash_name, spec.shape);  // float64
  if (ends_with(name, "running_mean")) return (u * 0.1).to(at::kFloat);
  if (ends_with(name, "running_var")) return ((u + 1.0) * 0.25 + 1.0).to(at::kFloat);
  if (ends_with(name, "weight") && spec.shape.size() >= 2) {
    int64_t fan_in = 1;
    for (size_t d = 1; d < spec.shape.size(); ++d) fan_in *= spec.shape[d];
    return (u * std::sqrt(6.0 / static_cast<double>(fan_in))).to(at::kFloat);
  }
  if (ends_with(name, "weight")) return (u * 0.1 + 1.0).to(at::kFloat);
  if (ends_with(name, "bias")) return (u * 0.1).to(at::kFloat);
  throw std::runtime_error("no procedural rule for " + name);
}

void check_generator() {
  check(nn::fnv1a32("encoder.conv1.weight") == 0xa3378246u, "fnv1a32 test vector");
  at::Tensor u = nn::procedural_uniform("encoder.conv1.weight", {3});
  check(std::abs(u[0].item<double>() - -0.7720540752634406) < 1e-15 &&
            std::abs(u[2].item<double>() - -0.3886506464332342) < 1e-15,
        "u test vector");
  at::Tensor w = procedural("encoder.conv1.weight", {"conv1.weight", {64, 3, 3, 3}, at::kFloat});
  check(w.flatten()[0].item<float>() == -0.3639497756958008f && w.flatten()[1].item<float>() == -0.13895873725414276f,
        "conv weight test vector");
  at::Tensor b = procedural("decoder.conv_last.bias", {"conv_last.bias", {150}, at::kFloat});
  check(b[0].item<float>() == -0.07467655837535858f && b[1].item<float>() == -0.06634919345378876f,
        "bias test vector");
}

// Keys, order, shapes, dtypes and exact values of a loaded state dict.
void check_state_dict(const io::NamedTensors& got, const std::vector<KeySpec>& keys, const std::string& prefix,
                      const std::string& label) {
  check(got.size() == keys.size(), label + ": " + std::to_string(got.size()) + " tensors, expected " +
                                       std::to_string(keys.size()));
  size_t n = std::min(got.size(), keys.size());
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto& [name, t] = got[i];
    const KeySpec& spec = keys[i];
    std::string why;
    if (name != spec.name) why = "key " + name + ", expected " + spec.name;
    else if (t.sizes().vec() != spec.shape) why = "shape";
    else if (t.scalar_type() != spec.dtype) why = "dtype";
    else if (t.device() != at::kCPU) why = "device";
    else if (!t.equal(procedural(prefix + name, spec))) {
      double diff = (t.to(at::kDouble) - procedural(prefix + name, spec).to(at::kDouble)).abs().max().item<double>();
      why = "values (max abs diff " + std::to_string(diff) + ")";
    }
    if (!why.empty() && bad++ < 5) check(false, label + " [" + std::to_string(i) + "] " + spec.name + ": " + why);
  }
  check(bad == 0, label + ": " + std::to_string(bad) + " tensors differ");
}

// ---------------------------------------------------------------- helpers

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int run_python(const std::string& script) {
  std::cout.flush();
  std::fflush(stdout);
  std::string cmd = "/usr/bin/python3 -c " + shell_quote(script);
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Runs read_pth on `path`; bad input must be a FormatError whose message names the file and
// contains `expect` (when given). Returns the message.
std::string expect_format_error(const std::string& path, const std::string& label, const std::string& expect = "") {
  try {
    io::read_pth(path);
    check(false, label + ": loaded without an error");
  } catch (const FormatError& e) {
    std::string msg = e.what();
    if (std::getenv("PTH_TEST_VERBOSE")) std::cout << "    " << label << ": " << msg << "\n";
    check(msg.find(path) != std::string::npos, label + ": message does not name the file: " + msg);
    if (!expect.empty()) check(msg.find(expect) != std::string::npos, label + ": message lacks '" + expect + "': " + msg);
    return msg;
  } catch (const std::exception& e) {
    check(false, label + ": threw a non-FormatError: " + e.what());
  }
  return "";
}

// Bad input that may load (e.g. a flipped bit inside a legacy file's raw floats) or fail; it
// must never throw anything but FormatError. Returns true when it loaded.
bool load_or_format_error(const std::string& path, const std::string& label) {
  try {
    io::read_pth(path);
    return true;
  } catch (const FormatError& e) {
    std::string msg = e.what();
    check(msg.find(path) != std::string::npos, label + ": message does not name the file: " + msg);
  } catch (const std::exception& e) {
    check(false, label + ": threw a non-FormatError: " + e.what());
  }
  return false;
}

// A tiny pickle assembler for hand-made (hostile) pickles.
struct PickleBytes {
  std::vector<uint8_t> b{0x80, 0x02};
  PickleBytes& op(uint8_t o) { b.push_back(o); return *this; }
  PickleBytes& raw(const std::string& s) { b.insert(b.end(), s.begin(), s.end()); return *this; }
  PickleBytes& str(const std::string& s) {
    op('X');
    for (int k = 0; k < 4; ++k) b.push_back(static_cast<uint8_t>(s.size() >> (8 * k)));
    return raw(s);
  }
  PickleBytes& global(const std::string& module, const std::string& name) { return op('c').raw(module + "\n" + name + "\n"); }
  PickleBytes& i64(int64_t v) {
    op(0x8a).op(8);
    for (int k = 0; k < 8; ++k) b.push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * k)));
    return *this;
  }
  // _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, (size,), (1,), False, OrderedDict())
  PickleBytes& tensor(const std::string& key, int64_t numel, int64_t size, int64_t offset = 0) {
    global("torch._utils", "_rebuild_tensor_v2").op('(');
    op('(').str("storage").global("torch", "FloatStorage").str(key).str("cpu").i64(numel).op('t').op('Q');
    i64(offset).op('(').i64(size).op('t').op('(').i64(1).op('t').op(0x89);
    global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  std::vector<uint8_t> done() { op('.'); return b; }
};

// The legacy format's first three pickles (magic, protocol, sys_info), taken from a fixture.
std::vector<uint8_t> legacy_header(const std::vector<uint8_t>& legacy_file) {
  // Each of the three ends with STOP; find the third.
  size_t pos = 0;
  for (int k = 0; k < 3; ++k) {
    io::unpickle(legacy_file.data(), legacy_file.size(), pos, "header", nullptr, &pos);
  }
  return std::vector<uint8_t>(legacy_file.begin(), legacy_file.begin() + static_cast<long>(pos));
}

std::vector<uint8_t> concat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<uint8_t> zip_with_pickle(const std::vector<uint8_t>& pkl,
                                     const std::vector<std::pair<std::string, std::vector<uint8_t>>>& records = {}) {
  std::vector<uint8_t> out;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* p, size_t n) {
    out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    return n;
  });
  writer.writeRecord("data.pkl", pkl.data(), pkl.size());
  for (const auto& [name, bytes] : records) writer.writeRecord(name, bytes.data(), bytes.size());
  writer.writeEndOfFile();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path root = argc > 1 ? fs::path(argv[1]) : fs::path(__FILE__).parent_path().parent_path().parent_path();
  fs::path fixtures = root / "test/fixtures";
  char tmp_template[] = "/tmp/segtool-pth-test-XXXXXX";
  fs::path tmp = mkdtemp(tmp_template);
  auto t0 = std::chrono::steady_clock::now();

  io::JsonValue keys_json =
      io::parse_json([&] { auto b = io::read_file((fixtures / "state-dict-keys.json").string()); return std::string(b.begin(), b.end()); }(),
                     "state-dict-keys.json");
  const auto encoder_keys = expected_keys(keys_json, "mobilenetv2dilated");
  const auto decoder_keys = expected_keys(keys_json, "c1_deepsup.fc320");

  // --- 1. fixtures load to the procedural values
  std::cout << "[fixtures]\n";
  check_generator();
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(fixtures / "checkpoints"))
    if (e.is_regular_file() && e.path().extension() == ".pth") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  io::NamedTensors encoder_sd, decoder_sd;
  fs::path zip_decoder, legacy_decoder, legacy_encoder;
  for (const auto& f : files) {
    std::string label = fs::relative(f, fixtures / "checkpoints").string();
    bool encoder = f.filename().string().rfind("encoder_", 0) == 0;
    try {
      auto start = std::chrono::steady_clock::now();
      io::PthFile file = io::read_pth(f.string());
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      check(file.has_state_dict && file.state_dict_path.empty(), label + ": state dict at the root");
      check(file.root.kind == PyValue::Kind::Dict && file.root.ordered, label + ": root is an OrderedDict");
      check_state_dict(file.tensors, encoder ? encoder_keys : decoder_keys, encoder ? "encoder." : "decoder.", label);
      check(io::read_state_dict(f.string()).size() == file.tensors.size(), label + ": read_state_dict");
      std::printf("  %-36s %-6s %4zu tensors  %6.1f ms\n", label.c_str(),
                  file.format == io::PthFormat::Zip ? "zip" : "legacy", file.tensors.size(), ms);
      if (encoder) encoder_sd = file.tensors;
      else decoder_sd = file.tensors;
      if (label.rfind("zip/", 0) == 0 && !encoder) zip_decoder = f;
      if (label.rfind("legacy/", 0) == 0 && !encoder) legacy_decoder = f;
      if (label.rfind("legacy-cuda/", 0) == 0 && encoder) legacy_encoder = f;
    } catch (const std::exception& e) {
      check(false, label + ": " + e.what());
    }
  }
  check(files.size() >= 4, "found " + std::to_string(files.size()) + " fixture checkpoints, expected 4");

  // --- 2. writing: C++ round trip, then torch.load
  std::cout << "[write]\n";
  std::string dec_out = (tmp / "decoder_epoch_20.pth").string(), enc_out = (tmp / "encoder_epoch_20.pth").string();
  std::string nested_out = (tmp / "nested.pth").string(), prefixed_out = (tmp / "module.pth").string();
  try {
    io::write_pth(dec_out, decoder_sd);
    io::write_pth(enc_out, encoder_sd);
    check_state_dict(io::read_state_dict(dec_out), decoder_keys, "decoder.", "written decoder");
    check_state_dict(io::read_state_dict(enc_out), encoder_keys, "encoder.", "written encoder");

    // DataParallel-style keys: "module." is stripped on load.
    io::NamedTensors prefixed;
    for (const auto& [k, t] : decoder_sd) prefixed.emplace_back("module." + k, t);
    io::write_pth(prefixed_out, prefixed);
    check_state_dict(io::read_state_dict(prefixed_out), decoder_keys, "decoder.", "module.-prefixed decoder");

    // A nested checkpoint with every kind of value, odd tensors included.
    PyValue sd = PyValue::dict(true);
    sd.set("transposed", PyValue::from_tensor(at::arange(12, at::kFloat).reshape({3, 4}).t()));
    sd.set("half", PyValue::from_tensor(at::arange(5, at::kFloat).div(4).to(at::kHalf)));
    sd.set("bf16", PyValue::from_tensor(at::arange(5, at::kFloat).div(4).to(at::kBFloat16)));
    sd.set("double", PyValue::from_tensor(at::arange(3, at::kDouble).div(3)));
    sd.set("flags", PyValue::from_tensor(at::arange(4, at::kLong).remainder(2).to(at::kBool)));
    sd.set("bytes", PyValue::from_tensor(at::arange(250, 256, at::kLong).to(at::kByte)));
    sd.set("int32", PyValue::from_tensor(at::arange(-2, 2, at::kLong).to(at::kInt)));
    sd.set("scalar", PyValue::from_tensor(at::scalar_tensor(7, at::kLong)));
    sd.set("empty", PyValue::from_tensor(at::empty({0, 3}, at::kFloat)));
    sd.set("slice", PyValue::from_tensor(at::arange(10, at::kFloat).slice(0, 2, 8, 2)));
    PyValue root = PyValue::dict();
    root.set("epoch", PyValue::from_int(3));
    root.set("iteration", PyValue::from_int(-5));
    root.set("big", PyValue::from_int(int64_t(1) << 40));
    root.set("neg_big", PyValue::from_int(-(int64_t(1) << 40) - 1));
    root.set("int32_edge", PyValue::from_int(-2147483648LL));
    root.set("lr", PyValue::from_float(0.02));
    root.set("name", PyValue::from_string("r\xc3\xa9sum\xc3\xa9"));
    root.set("flag", PyValue::from_bool(true));
    root.set("nothing", PyValue::none());
    root.set("history", PyValue::list({PyValue::from_float(1.5), PyValue::from_float(2.5)}));
    root.set("shape", PyValue::tuple({PyValue::from_int(1), PyValue::from_int(2)}));
    root.set("long_list", PyValue::list(std::vector<PyValue>(2500, PyValue::from_int(1))));
    root.set("state_dict", sd);
    io::write_pth_value(nested_out, root);

    io::PthFile back = io::read_pth(nested_out);
    check(back.has_state_dict && back.state_dict_path == "state_dict", "nested: state dict found under state_dict");
    check(back.root.find("epoch") && back.root.find("epoch")->integer == 3, "nested: epoch");
    check(back.root.find("neg_big") && back.root.find("neg_big")->integer == -(int64_t(1) << 40) - 1, "nested: neg_big");
    check(back.root.find("int32_edge") && back.root.find("int32_edge")->integer == -2147483648LL, "nested: int32 edge");
    check(back.root.find("lr") && back.root.find("lr")->number == 0.02, "nested: lr");
    check(back.root.find("name") && back.root.find("name")->string == "r\xc3\xa9sum\xc3\xa9", "nested: name");
    check(back.root.find("long_list") && back.root.find("long_list")->items.size() == 2500, "nested: long list");
    check(back.root.find("shape") && back.root.find("shape")->kind == PyValue::Kind::Tuple, "nested: tuple");
    bool same = back.tensors.size() == sd.entries.size();
    for (size_t i = 0; same && i < back.tensors.size(); ++i) {
      const at::Tensor& a = back.tensors[i].second;
      const at::Tensor& b = sd.entries[i].second.tensor;
      same = back.tensors[i].first == sd.entries[i].first.string && a.scalar_type() == b.scalar_type() &&
             a.sizes() == b.sizes() && a.equal(b);
    }
    check(same, "nested: tensors round-trip");
    check(io::read_state_dict(nested_out, "state_dict").size() == sd.entries.size(), "read_state_dict(path, key)");
  } catch (const std::exception& e) {
    check(false, std::string("write: ") + e.what());
  }

  // torch.load (PyTorch 1.13) of what we wrote: same type, keys, order, dtypes, values.
  std::string script = R"PY(
import sys, collections, torch
dec, enc, nested, fix_dec, fix_enc = sys.argv[1:6]
def same(a, b, what):
    assert type(a) is collections.OrderedDict, (what, type(a))
    assert list(a) == list(b), what + ': keys'
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]), what + ': ' + k
for wo in (False, True):
    same(torch.load(dec, weights_only=wo), torch.load(fix_dec, map_location='cpu'), 'decoder')
    same(torch.load(enc, weights_only=wo), torch.load(fix_enc, map_location='cpu'), 'encoder')
# (1.13's weights_only unpickler lacks BINFLOAT, which torch.save itself writes for floats)
n = torch.load(nested)
assert type(n) is dict and list(n)[:3] == ['epoch', 'iteration', 'big'], list(n)
assert (n['epoch'], n['iteration'], n['big'], n['neg_big'], n['int32_edge']) == (3, -5, 2**40, -2**40 - 1, -2**31)
assert n['lr'] == 0.02 and n['name'] == 'r\u00e9sum\u00e9' and n['flag'] is True and n['nothing'] is None
assert n['history'] == [1.5, 2.5] and n['shape'] == (1, 2) and n['long_list'] == [1] * 2500
s = n['state_dict']
assert type(s) is collections.OrderedDict
exp = collections.OrderedDict(
    transposed=torch.arange(12.).reshape(3, 4).t(), half=(torch.arange(5.) / 4).half(),
    bf16=(torch.arange(5.) / 4).bfloat16(), double=torch.arange(3, dtype=torch.float64) / 3,
    flags=(torch.arange(4) % 2).bool(), bytes=torch.arange(250, 256).to(torch.uint8),
    int32=torch.arange(-2, 2).int(), scalar=torch.tensor(7), empty=torch.empty(0, 3),
    slice=torch.arange(10.)[2:8:2])
same(s, exp, 'nested state_dict')
print('  torch.load: decoder and encoder (weights_only False and True) and the nested checkpoint match')
)PY";
  script = "import sys; sys.argv = ['x', " + [&] {
    std::string a;
    for (const auto& p : {dec_out, enc_out, nested_out, zip_decoder.string(), legacy_encoder.string()})
      a += "'" + p + "', ";
    return a;
  }() + "]\n" + script;
  check(run_python(script) == 0, "torch.load of written files (see the Python traceback above)");

  // --- 3. files torch.save writes in other ways: views of shared storages, DataParallel
  // prefixes, Parameters, pickle protocols 2-5, both formats, a re-zipped (deflated) file.
  std::cout << "[torch.save variants]\n";
  std::string gen = R"PY(
import sys, collections, zipfile, torch
out, fixture = sys.argv[1:3]
base = torch.arange(10.)
grid = torch.arange(12.).reshape(3, 4)
views = collections.OrderedDict([('module.a', base), ('module.b', base[1:3]), ('module.c', grid.t()),
                                 ('module.d', grid[1]), ('module.p', torch.nn.Parameter(torch.ones(2)))])
nested = {'state_dict': views, 'epoch': 20, 'lr': 0.5, 'names': ['a', 'b'], 'pair': (1, 2)}
for proto in (2, 3, 4, 5):
    torch.save(nested, f'{out}/zip_p{proto}.pth', pickle_protocol=proto)
    torch.save(nested, f'{out}/legacy_p{proto}.pth', pickle_protocol=proto, _use_new_zipfile_serialization=False)
with zipfile.ZipFile(fixture) as src, zipfile.ZipFile(f'{out}/deflated.pth', 'w', zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        dst.writestr(info.filename, src.read(info.filename))
torch.load(f'{out}/deflated.pth')
)PY";
  gen = "import sys; sys.argv = ['x', '" + tmp.string() + "', '" + zip_decoder.string() + "']\n" + gen;
  check(run_python(gen) == 0, "python generated the torch.save variants");
  for (std::string format : {"zip", "legacy"})
    for (int proto = 2; proto <= 5; ++proto) {
      std::string label = format + " protocol " + std::to_string(proto);
      try {
        io::PthFile f = io::read_pth((tmp / (format + "_p" + std::to_string(proto) + ".pth")).string());
        check(f.state_dict_path == "state_dict" && f.tensors.size() == 5, label + ": state dict found");
        if (f.tensors.size() != 5) continue;
        const at::Tensor &a = f.tensors[0].second, &b = f.tensors[1].second, &c = f.tensors[2].second,
                         &d = f.tensors[3].second, &p = f.tensors[4].second;
        check(f.tensors[0].first == "a" && f.tensors[4].first == "p", label + ": module. stripped, order kept");
        at::Tensor grid = at::arange(12, at::kFloat).reshape({3, 4});
        check(a.equal(at::arange(10, at::kFloat)) && b.equal(at::arange(1, 3, at::kFloat)) && c.equal(grid.t()) &&
                  d.equal(grid[1]) && p.equal(at::ones({2})),
              label + ": values");
        check(c.strides() == at::IntArrayRef({1, 4}) && b.storage_offset() == 1 && d.storage_offset() == 4,
              label + ": strides and offsets kept");
        check(a.storage().data() == b.storage().data() && c.storage().data() == d.storage().data() &&
                  a.storage().data() != c.storage().data(),
              label + ": views share their storage");
        check(f.root.find("epoch")->integer == 20 && f.root.find("lr")->number == 0.5 &&
                  f.root.find("names")->items.at(1).string == "b" && f.root.find("pair")->items.size() == 2,
              label + ": other values");
      } catch (const std::exception& e) {
        check(false, label + ": " + e.what());
      }
    }
  try {
    check_state_dict(io::read_state_dict((tmp / "deflated.pth").string()), decoder_keys, "decoder.", "deflated zip");
  } catch (const std::exception& e) {
    check(false, std::string("deflated zip: ") + e.what());
  }
  std::printf("  zip and legacy at pickle protocols 2-5, views, Parameters, deflated zip: checked\n");

  // --- 4. bad input: each a FormatError naming the file, nothing else
  std::cout << "[bad input]\n";
  int bad_cases_before = g_checks;
  std::string missing = (tmp / "missing.pth").string();
  expect_format_error(missing, "missing file", "cannot open");
  std::string empty = (tmp / "empty.pth").string();
  write_bytes(empty, {});
  expect_format_error(empty, "empty file", "empty file");
  expect_format_error(tmp.string(), "a folder", "folder");
  std::string jpeg = (fixtures / "data/ADE_val_00001519.jpg").string();
  expect_format_error(jpeg, "JPEG", "JPEG");
  expect_format_error((fixtures / "data/metrics.safetensors").string(), "safetensors", "safetensors");

  std::vector<uint8_t> zip_bytes = io::read_file(zip_decoder.string());
  std::vector<uint8_t> legacy_bytes = io::read_file(legacy_decoder.string());
  std::string cut = (tmp / "cut.pth").string();
  // Truncations: a sweep through each file, and every cut within the first and last bytes.
  int truncations = 0;
  for (const auto* src : {&zip_bytes, &legacy_bytes}) {
    std::vector<size_t> cuts;
    for (size_t k = 1; k < 200; ++k) cuts.push_back(src->size() * k / 200);
    for (size_t k = 1; k < 160; ++k) cuts.push_back(k);
    for (size_t k = 1; k < 120; ++k) cuts.push_back(src->size() - k);
    for (size_t n : cuts) {
      write_bytes(cut, std::vector<uint8_t>(src->begin(), src->begin() + static_cast<long>(n)));
      expect_format_error(cut, (src == &zip_bytes ? "zip" : "legacy") + std::string(" cut at ") + std::to_string(n));
      ++truncations;
    }
  }
  std::printf("  %d truncated files rejected\n", truncations);

  // One flipped byte inside a zip record: the CRC check catches it.
  {
    std::vector<uint8_t> b = zip_bytes;
    b[b.size() / 2] ^= 0x40;
    std::string p = (tmp / "flipped.pth").string();
    write_bytes(p, b);
    expect_format_error(p, "zip with a flipped data byte", "CRC");
  }
  // Random corruption: load or FormatError, never another exception or a crash.
  {
    std::mt19937_64 rng(1234);
    int loaded = 0, rejected = 0;
    std::string p = (tmp / "fuzz.pth").string();
    for (int iter = 0; iter < 600; ++iter) {
      const auto& src = iter % 2 ? legacy_bytes : zip_bytes;
      std::vector<uint8_t> b = src;
      int flips = 1 + static_cast<int>(rng() % 4);
      // Aim most flips at the structure (pickles, headers, zip directory), not the raw floats.
      for (int k = 0; k < flips; ++k) {
        size_t region = rng() % 3;
        size_t at = region == 0 ? rng() % std::min<size_t>(b.size(), 4096)
                  : region == 1 ? b.size() - 1 - rng() % std::min<size_t>(b.size(), 4096)
                                : rng() % b.size();
        b[at] = static_cast<uint8_t>(rng());
      }
      write_bytes(p, b);
      (load_or_format_error(p, "fuzz " + std::to_string(iter)) ? loaded : rejected)++;
    }
    std::printf("  fuzz: 600 corrupted files, %d rejected, %d loaded (flips in raw data), none crashed\n", rejected, loaded);
  }

  // Forbidden globals, in every container.
  std::vector<uint8_t> header = legacy_header(legacy_bytes);
  auto evil = [] { return PickleBytes().global("builtins", "eval").str("__import__('os').system('true')").op(0x85).op('R').done(); };
  std::string p_evil = (tmp / "evil.pth").string();
  write_bytes(p_evil, evil());
  expect_format_error(p_evil, "bare pickle with builtins.eval", "refusing to unpickle builtins.eval");
  write_bytes(p_evil, concat(header, evil()));
  expect_format_error(p_evil, "legacy checkpoint with builtins.eval", "refusing to unpickle builtins.eval");
  write_bytes(p_evil, zip_with_pickle(PickleBytes().global("posix", "system").str("true").op(0x85).op('R').done()));
  expect_format_error(p_evil, "zip checkpoint with posix.system", "refusing to unpickle posix.system");
  write_bytes(p_evil, zip_with_pickle(PickleBytes().global("collections", "OrderedDict").op(')').op('R')
                                          .str("k").global("torch", "QInt8Storage").op('s').done()));
  expect_format_error(p_evil, "quantized storage", "torch.QInt8Storage");

  // Lying headers: no huge allocation, a clear error.
  std::string p_lie = (tmp / "lie.pth").string();
  write_bytes(p_lie, concat(header, PickleBytes().tensor("0", int64_t(1) << 40, 4).done()));
  expect_format_error(p_lie, "legacy storage claiming 4 TiB", "than the file holds");
  write_bytes(p_lie, zip_with_pickle(PickleBytes().tensor("0", int64_t(1) << 40, 4).done(), {{"data/0", std::vector<uint8_t>(16)}}));
  expect_format_error(p_lie, "zip storage claiming 4 TiB", "expected 4398046511104");
  write_bytes(p_lie, zip_with_pickle(PickleBytes().tensor("0", 4, 5).done(), {{"data/0", std::vector<uint8_t>(16)}}));
  expect_format_error(p_lie, "tensor larger than its storage", "runs past its storage");
  write_bytes(p_lie, zip_with_pickle(PickleBytes().tensor("0", 4, 2, 3).done(), {{"data/0", std::vector<uint8_t>(16)}}));
  expect_format_error(p_lie, "tensor offset past its storage", "runs past its storage");
  {  // (2^40,) with stride 0 over 4 elements: would be a 4 TiB .contiguous()
    PickleBytes pb;
    pb.global("torch._utils", "_rebuild_tensor_v2").op('(');
    pb.op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").i64(4).op('t').op('Q');
    pb.i64(0).op('(').i64(int64_t(1) << 40).op('t').op('(').i64(0).op('t').op(0x89);
    pb.global("collections", "OrderedDict").op(')').op('R').op('t').op('R');
    write_bytes(p_lie, zip_with_pickle(pb.done(), {{"data/0", std::vector<uint8_t>(16)}}));
    expect_format_error(p_lie, "stride-0 tensor of 2^40 elements", "elements over a storage of 4");
  }
  write_bytes(p_lie, zip_with_pickle(PickleBytes().tensor("7", 4, 4).done(), {{"data/0", std::vector<uint8_t>(16)}}));
  expect_format_error(p_lie, "missing storage record", "missing");
  // A memo index near 2^31 is just a key (no table of that size is allocated).
  write_bytes(p_lie, zip_with_pickle(PickleBytes().op('}').raw("r\xff\xff\xff\x7f").done()));
  check(load_or_format_error(p_lie, "memo index 2^31"), "memo index 2^31 loads");
  write_bytes(p_lie, zip_with_pickle(PickleBytes().op('h').op(9).done()));
  expect_format_error(p_lie, "memo get of an unknown key", "memo key 9 not found");
  write_bytes(p_lie, zip_with_pickle(PickleBytes().op('X').raw("\xff\xff\xff\x7f").raw("abc").done()));
  expect_format_error(p_lie, "string longer than the pickle", "truncated pickle");
  // A list that contains itself.
  write_bytes(p_lie, zip_with_pickle(PickleBytes().op(']').op('q').op(0).op('h').op(0).op('a').done()));
  expect_format_error(p_lie, "cyclic list", "cyclic");
  // A legacy file whose storages never follow.
  write_bytes(p_lie, std::vector<uint8_t>(legacy_bytes.begin(), legacy_bytes.begin() + 2000));
  expect_format_error(p_lie, "legacy without storages", "");
  // A zip that is not a checkpoint.
  write_bytes(p_lie, [] {
    std::vector<uint8_t> out;
    caffe2::serialize::PyTorchStreamWriter w([&](const void* p, size_t n) {
      out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
      return n;
    });
    w.writeRecord("readme.txt", "hi", 2);
    w.writeEndOfFile();
    return out;
  }());
  expect_format_error(p_lie, "zip without data.pkl", "data.pkl");
  // No state dict where one is asked for.
  try {
    io::read_state_dict(nested_out, "history");
    check(false, "read_state_dict of a list: no error");
  } catch (const FormatError& e) {
    check(std::string(e.what()).find(nested_out) != std::string::npos, "read_state_dict error names the file");
  }
  // A failed write leaves the previous file intact.
  try {
    io::NamedTensors bad = {{"x", at::ones({2}, at::kFloat)}, {"x", at::ones({2}, at::kFloat)}};
    io::write_pth(dec_out, bad);
    check(false, "duplicate keys written");
  } catch (const FormatError& e) {
    check(std::string(e.what()).find("twice") != std::string::npos, "duplicate key error");
  }
  check(io::read_state_dict(dec_out).size() == decoder_sd.size(), "previous file intact after a failed write");
  std::printf("  %d bad-input checks\n", g_checks - bad_cases_before);

  fs::remove_all(tmp);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("pth_test: %d checks, %d failed (%.1f s)\n", g_checks, g_failures, s);
  return g_failures ? 1 : 0;
}
