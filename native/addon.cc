// N-API bindings of the kernels in kernels.h: argument checking and conversion only. Every
// argument is validated here (types, sizes, lengths, index ranges) so that the kernels can
// trust their inputs; errors name the kernel and the argument, as TypeError for a wrong type
// and RangeError for a wrong value or length.
#include <fcntl.h>
#include <napi.h>
#include <omp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cmath>
#include <initializer_list>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "kernels.h"

namespace chimed {
namespace {

constexpr double MAX_SAFE_INTEGER = 9007199254740991.0;

template <typename T>
struct View {
  T* data;
  i64 length;
  const char* name;
};

// Product of sizes, or -1 on overflow (which then fails any length comparison).
i64 product(std::initializer_list<i64> factors) {
  i64 p = 1;
  for (i64 f : factors)
    if (__builtin_mul_overflow(p, f, &p)) return -1;
  return p;
}

const char* typedArrayName(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "typed array";
  }
}

std::string describe(const Napi::Value& v) {
  if (v.IsTypedArray()) return typedArrayName(v.As<Napi::TypedArray>().TypedArrayType());
  if (v.IsNull()) return "null";
  if (v.IsUndefined()) return "undefined";
  if (v.IsNumber()) return "number " + v.ToString().Utf8Value();
  if (v.IsArray()) return "Array";
  return v.Type() == napi_string ? "string" : v.Type() == napi_boolean ? "boolean" : "object";
}

// The arguments of one kernel call, read with validation.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* kernel, size_t count) : info_(info), kernel_(kernel) {
    if (info.Length() < count)
      fail(false, "expected " + std::to_string(count) + " arguments, got " + std::to_string(info.Length()));
  }
  Napi::Env env() const { return info_.Env(); }

  [[noreturn]] void fail(bool range, const std::string& message) const {
    const std::string text = std::string(kernel_) + ": " + message;
    if (range) throw Napi::RangeError::New(info_.Env(), text);
    throw Napi::TypeError::New(info_.Env(), text);
  }

  View<float> floats(size_t i, const char* name) const { return typed<float, napi_float32_array>(info_[i], name, "Float32Array"); }
  View<double> doubles(size_t i, const char* name) const { return typed<double, napi_float64_array>(info_[i], name, "Float64Array"); }
  View<std::uint8_t> bytes(size_t i, const char* name) const {
    return typed<std::uint8_t, napi_uint8_array>(info_[i], name, "Uint8Array");
  }
  View<std::int32_t> ints(size_t i, const char* name) const {
    return typed<std::int32_t, napi_int32_array>(info_[i], name, "Int32Array");
  }
  // An Int32Array, or null/undefined (returned with data == nullptr).
  View<std::int32_t> intsOrNull(size_t i, const char* name) const {
    if (i >= info_.Length() || info_[i].IsNull() || info_[i].IsUndefined()) return {nullptr, 0, name};
    return ints(i, name);
  }

  i64 size(size_t i, const char* name, i64 min = 0) const { return sizeOf(info_[i], name, min); }
  i64 sizeOf(const Napi::Value& v, const std::string& name, i64 min) const {
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
    if (!v.IsNumber()) fail(false, name + " must be an integer, got " + describe(v));
    if (!(d == std::floor(d)) || d < static_cast<double>(min) || d > MAX_SAFE_INTEGER)
      fail(true, name + " must be an integer >= " + std::to_string(min) + ", got " + v.ToString().Utf8Value());
    return static_cast<i64>(d);
  }

  double number(size_t i, const char* name) const { return numberOf(info_[i], name); }
  double numberOf(const Napi::Value& v, const std::string& name) const {
    if (!v.IsNumber()) fail(false, name + " must be a number, got " + describe(v));
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d)) fail(true, name + " must be finite, got " + v.ToString().Utf8Value());
    return d;
  }

  bool flag(size_t i, const char* name) const {
    if (!info_[i].IsBoolean()) fail(false, std::string(name) + " must be a boolean, got " + describe(info_[i]));
    return info_[i].As<Napi::Boolean>().Value();
  }

  Napi::Object object(size_t i, const char* name) const {
    if (!info_[i].IsObject() || info_[i].IsTypedArray() || info_[i].IsArray())
      fail(false, std::string(name) + " must be an object, got " + describe(info_[i]));
    return info_[i].As<Napi::Object>();
  }

  template <typename T>
  void length(const View<T>& a, i64 expected, const char* formula) const {
    if (a.length != expected)
      fail(true, std::string(a.name) + " has length " + std::to_string(a.length) + ", expected " + formula + " = " +
                     (expected < 0 ? std::string("(overflow)") : std::to_string(expected)));
  }
  template <typename T, typename U>
  void sameLength(const View<T>& a, const View<U>& b) const {
    if (a.length != b.length)
      fail(true, std::string(a.name) + " has length " + std::to_string(a.length) + " but " + b.name + " has length " + std::to_string(b.length));
  }
  // Every value of a must lie in [lo, hi).
  void indices(const View<std::int32_t>& a, i64 lo, i64 hi) const {
    for (i64 i = 0; i < a.length; ++i)
      if (a.data[i] < lo || a.data[i] >= hi)
        fail(true, std::string(a.name) + "[" + std::to_string(i) + "] = " + std::to_string(a.data[i]) + " is out of range [" + std::to_string(lo) +
                       ", " + std::to_string(hi) + ")");
  }

 private:
  template <typename T, napi_typedarray_type TYPE>
  View<T> typed(const Napi::Value& v, const char* name, const char* typeName) const {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TYPE)
      fail(false, std::string(name) + " must be a " + typeName + ", got " + describe(v));
    // Data() is the view's own start (byteOffset applied), so subarray views work.
    auto arr = v.As<Napi::TypedArrayOf<T>>();
    return {arr.Data(), static_cast<i64>(arr.ElementLength()), name};
  }

  const Napi::CallbackInfo& info_;
  const char* kernel_;
};

// ---------------------------------------------------------------- bindings

using GemmFn = void (*)(bool, bool, i64, i64, i64, float, const float*, const float*, float, float*);

// gemm (dispatched by shape class), gemmBuiltin and gemmOpenblas share one argument check.
template <GemmFn FN>
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  const char* name = FN == gemmBuiltin ? "gemmBuiltin" : FN == gemmOpenblas ? "gemmOpenblas" : "gemm";
  const Args a(info, name, 10);
  if (FN == gemmOpenblas && !openblasConfig())
    throw Napi::Error::New(info.Env(), "gemmOpenblas: this build of the addon has no OpenBLAS (cblas.h was not found when it was built)");
  const bool tA = a.flag(0, "transA"), tB = a.flag(1, "transB");
  const i64 M = a.size(2, "M"), N = a.size(3, "N"), K = a.size(4, "K");
  const double alpha = a.number(5, "alpha"), beta = a.number(8, "beta");
  const auto A = a.floats(6, "A"), B = a.floats(7, "B"), C = a.floats(9, "C");
  a.length(A, product({M, K}), "M*K");
  a.length(B, product({K, N}), "K*N");
  a.length(C, product({M, N}), "M*N");
  FN(tA, tB, M, N, K, static_cast<float>(alpha), A.data, B.data, static_cast<float>(beta), C.data);
  return info.Env().Undefined();
}

