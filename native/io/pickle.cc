#include "io/pickle.h"

#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <unordered_map>

namespace segtool::io {

// ---------------------------------------------------------------------------------------------
// PyValue helpers

const PyValue* PyValue::find(const std::string& key) const {
  if (kind != Kind::Dict) return nullptr;
  for (const auto& [k, v] : entries)
    if (k.kind == Kind::String && k.string == key) return &v;
  return nullptr;
}

PyValue PyValue::from_bool(bool b) {
  PyValue v;
  v.kind = Kind::Bool;
  v.boolean = b;
  return v;
}
PyValue PyValue::from_int(int64_t i) {
  PyValue v;
  v.kind = Kind::Int;
  v.integer = i;
  return v;
}
PyValue PyValue::from_float(double d) {
  PyValue v;
  v.kind = Kind::Float;
  v.number = d;
  return v;
}
PyValue PyValue::from_string(std::string s) {
  PyValue v;
  v.kind = Kind::String;
  v.string = std::move(s);
  return v;
}
PyValue PyValue::from_tensor(at::Tensor t) {
  PyValue v;
  v.kind = Kind::Tensor;
  v.tensor = std::move(t);
  return v;
}
PyValue PyValue::list(std::vector<PyValue> items) {
  PyValue v;
  v.kind = Kind::List;
  v.items = std::move(items);
  return v;
}
PyValue PyValue::tuple(std::vector<PyValue> items) {
  PyValue v;
  v.kind = Kind::Tuple;
  v.items = std::move(items);
  return v;
}
PyValue PyValue::dict(bool ordered) {
  PyValue v;
  v.kind = Kind::Dict;
  v.ordered = ordered;
  return v;
}

std::string describe(const PyValue& v) {
  switch (v.kind) {
    case PyValue::Kind::None: return "None";
    case PyValue::Kind::Bool: return "bool";
    case PyValue::Kind::Int: return "int";
    case PyValue::Kind::BigInt: return "int (beyond 64 bits)";
    case PyValue::Kind::Float: return "float";
    case PyValue::Kind::String: return "str";
    case PyValue::Kind::Bytes: return "bytes";
    case PyValue::Kind::Tuple: return "tuple of " + std::to_string(v.items.size());
    case PyValue::Kind::List: return "list of " + std::to_string(v.items.size());
    case PyValue::Kind::Dict:
      return std::string(v.ordered ? "OrderedDict" : "dict") + " of " + std::to_string(v.entries.size());
    case PyValue::Kind::Tensor: {
      std::ostringstream s;
      s << "tensor " << v.tensor.scalar_type() << " " << v.tensor.sizes();
      return s.str();
    }
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Storage classes

namespace {

struct StorageClass {
  const char* name;
  at::ScalarType dtype;
};
constexpr StorageClass kStorageClasses[] = {
    {"FloatStorage", at::kFloat},         {"DoubleStorage", at::kDouble},
    {"HalfStorage", at::kHalf},           {"BFloat16Storage", at::kBFloat16},
    {"LongStorage", at::kLong},           {"IntStorage", at::kInt},
    {"ShortStorage", at::kShort},         {"CharStorage", at::kChar},
    {"ByteStorage", at::kByte},           {"BoolStorage", at::kBool},
    {"ComplexFloatStorage", at::kComplexFloat}, {"ComplexDoubleStorage", at::kComplexDouble},
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "torch.FloatStorage" or "torch.cuda.FloatStorage" -> dtype; false when not a storage class
// this loader knows.
bool storage_dtype(const std::string& global, at::ScalarType* dtype) {
  std::string name;
  if (global.rfind("torch.cuda.", 0) == 0) name = global.substr(11);
  else if (global.rfind("torch.", 0) == 0) name = global.substr(6);
  else return false;
  for (const auto& c : kStorageClasses)
    if (name == c.name) {
      *dtype = c.dtype;
      return true;
    }
  return false;
}

}  // namespace

const char* storage_class_name(at::ScalarType dtype) {
  for (const auto& c : kStorageClasses)
    if (c.dtype == dtype) return c.name;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Unpickler

namespace {

// Pickle opcodes (Python's Lib/pickle.py names).
enum Op : uint8_t {
  MARK = '(', STOP = '.', POP = '0', POP_MARK = '1', DUP = '2',
  BININT = 'J', BININT1 = 'K', BININT2 = 'M', LONG1 = 0x8a, LONG4 = 0x8b,
  BINFLOAT = 'G', NONE = 'N', NEWTRUE = 0x88, NEWFALSE = 0x89,
  BINSTRING = 'T', SHORT_BINSTRING = 'U', BINBYTES = 'B', SHORT_BINBYTES = 'C', BINBYTES8 = 0x8e,
  BINUNICODE = 'X', SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d,
  EMPTY_TUPLE = ')', TUPLE = 't', TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87,
  EMPTY_LIST = ']', LIST = 'l', APPEND = 'a', APPENDS = 'e',
  EMPTY_DICT = '}', DICT = 'd', SETITEM = 's', SETITEMS = 'u',
  EMPTY_SET = 0x8f, ADDITEMS = 0x90, FROZENSET = 0x91,
  GLOBAL = 'c', STACK_GLOBAL = 0x93, REDUCE = 'R', BUILD = 'b', NEWOBJ = 0x81,
  BINPERSID = 'Q',
  PUT = 'p', BINPUT = 'q', LONG_BINPUT = 'r', MEMOIZE = 0x94,
  GET = 'g', BINGET = 'h', LONG_BINGET = 'j',
  PROTO = 0x80, FRAME = 0x95,
};

struct Obj;

// A value on the unpickler's stack. Containers live in the unpickler's arena and are shared
// by pointer, as Python shares objects through the memo.
struct Val {
  enum class K : uint8_t { None, Bool, Int, BigInt, Float, Str, Bytes, Global, Obj };
  K k = K::None;
  int64_t i = 0;
  double f = 0;
  std::shared_ptr<const std::string> s;  // Str, Bytes, BigInt (little-endian bytes), Global name
  Obj* o = nullptr;

  const std::string& str() const { return *s; }
};

struct Obj {
  enum class K { Tuple, List, Dict, Set, Tensor, Storage };
  K k;
  bool ordered = false;
  std::vector<Val> items;
  std::vector<std::pair<Val, Val>> entries;
  std::unordered_map<std::string, size_t> string_keys;  // Dict: entry index of each str key
  at::Tensor tensor;
  StorageSlice storage;
  explicit Obj(K kind) : k(kind) {}
};

const char* kind_name(const Val& v) {
  switch (v.k) {
    case Val::K::None: return "None";
    case Val::K::Bool: return "bool";
    case Val::K::Int: return "int";
    case Val::K::BigInt: return "int";
    case Val::K::Float: return "float";
    case Val::K::Str: return "str";
    case Val::K::Bytes: return "bytes";
    case Val::K::Global: return "class or function";
    case Val::K::Obj:
      switch (v.o->k) {
        case Obj::K::Tuple: return "tuple";
        case Obj::K::List: return "list";
        case Obj::K::Dict: return "dict";
        case Obj::K::Set: return "set";
        case Obj::K::Tensor: return "tensor";
        case Obj::K::Storage: return "storage";
      }
  }
  return "?";
}

bool is_obj(const Val& v, Obj::K k) { return v.k == Val::K::Obj && v.o->k == k; }

// The callables a PyTorch checkpoint may name; everything else is refused at GLOBAL time.
bool is_whitelisted(const std::string& global) {
  static const char* const kAllowed[] = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state",
      "torch._tensor._rebuild_from_type_v2",
      "torch._tensor.Tensor",
      "torch.Tensor",
      "torch.nn.parameter.Parameter",
  };
  for (const char* a : kAllowed)
    if (global == a) return true;
  at::ScalarType unused;
  return storage_dtype(global, &unused);
}

// Bounds that keep a hostile pickle from exhausting memory; real checkpoints stay far below.
constexpr size_t kMaxDepth = 256;                 // nesting of the returned tree
constexpr size_t kMaxNodes = size_t(1) << 22;     // nodes of the returned tree (shared objects expand)
constexpr size_t kMaxObjects = size_t(1) << 21;   // containers built while unpickling
constexpr size_t kMaxStack = size_t(1) << 22;     // values on the stack
constexpr int64_t kMaxDims = 64;
constexpr int64_t kMaxOverlappingNumel = int64_t(1) << 28;

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, size_t offset, const std::string& what,
            const PersistentLoad& persistent_load)
      : data_(data), size_(size), pos_(offset), what_(what), persistent_load_(persistent_load) {}

  PyValue run(size_t* end) {
    Val result = parse();
    if (end) *end = pos_;
    size_t nodes = 0;
    return convert(result, 0, &nodes);
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw FormatError(what_ + ": " + why + " (pickle byte " + std::to_string(op_pos_) + ")");
  }

  // --- raw reads (bounds-checked; a short input is a truncated file)
  void need(size_t n) {
    if (n > size_ - pos_) fail("truncated pickle (file cut short?)");
  }
  uint8_t u8() {
    need(1);
    return data_[pos_++];
  }
  uint64_t uint_le(size_t n) {
    need(n);
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= uint64_t(data_[pos_ + k]) << (8 * k);
    pos_ += n;
    return v;
  }
  std::string bytes(uint64_t n) {
    if (n > size_ - pos_) fail("truncated pickle (a string of " + std::to_string(n) + " bytes runs past the end)");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  std::string line() {
    const void* nl = std::memchr(data_ + pos_, '\n', size_ - pos_);
    if (!nl) fail("truncated pickle (unterminated line)");
    size_t n = static_cast<const uint8_t*>(nl) - (data_ + pos_);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n + 1;
    return s;
  }

  // --- stack
  void push(Val v) {
    if (stack_.size() >= kMaxStack) fail("pickle stack too large");
    stack_.push_back(std::move(v));
  }
  Val pop() {
    if (stack_.size() <= floor()) fail("stack underflow (malformed pickle)");
    Val v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  Val& top() {
    if (stack_.size() <= floor()) fail("stack underflow (malformed pickle)");
    return stack_.back();
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  // Pops everything above the last MARK, and the MARK.
  std::vector<Val> pop_mark() {
    if (marks_.empty()) fail("missing MARK (malformed pickle)");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Val> items(std::make_move_iterator(stack_.begin() + m), std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }

  Obj* make(Obj::K k) {
    if (arena_.size() >= kMaxObjects) fail("pickle builds too many objects");
    arena_.push_back(std::make_unique<Obj>(k));
    return arena_.back().get();
  }
  Val obj(Obj* o) {
    Val v;
    v.k = Val::K::Obj;
    v.o = o;
    return v;
  }
  Val make_tuple(std::vector<Val> items) {
    Obj* o = make(Obj::K::Tuple);
    o->items = std::move(items);
    return obj(o);
  }
  static Val scalar_int(int64_t i) {
    Val v;
    v.k = Val::K::Int;
    v.i = i;
    return v;
  }
  static Val text(Val::K k, std::string s) {
    Val v;
    v.k = k;
    v.s = std::make_shared<const std::string>(std::move(s));
    return v;
  }

  // --- memo (a map: LONG_BINPUT indices come from the file and may be anything)
  void memo_put(uint64_t index) {
    if (memo_.size() > (size_t(1) << 24) && !memo_.count(index)) fail("pickle memo too large");
    memo_[index] = top();
  }
  void memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo key " + std::to_string(index) + " not found (malformed pickle)");
    push(it->second);
  }

  // --- containers
  void dict_set(Obj* d, Val key, Val value) {
    if (key.k == Val::K::Str) {
      auto it = d->string_keys.find(key.str());
      if (it != d->string_keys.end()) {
        d->entries[it->second].second = std::move(value);  // Python keeps the first position
        return;
      }
      d->string_keys.emplace(key.str(), d->entries.size());
    } else if (key.k == Val::K::Int || key.k == Val::K::Bool || key.k == Val::K::None) {
      for (auto& e : d->entries)
        if (e.first.k == key.k && e.first.i == key.i) {
          e.second = std::move(value);
          return;
        }
    } else if (key.k == Val::K::Obj && key.o->k != Obj::K::Tuple) {
      fail(std::string("unhashable dict key of type ") + kind_name(key));
    }
    d->entries.emplace_back(std::move(key), std::move(value));
  }
  Obj* expect_dict(Val& v, const char* op) {
    if (!is_obj(v, Obj::K::Dict)) fail(std::string(op) + " on a " + kind_name(v) + ", expected a dict");
    return v.o;
  }
  Obj* expect_list(Val& v, const char* op) {
    if (!is_obj(v, Obj::K::List) && !is_obj(v, Obj::K::Set))
      fail(std::string(op) + " on a " + kind_name(v) + ", expected a list");
    return v.o;
  }

  // --- GLOBAL
  Val global(const std::string& module, const std::string& name) {
    std::string full = module + "." + name;
    if (!is_whitelisted(full)) {
      if (ends_with(name, "Storage") && module.rfind("torch", 0) == 0)
        fail("unsupported storage type " + full + " (quantized or unknown dtype)");
      fail("refusing to unpickle " + full + ": not a PyTorch state dict (only tensors and containers are loaded)");
    }
    return text(Val::K::Global, full);
  }

  // --- BINPERSID: ('storage', storage_class, key, location, numel[, view_metadata])
  Val persistent(const Val& pid) {
    if (!is_obj(pid, Obj::K::Tuple)) fail(std::string("persistent id is a ") + kind_name(pid) + ", expected a tuple");
    const auto& t = pid.o->items;
    if (t.size() < 5 || t.size() > 6 || t[0].k != Val::K::Str || t[0].str() != "storage")
      fail("persistent id is not ('storage', type, key, location, size)");
    StorageRequest r;
    if (t[1].k != Val::K::Global || !storage_dtype(t[1].str(), &r.dtype))
      fail("persistent id names no storage type");
    r.key = key_text(t[2], "storage key");
    if (t[3].k != Val::K::Str) fail("storage location is not a string");
    r.location = t[3].str();
    r.numel = non_negative(t[4], "storage size");
    if (t.size() == 6 && t[5].k != Val::K::None) {
      if (!is_obj(t[5], Obj::K::Tuple) || t[5].o->items.size() != 3) fail("storage view metadata is not (key, offset, size)");
      const auto& view = t[5].o->items;
      r.is_view = true;
      r.view_key = key_text(view[0], "storage view key");
      r.view_offset = non_negative(view[1], "storage view offset");
      r.view_numel = non_negative(view[2], "storage view size");
    }
    if (!persistent_load_) fail("unexpected persistent id in this pickle");
    Obj* o = make(Obj::K::Storage);
    o->storage = persistent_load_(r);
    return obj(o);
  }
  std::string key_text(const Val& v, const char* what) {
    if (v.k == Val::K::Str) return v.str();
    if (v.k == Val::K::Int) return std::to_string(v.i);
    fail(std::string(what) + " is a " + kind_name(v) + ", expected a string");
  }
  int64_t non_negative(const Val& v, const char* what) {
    if (v.k != Val::K::Int || v.i < 0) fail(std::string(what) + " is not a non-negative integer");
    return v.i;
  }
  std::vector<int64_t> int_tuple(const Val& v, const char* what) {
    if (!is_obj(v, Obj::K::Tuple) && !is_obj(v, Obj::K::List)) fail(std::string(what) + " is not a tuple");
    if (static_cast<int64_t>(v.o->items.size()) > kMaxDims) fail(std::string(what) + " has too many dimensions");
    std::vector<int64_t> out;
    for (const auto& d : v.o->items) out.push_back(non_negative(d, what));
    return out;
  }

  // --- REDUCE / NEWOBJ on whitelisted callables
  Val call(const Val& callable, const Val& args_val) {
    if (callable.k != Val::K::Global) fail(std::string("cannot call a ") + kind_name(callable));
    if (!is_obj(args_val, Obj::K::Tuple)) fail("call arguments are not a tuple");
    const std::string& f = callable.str();
    const auto& args = args_val.o->items;
    if (f == "collections.OrderedDict") {
      Obj* d = make(Obj::K::Dict);
      d->ordered = true;
      if (args.size() > 1) fail("OrderedDict() takes at most one argument");
      if (args.size() == 1) {
        if (!is_obj(args[0], Obj::K::List) && !is_obj(args[0], Obj::K::Tuple))
          fail("OrderedDict() argument is not a list of pairs");
        for (const auto& pair : args[0].o->items) {
          if ((!is_obj(pair, Obj::K::Tuple) && !is_obj(pair, Obj::K::List)) || pair.o->items.size() != 2)
            fail("OrderedDict() argument is not a list of pairs");
          dict_set(d, pair.o->items[0], pair.o->items[1]);
        }
      }
      return obj(d);
    }
    if (f == "torch._utils._rebuild_tensor_v2" || f == "torch._utils._rebuild_tensor") {
      bool v2 = f == "torch._utils._rebuild_tensor_v2";
      if (v2 ? (args.size() < 6 || args.size() > 7) : args.size() != 4)
        fail(f + " called with " + std::to_string(args.size()) + " arguments");
      return rebuild_tensor(args[0], args[1], args[2], args[3]);
    }
    if (f == "torch._utils._rebuild_parameter" || f == "torch._utils._rebuild_parameter_with_state") {
      if (args.empty() || !is_obj(args[0], Obj::K::Tensor)) fail(f + " called without a tensor");
      return args[0];  // a Parameter's data: requires_grad and hooks do not matter for loading
    }
    if (f == "torch._tensor._rebuild_from_type_v2") {
      if (args.size() != 4) fail(f + " called with " + std::to_string(args.size()) + " arguments");
      if (args[1].k != Val::K::Global ||
          (args[1].str() != "torch._tensor.Tensor" && args[1].str() != "torch.Tensor" &&
           args[1].str() != "torch.nn.parameter.Parameter"))
        fail(f + " for a type other than Tensor or Parameter");
      Val inner = call(args[0], args[2]);
      if (!is_obj(inner, Obj::K::Tensor)) fail(f + " did not produce a tensor");
      return inner;  // the Python attributes in args[3] are dropped
    }
    fail("cannot call " + f + " in a checkpoint");
  }

  Val rebuild_tensor(const Val& storage_val, const Val& offset_val, const Val& size_val, const Val& stride_val) {
    if (!is_obj(storage_val, Obj::K::Storage)) fail("tensor built from a " + std::string(kind_name(storage_val)) + ", expected a storage");
    const StorageSlice& slice = storage_val.o->storage;
    int64_t offset = non_negative(offset_val, "tensor storage offset");
    std::vector<int64_t> sizes = int_tuple(size_val, "tensor size");
    std::vector<int64_t> strides = int_tuple(stride_val, "tensor stride");
    if (sizes.size() != strides.size()) fail("tensor size and stride differ in length");
    // Highest element index + 1 the tensor touches; an empty tensor touches none.
    int64_t extent = 1;
    bool empty = false;
    for (size_t d = 0; d < sizes.size(); ++d) {
      if (sizes[d] == 0) empty = true;
      int64_t span;
      if (__builtin_mul_overflow(sizes[d] > 0 ? sizes[d] - 1 : 0, strides[d], &span) ||
          __builtin_add_overflow(extent, span, &extent))
        fail("tensor size/stride overflow");
    }
    int64_t end, numel = 1;
    if (__builtin_add_overflow(offset, extent, &end)) fail("tensor storage offset overflow");
    for (int64_t s : sizes)
      if (__builtin_mul_overflow(numel, s, &numel)) fail("tensor size overflow");
    // Only overlapping (stride 0) tensors have more elements than their storage; bound them so
    // a later .contiguous() cannot be asked for an absurd allocation.
    if (numel > slice.numel && numel > kMaxOverlappingNumel)
      fail("tensor of size " + shape_text(sizes) + " has " + std::to_string(numel) +
           " elements over a storage of " + std::to_string(slice.numel));
    if (!empty && end > slice.numel)
      fail("tensor of size " + shape_text(sizes) + " at offset " + std::to_string(offset) +
           " runs past its storage of " + std::to_string(slice.numel) + " elements");
    at::Tensor t = at::empty({0}, at::TensorOptions().dtype(slice.dtype));
    t.set_(slice.storage, slice.offset + (empty ? 0 : offset), sizes, strides);
    Obj* o = make(Obj::K::Tensor);
    o->tensor = t;
    return obj(o);
  }
  static std::string shape_text(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  }

  // --- the opcode loop
  Val parse() {
    while (true) {
      op_pos_ = pos_;
      if (pos_ >= size_) fail("truncated pickle (no STOP)");
      uint8_t op = data_[pos_++];
      switch (op) {
        case PROTO: {
          uint8_t proto = u8();
          if (proto > 5) fail("unsupported pickle protocol " + std::to_string(proto));
          break;
        }
        case FRAME: uint_le(8); break;  // framing is only a read-ahead hint
        case STOP: {
          if (stack_.size() != 1 || !marks_.empty()) fail("malformed pickle (stack not empty at STOP)");
          return pop();
        }
        case MARK: marks_.push_back(stack_.size()); break;
        case POP: pop(); break;
        case POP_MARK: pop_mark(); break;
        case DUP: push(top()); break;

        case NONE: push(Val()); break;
        case NEWTRUE:
        case NEWFALSE: {
          Val v;
          v.k = Val::K::Bool;
          v.i = op == NEWTRUE;
          push(v);
          break;
        }
        case BININT: push(scalar_int(static_cast<int32_t>(uint_le(4)))); break;
        case BININT1: push(scalar_int(u8())); break;
        case BININT2: push(scalar_int(static_cast<int64_t>(uint_le(2)))); break;
        case LONG1:
        case LONG4: {
          uint64_t n = op == LONG1 ? u8() : uint_le(4);
          std::string b = bytes(n);
          if (n <= 8) {
            uint64_t u = 0;
            for (size_t k = 0; k < n; ++k) u |= uint64_t(uint8_t(b[k])) << (8 * k);
            if (n > 0 && n < 8 && (uint8_t(b[n - 1]) & 0x80)) u |= ~uint64_t(0) << (8 * n);  // sign-extend
            push(scalar_int(static_cast<int64_t>(u)));
          } else {
            push(text(Val::K::BigInt, std::move(b)));
          }
          break;
        }
        case BINFLOAT: {
          need(8);
          uint64_t u = 0;
          for (int k = 0; k < 8; ++k) u = (u << 8) | data_[pos_ + k];  // big-endian
          pos_ += 8;
          Val v;
          v.k = Val::K::Float;
          std::memcpy(&v.f, &u, 8);
          push(v);
          break;
        }

        case BINUNICODE: push(text(Val::K::Str, bytes(uint_le(4)))); break;
        case SHORT_BINUNICODE: push(text(Val::K::Str, bytes(u8()))); break;
        case BINUNICODE8: push(text(Val::K::Str, bytes(uint_le(8)))); break;
        // Python 2 str: torch's legacy loader decodes these as text
        case BINSTRING: push(text(Val::K::Str, bytes(uint_le(4)))); break;
        case SHORT_BINSTRING: push(text(Val::K::Str, bytes(u8()))); break;
        case BINBYTES: push(text(Val::K::Bytes, bytes(uint_le(4)))); break;
        case SHORT_BINBYTES: push(text(Val::K::Bytes, bytes(u8()))); break;
        case BINBYTES8: push(text(Val::K::Bytes, bytes(uint_le(8)))); break;

        case EMPTY_TUPLE: push(make_tuple({})); break;
        case TUPLE: push(make_tuple(pop_mark())); break;
        case TUPLE1:
        case TUPLE2:
        case TUPLE3: {
          size_t n = op - TUPLE1 + 1;
          if (stack_.size() < floor() + n) fail("stack underflow (malformed pickle)");
          std::vector<Val> items(std::make_move_iterator(stack_.end() - n), std::make_move_iterator(stack_.end()));
          stack_.resize(stack_.size() - n);
          push(make_tuple(std::move(items)));
          break;
        }
        case EMPTY_LIST: push(obj(make(Obj::K::List))); break;
        case LIST: {
          Obj* l = make(Obj::K::List);
          l->items = pop_mark();
          push(obj(l));
          break;
        }
        case APPEND: {
          Val v = pop();
          expect_list(top(), "APPEND")->items.push_back(std::move(v));
          break;
        }
        case APPENDS:
        case ADDITEMS: {
          std::vector<Val> items = pop_mark();
          Obj* l = expect_list(top(), op == APPENDS ? "APPENDS" : "ADDITEMS");
          for (auto& v : items) l->items.push_back(std::move(v));
          break;
        }
        case EMPTY_SET: push(obj(make(Obj::K::Set))); break;
        case FROZENSET: {
          Obj* s = make(Obj::K::Set);
          s->items = pop_mark();
          push(obj(s));
          break;
        }
        case EMPTY_DICT: push(obj(make(Obj::K::Dict))); break;
        case DICT: {
          std::vector<Val> items = pop_mark();
          if (items.size() % 2) fail("DICT with an odd number of items");
          Obj* d = make(Obj::K::Dict);
          for (size_t k = 0; k < items.size(); k += 2) dict_set(d, std::move(items[k]), std::move(items[k + 1]));
          push(obj(d));
          break;
        }
        case SETITEM: {
          Val value = pop();
          Val key = pop();
          dict_set(expect_dict(top(), "SETITEM"), std::move(key), std::move(value));
          break;
        }
        case SETITEMS: {
          std::vector<Val> items = pop_mark();
          if (items.size() % 2) fail("SETITEMS with an odd number of items");
          Obj* d = expect_dict(top(), "SETITEMS");
          for (size_t k = 0; k < items.size(); k += 2) dict_set(d, std::move(items[k]), std::move(items[k + 1]));
          break;
        }

        case GLOBAL: {
          std::string module = line();
          std::string name = line();
          push(global(module, name));
          break;
        }
        case STACK_GLOBAL: {
          Val name = pop();
          Val module = pop();
          if (module.k != Val::K::Str || name.k != Val::K::Str) fail("STACK_GLOBAL without two strings");
          push(global(module.str(), name.str()));
          break;
        }
        case REDUCE: {
          Val args = pop();
          Val callable = pop();
          push(call(callable, args));
          break;
        }
        case NEWOBJ: {
          Val args = pop();
          Val cls = pop();
          if (cls.k != Val::K::Global || cls.str() != "collections.OrderedDict")
            fail(std::string("cannot construct a ") + (cls.k == Val::K::Global ? cls.str() : kind_name(cls)));
          push(call(cls, args));
          break;
        }
        case BUILD: {
          pop();  // the state: Python attributes such as an OrderedDict's _metadata
          Val& target = top();
          if (!is_obj(target, Obj::K::Dict) && !is_obj(target, Obj::K::Tensor))
            fail(std::string("cannot set the state of a ") + kind_name(target));
          break;
        }
        case BINPERSID: {
          Val pid = pop();
          push(persistent(pid));
          break;
        }

        case BINPUT: memo_put(u8()); break;
        case LONG_BINPUT: memo_put(uint_le(4)); break;
        case MEMOIZE: memo_put(memo_.size()); break;
        case PUT: memo_put(decimal(line())); break;
        case BINGET: memo_get(u8()); break;
        case LONG_BINGET: memo_get(uint_le(4)); break;
        case GET: memo_get(decimal(line())); break;

        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("unsupported pickle opcode ") + hex + " (not written by torch.save)");
        }
      }
    }
  }
  uint64_t decimal(const std::string& s) {
    if (s.empty() || s.size() > 18) fail("bad memo index");
    uint64_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') fail("bad memo index");
      v = v * 10 + (c - '0');
    }
    return v;
  }

  // --- arena graph -> owning tree
  PyValue convert(const Val& v, size_t depth, size_t* nodes) {
    if (depth > kMaxDepth) fail("pickled value nested too deeply (or cyclic)");
    if (++*nodes > kMaxNodes) fail("pickled value too large");
    PyValue out;
    switch (v.k) {
      case Val::K::None: return out;
      case Val::K::Bool: return PyValue::from_bool(v.i != 0);
      case Val::K::Int: return PyValue::from_int(v.i);
      case Val::K::BigInt:
        out.kind = PyValue::Kind::BigInt;
        out.string = v.str();
        return out;
      case Val::K::Float: return PyValue::from_float(v.f);
      case Val::K::Str: return PyValue::from_string(v.str());
      case Val::K::Bytes:
        out.kind = PyValue::Kind::Bytes;
        out.string = v.str();
        return out;
      case Val::K::Global: fail("a bare " + v.str() + " is not data");
      case Val::K::Obj: break;
    }
    const Obj& o = *v.o;
    switch (o.k) {
      case Obj::K::Tuple:
      case Obj::K::List:
      case Obj::K::Set:
        out.kind = o.k == Obj::K::Tuple ? PyValue::Kind::Tuple : PyValue::Kind::List;
        out.items.reserve(o.items.size());
        for (const auto& item : o.items) out.items.push_back(convert(item, depth + 1, nodes));
        return out;
      case Obj::K::Dict:
        out.kind = PyValue::Kind::Dict;
        out.ordered = o.ordered;
        out.entries.reserve(o.entries.size());
        for (const auto& [key, value] : o.entries)
          out.entries.emplace_back(convert(key, depth + 1, nodes), convert(value, depth + 1, nodes));
        return out;
      case Obj::K::Tensor: return PyValue::from_tensor(o.tensor);
      case Obj::K::Storage: {
        // A bare storage: expose it as the 1-D tensor it holds.
        at::Tensor t = at::empty({0}, at::TensorOptions().dtype(o.storage.dtype));
        t.set_(o.storage.storage, o.storage.offset, {o.storage.numel}, {1});
        return PyValue::from_tensor(t);
      }
    }
    return out;
  }

  const uint8_t* data_;
  size_t size_;
  size_t pos_;
  size_t op_pos_ = 0;
  const std::string& what_;
  const PersistentLoad& persistent_load_;
  std::vector<Val> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Val> memo_;
  std::vector<std::unique_ptr<Obj>> arena_;
};

}  // namespace

PyValue unpickle(const uint8_t* data, size_t size, size_t offset, const std::string& what,
                 const PersistentLoad& persistent_load, size_t* end) {
  if (offset > size) throw FormatError(what + ": truncated file (pickle expected at byte " + std::to_string(offset) + ")");
  return Unpickler(data, size, offset, what, persistent_load).run(end);
}

// ---------------------------------------------------------------------------------------------
// Pickler (protocol 2, as torch.save writes)

namespace {

class Pickler {
 public:
  explicit Pickler(const std::function<std::string(const at::Tensor&)>& add_storage) : add_storage_(add_storage) {}

  std::vector<uint8_t> run(const PyValue& v) {
    out_ = {PROTO, 2};
    value(v, 0);
    out_.push_back(STOP);
    return std::move(out_);
  }

 private:
  void op(uint8_t o) { out_.push_back(o); }
  void le(uint64_t v, int n) {
    for (int k = 0; k < n; ++k) out_.push_back(static_cast<uint8_t>(v >> (8 * k)));
  }
  void raw(const std::string& s) { out_.insert(out_.end(), s.begin(), s.end()); }

  void memoize() {
    uint32_t id = next_memo_++;
    if (id < 256) {
      op(BINPUT);
      op(static_cast<uint8_t>(id));
    } else {
      op(LONG_BINPUT);
      le(id, 4);
    }
  }
  // Globals and repeated constant strings are memoized like Python's pickler does; it keeps
  // the file small and torch.load reads them the same either way.
  bool memo_hit(const std::string& key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) return false;
    if (it->second < 256) {
      op(BINGET);
      op(static_cast<uint8_t>(it->second));
    } else {
      op(LONG_BINGET);
      le(it->second, 4);
    }
    return true;
  }
  void global(const std::string& module, const std::string& name) {
    std::string key = "global:" + module + "." + name;
    if (memo_hit(key)) return;
    op(GLOBAL);
    raw(module + "\n" + name + "\n");
    memo_[key] = next_memo_;
    memoize();
  }
  void string(const std::string& s, bool memo = false) {
    if (memo && memo_hit("str:" + s)) return;
    op(BINUNICODE);
    le(s.size(), 4);
    raw(s);
    if (memo) {
      memo_["str:" + s] = next_memo_;
      memoize();
    }
  }
  void integer(int64_t i) {
    if (i >= 0 && i < 256) {
      op(BININT1);
      op(static_cast<uint8_t>(i));
    } else if (i >= 0 && i < 65536) {
      op(BININT2);
      le(static_cast<uint64_t>(i), 2);
    } else if (i >= std::numeric_limits<int32_t>::min() && i <= std::numeric_limits<int32_t>::max()) {
      op(BININT);
      le(static_cast<uint32_t>(static_cast<int32_t>(i)), 4);
    } else {
      // LONG1: minimal little-endian two's complement
      std::vector<uint8_t> b;
      uint64_t u = static_cast<uint64_t>(i);
      for (int k = 0; k < 8; ++k) b.push_back(static_cast<uint8_t>(u >> (8 * k)));
      while (b.size() > 1 && ((b.back() == 0 && !(b[b.size() - 2] & 0x80)) ||
                              (b.back() == 0xff && (b[b.size() - 2] & 0x80))))
        b.pop_back();
      op(LONG1);
      op(static_cast<uint8_t>(b.size()));
      out_.insert(out_.end(), b.begin(), b.end());
    }
  }
  void tuple_of_ints(const std::vector<int64_t>& v) {
    if (v.empty()) return op(EMPTY_TUPLE);
    if (v.size() > 3) op(MARK);
    for (int64_t x : v) integer(x);
    op(v.size() == 1 ? TUPLE1 : v.size() == 2 ? TUPLE2 : v.size() == 3 ? TUPLE3 : TUPLE);
  }
  void empty_ordered_dict() {
    global("collections", "OrderedDict");
    op(EMPTY_TUPLE);
    op(REDUCE);
  }

  void tensor(const at::Tensor& original) {
    at::Tensor t = original.detach().to(at::kCPU).contiguous();
    const char* storage_class = storage_class_name(t.scalar_type());
    if (!storage_class)
      throw FormatError(std::string("cannot save a tensor of dtype ") + c10::toString(t.scalar_type()) + " to .pth");
    std::string key = add_storage_(t);
    global("torch._utils", "_rebuild_tensor_v2");
    op(MARK);
    {  // persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
      op(MARK);
      string("storage", true);
      global("torch", storage_class);
      string(key);
      string("cpu", true);
      integer(t.numel());
      op(TUPLE);
      op(BINPERSID);
    }
    integer(0);  // storage offset
    tuple_of_ints(t.sizes().vec());
    tuple_of_ints(t.strides().vec());
    op(NEWFALSE);  // requires_grad
    empty_ordered_dict();  // backward hooks
    op(TUPLE);
    op(REDUCE);
  }

  void value(const PyValue& v, size_t depth) {
    if (depth > kMaxDepth) throw FormatError("value nested too deeply to save");
    constexpr size_t kBatch = 1000;  // Python's pickler batches APPENDS/SETITEMS too
    switch (v.kind) {
      case PyValue::Kind::None: return op(NONE);
      case PyValue::Kind::Bool: return op(v.boolean ? NEWTRUE : NEWFALSE);
      case PyValue::Kind::Int: return integer(v.integer);
      case PyValue::Kind::Float: {
        op(BINFLOAT);
        uint64_t u;
        std::memcpy(&u, &v.number, 8);
        for (int k = 7; k >= 0; --k) out_.push_back(static_cast<uint8_t>(u >> (8 * k)));
        return;
      }
      case PyValue::Kind::String: return string(v.string);
      case PyValue::Kind::Bytes: throw FormatError("cannot save bytes values to .pth (protocol 2)");
      case PyValue::Kind::BigInt: {
        op(LONG1);
        if (v.string.size() > 255) throw FormatError("integer too large to save");
        op(static_cast<uint8_t>(v.string.size()));
        return raw(v.string);
      }
      case PyValue::Kind::Tuple:
        if (v.items.empty()) return op(EMPTY_TUPLE);
        op(MARK);
        for (const auto& item : v.items) value(item, depth + 1);
        return op(TUPLE);
      case PyValue::Kind::List:
        op(EMPTY_LIST);
        for (size_t start = 0; start < v.items.size(); start += kBatch) {
          op(MARK);
          for (size_t k = start; k < std::min(v.items.size(), start + kBatch); ++k) value(v.items[k], depth + 1);
          op(APPENDS);
        }
        return;
      case PyValue::Kind::Dict:
        if (v.ordered) empty_ordered_dict();
        else op(EMPTY_DICT);
        for (size_t start = 0; start < v.entries.size(); start += kBatch) {
          op(MARK);
          for (size_t k = start; k < std::min(v.entries.size(), start + kBatch); ++k) {
            value(v.entries[k].first, depth + 1);
            value(v.entries[k].second, depth + 1);
          }
          op(SETITEMS);
        }
        return;
      case PyValue::Kind::Tensor:
        if (!v.tensor.defined()) throw FormatError("cannot save an undefined tensor");
        return tensor(v.tensor);
    }
  }

  const std::function<std::string(const at::Tensor&)>& add_storage_;
  std::vector<uint8_t> out_;
  std::unordered_map<std::string, uint32_t> memo_;
  uint32_t next_memo_ = 0;
};

}  // namespace

std::vector<uint8_t> pickle_value(const PyValue& value,
                                  const std::function<std::string(const at::Tensor&)>& add_storage) {
  return Pickler(add_storage).run(value);
}

}  // namespace segtool::io