const char* backendName(GemmBackend b) { return b == GemmBackend::Openblas ? "openblas" : "builtin"; }

// gemmClassOf(transA, transB, M, N, K): the shape class name, "few-rows" for M <= 8.
Napi::Value GemmClassOf(const Napi::CallbackInfo& info) {
  const Args a(info, "gemmClassOf", 5);
  const int cls = gemmClassOf(a.flag(0, "transA"), a.flag(1, "transB"), a.size(2, "M"), a.size(3, "N"), a.size(4, "K"));
  return Napi::String::New(info.Env(), gemmClassName(cls));
}

// getGemmBackends(): {class: "builtin" | "openblas"} for every class.
Napi::Value GetGemmBackends(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  for (int c = 0; c < GEMM_CLASSES; ++c) o.Set(gemmClassName(c), backendName(gemmBackend(c)));
  return o;
}

// setGemmBackends({class: "builtin" | "openblas"}): every class must be given; nothing changes
// unless all are valid.
Napi::Value SetGemmBackends(const Napi::CallbackInfo& info) {
  const Args a(info, "setGemmBackends", 1);
  const Napi::Object o = a.object(0, "backends");
  GemmBackend chosen[GEMM_CLASSES];
  for (int c = 0; c < GEMM_CLASSES; ++c) {
    const std::string key = gemmClassName(c);
    const Napi::Value v = o.Get(key);
    const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    if (s != "builtin" && s != "openblas") a.fail(true, "backends[\"" + key + "\"] must be \"builtin\" or \"openblas\", got " + describe(v));
    if (s == "openblas" && !openblasConfig()) a.fail(true, "backends[\"" + key + "\"] is \"openblas\" but this build of the addon has no OpenBLAS");
    chosen[c] = s == "openblas" ? GemmBackend::Openblas : GemmBackend::Builtin;
  }
  for (int c = 0; c < GEMM_CLASSES; ++c) setGemmBackend(c, chosen[c]);
  return info.Env().Undefined();
}

// gemmMeasure(rounds): {class: {builtin: ms, openblas: ms | null}}, best of `rounds`.
Napi::Value GemmMeasure(const Napi::CallbackInfo& info) {
  const Args a(info, "gemmMeasure", 1);
  const i64 rounds = a.size(0, "rounds", 1);
  if (rounds > 1000) a.fail(true, "rounds must be <= 1000");
  double best[2 * GEMM_CLASSES];
  gemmMeasure(static_cast<int>(rounds), best);
  Napi::Object o = Napi::Object::New(info.Env());
  for (int c = 0; c < GEMM_CLASSES; ++c) {
    Napi::Object t = Napi::Object::New(info.Env());
    for (const GemmBackend b : {GemmBackend::Builtin, GemmBackend::Openblas}) {
      const double s = best[c * 2 + static_cast<int>(b)];
      t.Set(backendName(b), s < 1e300 ? Napi::Value(Napi::Number::New(info.Env(), s * 1e3)) : info.Env().Null());
    }
    o.Set(gemmClassName(c), t);
  }
  return o;
}

// ---- frozen weights: (dtype name, bytes, rows, cols) read as a WeightMatrix

// The dtype a name ("f32" | "bf16" | "f16" | "q8_0") gives; `what` names the argument in the error.
WeightDtype dtypeArg(const Args& a, const Napi::Value& v, const std::string& what) {
  const std::string name = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (name == "f32") return WeightDtype::F32;
  if (name == "bf16") return WeightDtype::BF16;
  if (name == "f16") return WeightDtype::F16;
  if (name == "q8_0") return WeightDtype::Q8_0;
  a.fail(true, what + " must be \"f32\", \"bf16\", \"f16\" or \"q8_0\", got " + describe(v));
}

// The weight matrix of arguments i (its dtype's name) and i + 1 (its bytes), rows x cols; the
// byte length must match exactly.
WeightMatrix weightArg(const Args& a, const Napi::CallbackInfo& info, size_t i, i64 rows, i64 cols) {
  const std::string name = info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
  const WeightDtype dtype = dtypeArg(a, info[i], "dtype");
  const auto bytes = a.bytes(i + 1, "bytes");
  const i64 want = weightBytes(dtype, rows, cols);
  if (want < 0) a.fail(true, "a q8_0 matrix needs a multiple of 32 columns, got " + std::to_string(cols));
  a.length(bytes, want, (name + " bytes of rows*cols").c_str());
  return {dtype, bytes.data, rows, cols};
}

// gemmWeight(transW, M, N, K, alpha, A, dtype, bytes, beta, C): C = alpha A op(W) + beta C.
Napi::Value GemmWeight(const Napi::CallbackInfo& info) {
  const Args a(info, "gemmWeight", 10);
  const bool tW = a.flag(0, "transW");
  const i64 M = a.size(1, "M"), N = a.size(2, "N"), K = a.size(3, "K");
  const double alpha = a.number(4, "alpha"), beta = a.number(8, "beta");
  const auto A = a.floats(5, "A"), C = a.floats(9, "C");
  const WeightMatrix W = weightArg(a, info, 6, tW ? N : K, tW ? K : N);
  a.length(A, product({M, K}), "M*K");
  a.length(C, product({M, N}), "M*N");
  gemmWeight(tW, M, N, K, static_cast<float>(alpha), A.data, W, static_cast<float>(beta), C.data);
  return info.Env().Undefined();
}

// embeddingWeight(out, dtype, bytes, rows, cols, ids): out[i] = W[ids[i]].
Napi::Value EmbeddingWeight(const Napi::CallbackInfo& info) {
  const Args a(info, "embeddingWeight", 6);
  const auto out = a.floats(0, "out");
  const i64 rows = a.size(3, "rows"), cols = a.size(4, "cols", 1);
  const WeightMatrix W = weightArg(a, info, 1, rows, cols);
  const auto ids = a.ints(5, "ids");
  a.length(out, product({ids.length, cols}), "ids.length*cols");
  a.indices(ids, 0, rows);
  embeddingWeight(out.data, W, ids.data, ids.length);
  return info.Env().Undefined();
}

// convertWeight(dtype, bytes, rows, cols, dstDtype, dst): dst = the matrix in dstDtype.
Napi::Value ConvertWeight(const Napi::CallbackInfo& info) {
  const Args a(info, "convertWeight", 6);
  const i64 rows = a.size(2, "rows"), cols = a.size(3, "cols");
  const WeightMatrix src = weightArg(a, info, 0, rows, cols);
  const WeightMatrix dst = weightArg(a, info, 4, rows, cols);
  convertWeight(src, dst.dtype, const_cast<std::uint8_t*>(dst.data));
  return info.Env().Undefined();
}

// firstNonFiniteWeight(dtype, bytes, rows, cols): index of the first NaN/Inf value, or -1.
Napi::Value FirstNonFiniteWeight(const Napi::CallbackInfo& info) {
  const Args a(info, "firstNonFiniteWeight", 4);
  const WeightMatrix W = weightArg(a, info, 0, a.size(2, "rows"), a.size(3, "cols"));
  return Napi::Number::New(info.Env(), static_cast<double>(firstNonFiniteWeight(W)));
}

// mapFile(path, offset, length): bytes [offset, offset + length) of the file as an ArrayBuffer
// backed by a private (copy-on-write) memory map, unmapped when the buffer is collected. length
// must not pass Node's largest buffer (buffer.constants.MAX_LENGTH, 4 GiB in Node 20; Node
// fails a longer one after running the finaliser, which then runs twice): safetensors.ts maps a
// larger file in windows. Checkpoints are read through it so that their
// pages come from the page cache on demand and half-precision weights are used where they lie,
// never copied whole into the heap. Here rather than an npm package because the mmap packages
// on npm are native modules of their own (mmap-io, @raygun-nickj/mmap-io) that would be a second
// addon to build; this is twenty lines. Writes (an adapter merged into a mapped weight) land in
// private pages and never reach the file.
Napi::Value MapFile(const Napi::CallbackInfo& info) {
  const Args a(info, "mapFile", 3);
  if (!info[0].IsString()) a.fail(false, "path must be a string, got " + describe(info[0]));
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const i64 offset = a.size(1, "offset"), length = a.size(2, "length");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Napi::Error::New(info.Env(), "mapFile: cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    throw Napi::Error::New(info.Env(), "mapFile: cannot stat " + path + ": " + std::strerror(e));
  }
  if (offset + length > st.st_size) {
    close(fd);
    throw Napi::Error::New(info.Env(), "mapFile: " + path + " has " + std::to_string(st.st_size) + " bytes, not the " +
                                           std::to_string(offset + length) + " asked for");
  }
  if (length == 0) {
    close(fd);
    return Napi::ArrayBuffer::New(info.Env(), 0);
  }
  // mmap maps from a page boundary: map from the one before offset, hand out the bytes from offset
  const i64 skip = offset % sysconf(_SC_PAGESIZE);
  struct Mapping {
    void* base;
    std::size_t size;
  };
  Mapping* m = new Mapping{nullptr, static_cast<std::size_t>(skip + length)};
  m->base = mmap(nullptr, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, offset - skip);
  const int e = errno;
  close(fd);  // the mapping keeps the file open
  if (m->base == MAP_FAILED) {
    delete m;
    throw Napi::Error::New(info.Env(), "mapFile: cannot map " + path + ": " + std::strerror(e));
  }
  return Napi::ArrayBuffer::New(
      info.Env(), static_cast<char*>(m->base) + skip, static_cast<std::size_t>(length),
      [](Napi::Env, void*, Mapping* mapping) {
        munmap(mapping->base, mapping->size);
        delete mapping;
      },
      m);
}

// Shared checks of embeddingForward/Backward; returns the vocabulary size.
i64 checkEmbedding(const Args& a, const View<float>& rows, const View<float>& table, const View<std::int32_t>& ids, i64 dim) {
  if (table.length % dim != 0)
    a.fail(true, std::string(table.name) + " has length " + std::to_string(table.length) + ", not a multiple of dim = " + std::to_string(dim));
  a.length(rows, product({ids.length, dim}), "ids.length*dim");
  const i64 vocab = table.length / dim;
  a.indices(ids, 0, vocab);
  return vocab;
}

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  const Args a(info, "embeddingForward", 4);
  const auto out = a.floats(0, "out"), table = a.floats(1, "table");
  const auto ids = a.ints(2, "ids");
  const i64 dim = a.size(3, "dim", 1);
  checkEmbedding(a, out, table, ids, dim);
  embeddingForward(out.data, table.data, ids.data, ids.length, dim);
  return info.Env().Undefined();
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  const Args a(info, "embeddingBackward", 4);
  const auto dtable = a.floats(0, "dtable"), dout = a.floats(1, "dout");
  const auto ids = a.ints(2, "ids");
  const i64 dim = a.size(3, "dim", 1);
  checkEmbedding(a, dout, dtable, ids, dim);
  embeddingBackward(dtable.data, dout.data, ids.data, ids.length, dim);
  return info.Env().Undefined();
}

Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  const Args a(info, "rmsnormForward", 7);
  const auto out = a.floats(0, "out"), rstd = a.floats(1, "rstd"), x = a.floats(2, "x"), w = a.floats(3, "w");
  const i64 rows = a.size(4, "rows"), dim = a.size(5, "dim", 1);
  const double eps = a.number(6, "eps");
  if (eps < 0) a.fail(true, "eps must be >= 0");
  a.length(x, product({rows, dim}), "rows*dim");
  a.length(out, product({rows, dim}), "rows*dim");
  a.length(rstd, rows, "rows");
  a.length(w, dim, "dim");
  rmsnormForward(out.data, rstd.data, x.data, w.data, rows, dim, static_cast<float>(eps));
  return info.Env().Undefined();
}

Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  const Args a(info, "rmsnormBackward", 8);
  const auto dx = a.floats(0, "dx"), dw = a.floats(1, "dw"), dout = a.floats(2, "dout"), x = a.floats(3, "x"), w = a.floats(4, "w"),
             rstd = a.floats(5, "rstd");
  const i64 rows = a.size(6, "rows"), dim = a.size(7, "dim", 1);
  for (const auto* t : {&dx, &dout, &x}) a.length(*t, product({rows, dim}), "rows*dim");
  a.length(dw, dim, "dim");
  a.length(w, dim, "dim");
  a.length(rstd, rows, "rows");
  rmsnormBackward(dx.data, dw.data, dout.data, x.data, w.data, rstd.data, rows, dim);
  return info.Env().Undefined();
}

Napi::Value AddRmsnormForward(const Napi::CallbackInfo& info) {
  const Args a(info, "addRmsnormForward", 9);
  const auto sum = a.floats(0, "sum"), out = a.floats(1, "out"), rstd = a.floats(2, "rstd"), x = a.floats(3, "x"), y = a.floats(4, "y"),
             w = a.floats(5, "w");
  const i64 rows = a.size(6, "rows"), dim = a.size(7, "dim", 1);
  const double eps = a.number(8, "eps");
  if (eps < 0) a.fail(true, "eps must be >= 0");
  for (const auto* t : {&sum, &out, &x, &y}) a.length(*t, product({rows, dim}), "rows*dim");
  a.length(rstd, rows, "rows");
  a.length(w, dim, "dim");
  addRmsnormForward(sum.data, out.data, rstd.data, x.data, y.data, w.data, rows, dim, static_cast<float>(eps));
  return info.Env().Undefined();
}

Napi::Value AddRmsnormBackward(const Napi::CallbackInfo& info) {
  const Args a(info, "addRmsnormBackward", 10);
  const auto dx = a.floats(0, "dx"), dy = a.floats(1, "dy"), dw = a.floats(2, "dw");
  const bool noDsum = info[3].IsNull() || info[3].IsUndefined();
  const auto dsum = noDsum ? View<float>{nullptr, 0, "dsum"} : a.floats(3, "dsum");
  const auto dout = a.floats(4, "dout"), sum = a.floats(5, "sum"), w = a.floats(6, "w"), rstd = a.floats(7, "rstd");
  const i64 rows = a.size(8, "rows"), dim = a.size(9, "dim", 1);
  for (const auto* t : {&dx, &dy, &dout, &sum}) a.length(*t, product({rows, dim}), "rows*dim");
  if (!noDsum) a.length(dsum, product({rows, dim}), "rows*dim");
  a.length(dw, dim, "dim");
  a.length(w, dim, "dim");
  a.length(rstd, rows, "rows");
  addRmsnormBackward(dx.data, dy.data, dw.data, dsum.data, dout.data, sum.data, w.data, rstd.data, rows, dim);
  return info.Env().Undefined();
}

// Shared checks of the RoPE kernels: headDim even, invFreq finite with headDim/2 entries.
void checkRopeFrequencies(const Args& a, i64 hd, const View<double>& invFreq) {
  if (hd % 2 != 0) a.fail(true, "headDim must be even, got " + std::to_string(hd));
  a.length(invFreq, hd / 2, "headDim/2");
  for (i64 i = 0; i < invFreq.length; ++i)
    if (!std::isfinite(invFreq.data[i])) a.fail(true, "invFreq[" + std::to_string(i) + "] must be finite");
}

template <bool BACKWARD>
Napi::Value QkvRope(const Napi::CallbackInfo& info) {
  const Args a(info, BACKWARD ? "qkvRopeBackward" : "qkvRopeForward", 10);
  // forward (q, k, v, qkv, ...), backward (dqkv, dq, dk, dv, ...)
  const auto packed = a.floats(BACKWARD ? 0 : 3, BACKWARD ? "dqkv" : "qkv");
  const auto q = a.floats(BACKWARD ? 1 : 0, BACKWARD ? "dq" : "q"), k = a.floats(BACKWARD ? 2 : 1, BACKWARD ? "dk" : "k"),
             v = a.floats(BACKWARD ? 3 : 2, BACKWARD ? "dv" : "v");
  const auto pos = a.ints(4, "pos");
  const i64 H = a.size(5, "H", 1), KVH = a.size(6, "KVH", 1), hd = a.size(7, "headDim", 2);
  const auto invFreq = a.doubles(8, "invFreq");
  const double scale = a.number(9, "scale");
  checkRopeFrequencies(a, hd, invFreq);
  a.length(q, product({pos.length, H, hd}), "pos.length*H*headDim");
  a.length(k, product({pos.length, KVH, hd}), "pos.length*KVH*headDim");
  a.length(v, product({pos.length, KVH, hd}), "pos.length*KVH*headDim");
  a.length(packed, product({pos.length, H + 2 * KVH, hd}), "pos.length*(H+2*KVH)*headDim");
  if (BACKWARD)
    qkvRopeBackward(packed.data, q.data, k.data, v.data, pos.data, pos.length, H, KVH, hd, invFreq.data, static_cast<float>(scale));
  else
    qkvRopeForward(q.data, k.data, v.data, packed.data, pos.data, pos.length, H, KVH, hd, invFreq.data, static_cast<float>(scale));
  return info.Env().Undefined();
}

template <bool BACKWARD>
Napi::Value Rope(const Napi::CallbackInfo& info) {
  const Args a(info, BACKWARD ? "ropeBackward" : "ropeForward", 7);
  const auto dst = a.floats(0, BACKWARD ? "dx" : "out"), src = a.floats(1, BACKWARD ? "dout" : "x");
  const auto pos = a.ints(2, "pos");
  const i64 heads = a.size(3, "heads", 1), hd = a.size(4, "headDim", 2);
  const auto invFreq = a.doubles(5, "invFreq");
  const double scale = a.number(6, "scale");
  checkRopeFrequencies(a, hd, invFreq);
  a.length(src, product({pos.length, heads, hd}), "pos.length*heads*headDim");
  a.length(dst, product({pos.length, heads, hd}), "pos.length*heads*headDim");
  (BACKWARD ? ropeBackward : ropeForward)(dst.data, src.data, pos.data, pos.length, heads, hd, invFreq.data, static_cast<float>(scale));
  return info.Env().Undefined();
}

template <bool BACKWARD>
Napi::Value Bias(const Napi::CallbackInfo& info) {
  const Args a(info, BACKWARD ? "biasBackward" : "biasForward", 4);
  const auto b = a.floats(BACKWARD ? 0 : 1, BACKWARD ? "db" : "b"), y = a.floats(BACKWARD ? 1 : 0, BACKWARD ? "dy" : "y");
  const i64 rows = a.size(2, "rows"), dim = a.size(3, "dim", 1);
  a.length(y, product({rows, dim}), "rows*dim");
  a.length(b, dim, "dim");
  if (BACKWARD) biasBackward(b.data, y.data, rows, dim);
  else biasForward(y.data, b.data, rows, dim);
  return info.Env().Undefined();
}

template <bool BACKWARD>
Napi::Value SliceColumns(const Napi::CallbackInfo& info) {
  const Args a(info, BACKWARD ? "sliceColumnsBackward" : "sliceColumnsForward", 6);
  const auto wide = a.floats(BACKWARD ? 0 : 1, BACKWARD ? "dx" : "x"), narrow = a.floats(BACKWARD ? 1 : 0, BACKWARD ? "dout" : "out");
  const i64 rows = a.size(2, "rows"), cols = a.size(3, "cols", 1), start = a.size(4, "start"), width = a.size(5, "width", 1);
  if (start + width > cols) a.fail(true, "start + width (" + std::to_string(start + width) + ") exceeds cols (" + std::to_string(cols) + ")");
  a.length(wide, product({rows, cols}), "rows*cols");
  a.length(narrow, product({rows, width}), "rows*width");
  (BACKWARD ? sliceColumnsBackward : sliceColumnsForward)(BACKWARD ? wide.data : narrow.data, BACKWARD ? narrow.data : wide.data, rows, cols, start, width);
  return info.Env().Undefined();
}

Napi::Value NormalizeRowsForward(const Napi::CallbackInfo& info) {
  const Args a(info, "normalizeRowsForward", 6);
  const auto out = a.floats(0, "out"), norm = a.floats(1, "norm"), w = a.floats(2, "w");
  const i64 rows = a.size(3, "rows"), dim = a.size(4, "dim", 1);
  const double eps = a.number(5, "eps");
  if (eps <= 0) a.fail(true, "eps must be > 0");
  a.length(w, product({rows, dim}), "rows*dim");
  a.length(out, product({rows, dim}), "rows*dim");
  a.length(norm, rows, "rows");
  normalizeRowsForward(out.data, norm.data, w.data, rows, dim, static_cast<float>(eps));
  return info.Env().Undefined();
}

Napi::Value NormalizeRowsBackward(const Napi::CallbackInfo& info) {
  const Args a(info, "normalizeRowsBackward", 7);
  const auto dw = a.floats(0, "dw"), dout = a.floats(1, "dout"), out = a.floats(2, "out"), norm = a.floats(3, "norm");
  const i64 rows = a.size(4, "rows"), dim = a.size(5, "dim", 1);
  const double eps = a.number(6, "eps");
  if (eps <= 0) a.fail(true, "eps must be > 0");
  for (const auto* t : {&dw, &dout, &out}) a.length(*t, product({rows, dim}), "rows*dim");
  a.length(norm, rows, "rows");
  normalizeRowsBackward(dw.data, dout.data, out.data, norm.data, rows, dim, static_cast<float>(eps));
  return info.Env().Undefined();
}

AttentionDims readDims(const Args& a, size_t i) {
  const Napi::Object o = a.object(i, "dims");
  AttentionDims d{};
  d.B = a.sizeOf(o.Get("B"), "dims.B", 1);
  d.Tq = a.sizeOf(o.Get("Tq"), "dims.Tq", 1);
  d.Tk = a.sizeOf(o.Get("Tk"), "dims.Tk", 1);
  d.kvCap = a.sizeOf(o.Get("kvCap"), "dims.kvCap", 1);
  d.H = a.sizeOf(o.Get("H"), "dims.H", 1);
  d.KVH = a.sizeOf(o.Get("KVH"), "dims.KVH", 1);
  d.hd = a.sizeOf(o.Get("headDim"), "dims.headDim", 1);
  d.scale = static_cast<float>(a.numberOf(o.Get("scale"), "dims.scale"));
  const Napi::Value headMajor = o.Get("kvHeadMajor");
  if (!headMajor.IsUndefined() && !headMajor.IsBoolean()) a.fail(false, "dims.kvHeadMajor must be a boolean or absent, got " + describe(headMajor));
  d.kvHeadMajor = headMajor.IsBoolean() && headMajor.As<Napi::Boolean>().Value();
  if (d.Tq > d.Tk) a.fail(true, "dims.Tq (" + std::to_string(d.Tq) + ") must be <= dims.Tk (" + std::to_string(d.Tk) + ")");
  if (d.Tk > d.kvCap) a.fail(true, "dims.Tk (" + std::to_string(d.Tk) + ") must be <= dims.kvCap (" + std::to_string(d.kvCap) + ")");
  if (d.H % d.KVH != 0) a.fail(true, "dims.H (" + std::to_string(d.H) + ") must be a multiple of dims.KVH (" + std::to_string(d.KVH) + ")");
  return d;
}

const std::int32_t* readKeyStart(const Args& a, size_t i, const AttentionDims& d) {
  const auto ks = a.intsOrNull(i, "keyStart");
  if (!ks.data) return nullptr;
  a.length(ks, d.B, "dims.B");
  a.indices(ks, 0, d.Tk + 1);
  return ks.data;
}

struct AttentionLengths {
  i64 q, kv, lse;
  explicit AttentionLengths(const AttentionDims& d)
      : q(product({d.B, d.Tq, d.H, d.hd})), kv(product({d.B, d.kvCap, d.KVH, d.hd})), lse(product({d.B, d.H, d.Tq})) {}
};

Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  const Args a(info, "attentionForward", 6);
  const auto out = a.floats(0, "out"), lse = a.floats(1, "lse"), q = a.floats(2, "q"), k = a.floats(3, "k"), v = a.floats(4, "v");
  const AttentionDims d = readDims(a, 5);
  const std::int32_t* keyStart = readKeyStart(a, 6, d);
  const AttentionLengths n(d);
  a.length(q, n.q, "B*Tq*H*headDim");
  a.length(out, n.q, "B*Tq*H*headDim");
  a.length(k, n.kv, "B*kvCap*KVH*headDim");
  a.length(v, n.kv, "B*kvCap*KVH*headDim");
  a.length(lse, n.lse, "B*H*Tq");
  attentionForward(out.data, lse.data, q.data, k.data, v.data, d, keyStart);
  return info.Env().Undefined();
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  const Args a(info, "attentionBackward", 10);
  const auto dq = a.floats(0, "dq"), dk = a.floats(1, "dk"), dv = a.floats(2, "dv"), dout = a.floats(3, "dout"), q = a.floats(4, "q"),
             k = a.floats(5, "k"), v = a.floats(6, "v"), out = a.floats(7, "out"), lse = a.floats(8, "lse");
  const AttentionDims d = readDims(a, 9);
  const std::int32_t* keyStart = readKeyStart(a, 10, d);
  const AttentionLengths n(d);
  for (const auto* t : {&dq, &dout, &q, &out}) a.length(*t, n.q, "B*Tq*H*headDim");
  for (const auto* t : {&dk, &dv, &k, &v}) a.length(*t, n.kv, "B*kvCap*KVH*headDim");
  a.length(lse, n.lse, "B*H*Tq");
  attentionBackward(dq.data, dk.data, dv.data, dout.data, q.data, k.data, v.data, out.data, lse.data, d, keyStart);
  return info.Env().Undefined();
}

Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  const Args a(info, "swigluForward", 3);
  const auto out = a.floats(0, "out"), gate = a.floats(1, "gate"), up = a.floats(2, "up");
  a.sameLength(gate, out);
  a.sameLength(up, out);
  swigluForward(out.data, gate.data, up.data, out.length);
  return info.Env().Undefined();
}

Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  const Args a(info, "swigluBackward", 5);
  const auto dgate = a.floats(0, "dgate"), dup = a.floats(1, "dup"), dout = a.floats(2, "dout"), gate = a.floats(3, "gate"),
             up = a.floats(4, "up");
  for (const auto* t : {&dgate, &dup, &gate, &up}) a.sameLength(*t, dout);
  swigluBackward(dgate.data, dup.data, dout.data, gate.data, up.data, dout.length);
  return info.Env().Undefined();
}

Napi::Value SwigluPackedForward(const Napi::CallbackInfo& info) {
  const Args a(info, "swigluPackedForward", 4);
  const auto out = a.floats(0, "out"), gu = a.floats(1, "gu");
  const i64 rows = a.size(2, "rows"), width = a.size(3, "width", 1);
  a.length(out, product({rows, width}), "rows*width");
  a.length(gu, product({rows, 2, width}), "rows*2*width");
  swigluPackedForward(out.data, gu.data, rows, width);
  return info.Env().Undefined();
}

Napi::Value SwigluPackedBackward(const Napi::CallbackInfo& info) {
  const Args a(info, "swigluPackedBackward", 5);
  const auto dgu = a.floats(0, "dgu"), dout = a.floats(1, "dout"), gu = a.floats(2, "gu");
  const i64 rows = a.size(3, "rows"), width = a.size(4, "width", 1);
  a.length(dout, product({rows, width}), "rows*width");
  a.length(gu, product({rows, 2, width}), "rows*2*width");
  a.length(dgu, product({rows, 2, width}), "rows*2*width");
  swigluPackedBackward(dgu.data, dout.data, gu.data, rows, width);
  return info.Env().Undefined();
}

// Shared checks of the cross-entropy kernels: a [rows, cols] chunk of V columns from start,
// rows = targets.length, targets < V. Returns cols.
i64 checkCrossEntropy(const Args& a, const View<float>& logits, const View<float>& lse, const View<std::int32_t>& targets, size_t first) {
  const i64 V = a.size(first, "V", 1), start = a.size(first + 1, "start"), cols = a.size(first + 2, "cols", 1);
  if (start + cols > V) a.fail(true, "start + cols (" + std::to_string(start + cols) + ") exceeds V (" + std::to_string(V) + ")");
  a.length(logits, product({targets.length, cols}), "targets.length*cols");
  a.length(lse, targets.length, "targets.length");
  a.indices(targets, std::numeric_limits<std::int32_t>::min(), V);  // negative = ignored row
  return cols;
}

Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  const Args a(info, "crossEntropyForward", 7);
  const auto lse = a.floats(0, "lse"), tlogit = a.floats(1, "tlogit"), logits = a.floats(2, "logits");
  const auto targets = a.ints(3, "targets");
  const i64 cols = checkCrossEntropy(a, logits, lse, targets, 4), start = a.size(5, "start");
  a.length(tlogit, targets.length, "targets.length");
  crossEntropyForward(lse.data, tlogit.data, logits.data, targets.data, targets.length, start, cols);
  return info.Env().Undefined();
}

Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  const Args a(info, "crossEntropyBackward", 8);
  const auto dlogits = a.floats(0, "dlogits"), logits = a.floats(1, "logits"), lse = a.floats(2, "lse");
  const auto targets = a.ints(3, "targets");
  const auto dlogp = a.floats(4, "dlogp");
  const i64 cols = checkCrossEntropy(a, logits, lse, targets, 5), start = a.size(6, "start");
  a.length(dlogits, product({targets.length, cols}), "targets.length*cols");
  a.length(dlogp, targets.length, "targets.length");
  crossEntropyBackward(dlogits.data, logits.data, lse.data, targets.data, dlogp.data, targets.length, start, cols);
  return info.Env().Undefined();
}

Napi::Value Adamw(const Napi::CallbackInfo& info) {
  const Args a(info, "adamw", 11);
  const auto p = a.floats(0, "p"), g = a.floats(1, "g"), m = a.floats(2, "m"), v = a.floats(3, "v");
  const double lr = a.number(4, "lr"), beta1 = a.number(5, "beta1"), beta2 = a.number(6, "beta2"), eps = a.number(7, "eps"),
               wd = a.number(8, "weightDecay");
  const i64 step = a.size(9, "step", 1);
  const double gradScale = a.number(10, "gradScale");
  if (beta1 < 0 || beta1 >= 1) a.fail(true, "beta1 must be in [0, 1)");
  if (beta2 < 0 || beta2 >= 1) a.fail(true, "beta2 must be in [0, 1)");
  if (eps < 0) a.fail(true, "eps must be >= 0");
  for (const auto* t : {&g, &m, &v}) a.sameLength(*t, p);
  adamw(p.data, g.data, m.data, v.data, p.length, lr, beta1, beta2, eps, wd, static_cast<double>(step), static_cast<float>(gradScale));
  return info.Env().Undefined();
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  const Args a(info, "sumSquares", 1);
  const auto x = a.floats(0, "x");
  return Napi::Number::New(info.Env(), sumSquares(x.data, x.length));
}

Napi::Value Axpy(const Napi::CallbackInfo& info) {
  const Args a(info, "axpy", 3);
  const auto y = a.floats(0, "y"), x = a.floats(1, "x");
  a.sameLength(x, y);
  axpy(y.data, x.data, y.length, static_cast<float>(a.number(2, "alpha")));
  return info.Env().Undefined();
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  const Args a(info, "add", 3);
  const auto out = a.floats(0, "out"), x = a.floats(1, "a"), y = a.floats(2, "b");
  a.sameLength(x, out);
  a.sameLength(y, out);
  add(out.data, x.data, y.data, out.length);
  return info.Env().Undefined();
}

// setThreads(n): the OpenMP team size of every kernel (gemm included: OpenBLAS runs
// single-threaded inside it).
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  const Args a(info, "setThreads", 1);
  const i64 n = a.size(0, "n", 1);
  if (n > 4096) a.fail(true, "n must be <= 4096");
  omp_set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), omp_get_max_threads()); }

// The instruction sets the compiler was allowed to use (-march=native at build time).
std::string simdFeatures() {
  std::string s;
  auto add = [&s](const char* f) { s += s.empty() ? f : std::string(" ") + f; };
#ifdef __AVX512F__
  add("avx512f");
#endif
#ifdef __AVX512BW__
  add("avx512bw");
#endif
#ifdef __AVX512VL__
  add("avx512vl");
#endif
#ifdef __AVX512BF16__
  add("avx512bf16");
#endif
#ifdef __AVX2__
  add("avx2");
#endif
#ifdef __FMA__
  add("fma");
#endif
#ifdef __AVX__
  add("avx");
#endif
#ifdef __SSE4_2__
  add("sse4.2");
#endif
#ifdef __ARM_NEON
  add("neon");
#endif
#ifdef __ARM_FEATURE_SVE
  add("sve");
#endif
  return s.empty() ? "scalar" : s;
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  const char* blas = openblasConfig();
  o.Set("openblas", blas ? Napi::Value(Napi::String::New(info.Env(), blas)) : info.Env().Null());
  o.Set("threads", omp_get_max_threads());
  o.Set("simd", simdFeatures());
  return o;
}

// ---- decodeStep(plan, ids, pos, keyStart, length, invFreq, ropeScale, logits)
// plan (DecodePlan in src/engine/kernels.ts) is read on every call: some 15 properties a layer, a few
// microseconds against the milliseconds of the step's weight reads.

// The fields of plan, each checked against the shapes the model's dimensions give; errors name
// the field by its path (plan.layers[2].o.weight).
class PlanReader {
 public:
  explicit PlanReader(const Args& a) : a_(a) {}

  Napi::Object object(const Napi::Object& o, const std::string& path) const {
    if (!o.IsObject() || o.IsTypedArray() || o.IsArray()) a_.fail(false, path + " must be an object, got " + describe(o));
    return o;
  }
  i64 size(const Napi::Object& o, const std::string& path, const char* key, i64 min) const {
    return a_.sizeOf(o.Get(key), path + "." + key, min);
  }
  // A Float32Array of exactly n values, or null when allowed.
  float* floats(const Napi::Object& o, const std::string& path, const char* key, i64 n, bool nullable = false) const {
    const Napi::Value v = o.Get(key);
    const std::string name = path + "." + key;
    if (nullable && v.IsNull()) return nullptr;
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      a_.fail(false, name + " must be a Float32Array" + (nullable ? " or null" : "") + ", got " + describe(v));
    auto t = v.As<Napi::Float32Array>();
    if (static_cast<i64>(t.ElementLength()) != n)
      a_.fail(true, name + " has length " + std::to_string(t.ElementLength()) + ", expected " + std::to_string(n));
    return t.Data();
  }
  // {dtype, data, rows, cols} with rows and cols as expected (rows < 0: any, returned through W.rows).
  WeightMatrix weight(const Napi::Object& parent, const std::string& path, const char* key, i64 rows, i64 cols) const {
    const std::string name = path + "." + key;
    const Napi::Object o = object(parent.Get(key).As<Napi::Object>(), name);
    const Napi::Value dv = o.Get("dtype");
    const std::string dtype = dv.IsString() ? dv.As<Napi::String>().Utf8Value() : "";
    WeightMatrix W{dtypeArg(a_, dv, name + ".dtype"), nullptr, size(o, name, "rows", 1), size(o, name, "cols", 1)};
    if ((rows >= 0 && W.rows != rows) || W.cols != cols)
      a_.fail(true, name + " is [" + std::to_string(W.rows) + ", " + std::to_string(W.cols) + "], expected [" +
                        (rows >= 0 ? std::to_string(rows) : std::string("rows")) + ", " + std::to_string(cols) + "]");
    const Napi::Value data = o.Get("data");
    if (!data.IsTypedArray()) a_.fail(false, name + ".data must be a Uint8Array or Float32Array, got " + describe(data));
    const auto t = data.As<Napi::TypedArray>();
    const i64 want = weightBytes(W.dtype, W.rows, W.cols);
    if (want < 0) a_.fail(true, name + ": a q8_0 matrix needs a multiple of 32 columns, got " + std::to_string(W.cols));
    if (static_cast<i64>(t.ByteLength()) != want)
      a_.fail(true, name + ".data has " + std::to_string(t.ByteLength()) + " bytes, expected " + std::to_string(want) + " for " + dtype);
    W.data = static_cast<const std::uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset();
    return W;
  }
  // {weight, bias}: weight [rows, cols], bias [rows] or null.
  DecodeLinear linear(const Napi::Object& parent, const std::string& path, const char* key, i64 rows, i64 cols) const {
    const std::string name = path + "." + key;
    const Napi::Object o = object(parent.Get(key).As<Napi::Object>(), name);
    const WeightMatrix W = weight(o, name, "weight", rows, cols);
    return {W, floats(o, name, "bias", W.rows, true)};
  }
  // An array of linears [cols] into out: one packed (rows packedRows) or apart.size() of them.
  int linears(const Napi::Object& parent, const std::string& path, const char* key, i64 packedRows, const std::vector<i64>& apart,
              i64 cols, DecodeLinear* out) const {
    const std::string name = path + "." + key;
    const Napi::Value v = parent.Get(key);
    const i64 n = v.IsArray() ? static_cast<i64>(v.As<Napi::Array>().Length()) : -1;
    if (n != 1 && n != static_cast<i64>(apart.size()))
      a_.fail(true, name + " must be an array of 1 (packed) or " + std::to_string(apart.size()) + " linears, got " +
                        (n < 0 ? describe(v) : std::to_string(n)));
    const Napi::Object arr = v.As<Napi::Object>();
    for (i64 i = 0; i < n; ++i) out[i] = linear(arr, name, std::to_string(i).c_str(), n == 1 ? packedRows : apart[i], cols);
    return static_cast<int>(n);
  }

 private:
  const Args& a_;
};

Napi::Value DecodeStep(const Napi::CallbackInfo& info) {
  const Args a(info, "decodeStep", 8);
  const Napi::Object plan = a.object(0, "plan");
  const PlanReader r(a);
  DecodeModel m{};
  m.B = r.size(plan, "plan", "B", 1);
  if (m.B > GEMM_FEW_ROWS) a.fail(true, "plan.B must be <= " + std::to_string(GEMM_FEW_ROWS) + " (rows of one decoding product), got " + std::to_string(m.B));
  m.D = r.size(plan, "plan", "D", 1);
  m.H = r.size(plan, "plan", "H", 1);
  m.KVH = r.size(plan, "plan", "KVH", 1);
  m.hd = r.size(plan, "plan", "headDim", 1);
  m.F = r.size(plan, "plan", "F", 1);
  m.kvCap = r.size(plan, "plan", "kvCap", 1);
  m.eps = static_cast<float>(a.numberOf(plan.Get("eps"), "plan.eps"));
  if (m.H % m.KVH != 0) a.fail(true, "plan.H (" + std::to_string(m.H) + ") must be a multiple of plan.KVH (" + std::to_string(m.KVH) + ")");
  const i64 qD = m.H * m.hd, kvD = m.KVH * m.hd;
  m.embed = r.weight(plan, "plan", "embed", -1, m.D);
  m.head = r.weight(plan, "plan", "head", -1, m.D);
  m.finalNorm = r.floats(plan, "plan", "finalNorm", m.D);
  const Napi::Value lv = plan.Get("layers");
  if (!lv.IsArray()) a.fail(false, "plan.layers must be an Array, got " + describe(lv));
  const Napi::Array layers = lv.As<Napi::Array>();
  static thread_local std::vector<DecodeLayer> decoded;
  decoded.assign(layers.Length(), DecodeLayer{});
  const i64 cache = product({m.B, m.kvCap, kvD});
  for (std::uint32_t l = 0; l < layers.Length(); ++l) {
    const std::string path = "plan.layers[" + std::to_string(l) + "]";
    const Napi::Object o = r.object(layers.Get(l).As<Napi::Object>(), path);
    DecodeLayer& L = decoded[l];
    L.inputNorm = r.floats(o, path, "inputNorm", m.D);
    L.postNorm = r.floats(o, path, "postNorm", m.D);
    L.qNorm = r.floats(o, path, "qNorm", m.hd, true);
    L.kNorm = r.floats(o, path, "kNorm", m.hd, true);
    if (!L.qNorm != !L.kNorm) a.fail(true, path + ": qNorm and kNorm must both be given or both be null");
    L.nQkv = r.linears(o, path, "qkv", qD + 2 * kvD, {qD, kvD, kvD}, m.D, L.qkv);
    L.o = r.linear(o, path, "o", m.D, qD);
    L.nGateUp = r.linears(o, path, "gateUp", 2 * m.F, {m.F, m.F}, m.D, L.gateUp);
    L.down = r.linear(o, path, "down", m.D, m.F);
    L.kCache = r.floats(o, path, "kCache", cache);
    L.vCache = r.floats(o, path, "vCache", cache);
  }
  m.layers = decoded.data();
  m.nLayers = static_cast<i64>(decoded.size());
  const auto ids = a.ints(1, "ids"), pos = a.ints(2, "pos");
  const auto logits = a.floats(7, "logits");
  a.length(ids, m.B, "plan.B");
  a.length(pos, m.B, "plan.B");
  a.indices(ids, 0, m.embed.rows);
  m.length = a.size(4, "length");
  if (m.length + 1 > m.kvCap) a.fail(true, "length + 1 (" + std::to_string(m.length + 1) + ") exceeds plan.kvCap (" + std::to_string(m.kvCap) + ")");
  const auto keyStart = a.intsOrNull(3, "keyStart");
  if (keyStart.data) {
    a.length(keyStart, m.B, "plan.B");
    a.indices(keyStart, 0, m.length + 2);
  }
  const auto invFreq = a.doubles(5, "invFreq");
  a.length(invFreq, m.hd / 2, "plan.headDim/2");
  m.invFreq = invFreq.data;
  m.ropeScale = static_cast<float>(a.number(6, "ropeScale"));
  a.length(logits, product({m.B, m.head.rows}), "plan.B*head.rows");
  decodeStep(m, ids.data, pos.data, keyStart.data, logits.data);
  return info.Env().Undefined();
}

// Turns allocation failures inside a kernel into a JS error instead of terminating the process.
using Binding = Napi::Value (*)(const Napi::CallbackInfo&);
template <Binding F>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), "chimed native: out of memory");
  }
}

template <Binding F>
void expose(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New<guarded<F>>(env, name));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  expose<Gemm<gemm>>(env, exports, "gemm");
  expose<Gemm<gemmBuiltin>>(env, exports, "gemmBuiltin");
  expose<Gemm<gemmOpenblas>>(env, exports, "gemmOpenblas");
  expose<GemmClassOf>(env, exports, "gemmClassOf");
  expose<GetGemmBackends>(env, exports, "getGemmBackends");
  expose<SetGemmBackends>(env, exports, "setGemmBackends");
  expose<GemmMeasure>(env, exports, "gemmMeasure");
  expose<GemmWeight>(env, exports, "gemmWeight");
  expose<EmbeddingWeight>(env, exports, "embeddingWeight");
  expose<ConvertWeight>(env, exports, "convertWeight");
  expose<FirstNonFiniteWeight>(env, exports, "firstNonFiniteWeight");
  expose<MapFile>(env, exports, "mapFile");
  expose<EmbeddingForward>(env, exports, "embeddingForward");
  expose<EmbeddingBackward>(env, exports, "embeddingBackward");
  expose<RmsnormForward>(env, exports, "rmsnormForward");
  expose<RmsnormBackward>(env, exports, "rmsnormBackward");
  expose<AddRmsnormForward>(env, exports, "addRmsnormForward");
  expose<AddRmsnormBackward>(env, exports, "addRmsnormBackward");
  expose<Rope<false>>(env, exports, "ropeForward");
  expose<Rope<true>>(env, exports, "ropeBackward");
  expose<QkvRope<false>>(env, exports, "qkvRopeForward");
  expose<QkvRope<true>>(env, exports, "qkvRopeBackward");
  expose<Bias<false>>(env, exports, "biasForward");
  expose<Bias<true>>(env, exports, "biasBackward");
  expose<SliceColumns<false>>(env, exports, "sliceColumnsForward");
  expose<SliceColumns<true>>(env, exports, "sliceColumnsBackward");
  expose<NormalizeRowsForward>(env, exports, "normalizeRowsForward");
  expose<NormalizeRowsBackward>(env, exports, "normalizeRowsBackward");
  expose<AttentionForward>(env, exports, "attentionForward");
  expose<AttentionBackward>(env, exports, "attentionBackward");
  expose<DecodeStep>(env, exports, "decodeStep");
  expose<SwigluForward>(env, exports, "swigluForward");
  expose<SwigluBackward>(env, exports, "swigluBackward");
  expose<SwigluPackedForward>(env, exports, "swigluPackedForward");
  expose<SwigluPackedBackward>(env, exports, "swigluPackedBackward");
  expose<CrossEntropyForward>(env, exports, "crossEntropyForward");
  expose<CrossEntropyBackward>(env, exports, "crossEntropyBackward");
  expose<Adamw>(env, exports, "adamw");
  expose<SumSquares>(env, exports, "sumSquares");
  expose<Axpy>(env, exports, "axpy");
  expose<Add>(env, exports, "add");
  expose<SetThreads>(env, exports, "setThreads");
  expose<GetThreads>(env, exports, "getThreads");
  expose<Info>(env, exports, "info");
  return exports;
}

}  // namespace
}  // namespace chimed

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return chimed::Init(env, exports); }
NODE_API_MODULE(chimed_native, InitModule)
