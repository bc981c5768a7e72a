// The MPI binding behind src/engine/dist.ts (data-parallel training under mpirun): init and
// finalize, rank and size, in-place all-reduce of a Float32Array / Float64Array (the
// trainer's single gradient buffer), broadcast, all-gather of small byte buffers, barrier and
// abort. A separate addon from the kernels so a process that is not under mpirun never loads
// libmpi. Built without MPI (native/detect-mpi.cjs found no mpi.h) it exports only info(),
// which says so; src/engine/dist.ts then refuses to run as one of several ranks.
#include <napi.h>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#ifdef CHIMED_MPI
#include <dlfcn.h>
// the C API only: the deprecated C++ bindings would need libmpi_cxx
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace {

#ifdef CHIMED_MPI

bool initialized = false;

void check(Napi::Env env, int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Napi::Error::New(env, std::string("chimed mpi: ") + what + " failed: " + std::string(msg, len));
}

void requireInit(Napi::Env env, const char* what) {
  if (!initialized) throw Napi::Error::New(env, std::string("chimed mpi: ") + what + " before init()");
}

// Node loads an addon with RTLD_LOCAL, so libmpi (our dependency) is loaded into a private
// symbol scope. Open MPI dlopens its components (mca_pml_ob1.so, mca_btl_vader.so, ...) at
// MPI_Init; in builds whose components do not link libmpi / libopen-pal themselves (Open MPI
// built with its default --enable-dlopen on some distributions, the known "undefined symbol:
// opal_..." failure of MPI from Python and Node) they then fail to load and MPI_Init aborts.
// Debian's Open MPI 4.1 links them and loads either way. Re-opening the library that holds
// MPI_Init_thread with RTLD_GLOBAL (RTLD_NOLOAD: it is already loaded) makes its symbols
// visible to them; found by address rather than by name, so whatever its soname
// (libmpi.so.40, MPICH's libmpi.so.12).
void exposeMpiSymbols() {
  Dl_info where;
  if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &where) && where.dli_fname)
    dlopen(where.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
}

int worldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int worldSize() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!initialized) {
    exposeMpiSymbols();
    int provided = 0;
    // only the JS thread calls MPI; the OpenMP kernel threads never do
    check(env, MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    // errors come back as JS exceptions naming the call (the rank's handler then aborts the job)
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    initialized = true;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("rank", worldRank());
  o.Set("size", worldSize());
  return o;
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  int done = 0;
  MPI_Finalized(&done);
  if (initialized && !done) check(info.Env(), MPI_Finalize(), "MPI_Finalize");
  return info.Env().Undefined();
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  int code = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  if (initialized) MPI_Abort(MPI_COMM_WORLD, code);
  return info.Env().Undefined();
}

struct Buffer {
  void* data;
  size_t count;
  size_t elementSize;
  MPI_Datatype type;
};

Buffer typedArray(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray())
    throw Napi::TypeError::New(env, std::string("chimed mpi: ") + fn + ": expected a typed array");
  auto a = info[i].As<Napi::TypedArray>();
  auto base = static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  switch (a.TypedArrayType()) {
    case napi_float32_array: return {base, a.ElementLength(), 4, MPI_FLOAT};
    case napi_float64_array: return {base, a.ElementLength(), 8, MPI_DOUBLE};
    case napi_uint8_array: return {base, a.ElementLength(), 1, MPI_BYTE};
    default: throw Napi::TypeError::New(env, std::string("chimed mpi: ") + fn + ": expected a Float32Array, Float64Array or Uint8Array");
  }
}

// All-reduces and broadcasts go in pieces of 16 MiB (MPI counts are ints, too). Measured with
// Open MPI 4.1 (Debian), 2 ranks on one machine: 58M floats in one MPI_Allreduce took 2.9 s (shared memory) while 20 MB took 9 ms;
// the same 58M floats in 16 MiB pieces took 0.18 s (0.69 s over TCP). Large single calls fall
// off the library's fast path; pieces of this size stay on it on either transport.
constexpr size_t PIECE_BYTES = size_t{16} << 20;

// allreduce(array, op): in place; op "sum", "avg" (sum / size), "max" or "min".
Napi::Value Allreduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireInit(env, "allreduce");
  Buffer b = typedArray(info, 0, "allreduce");
  std::string op = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum";
  MPI_Op mop = op == "max" ? MPI_MAX : op == "min" ? MPI_MIN : MPI_SUM;
  if (op != "sum" && op != "avg" && op != "max" && op != "min")
    throw Napi::RangeError::New(env, "chimed mpi: allreduce: op must be sum, avg, max or min, not " + op);
  if (b.type == MPI_BYTE && op != "max" && op != "min")
    throw Napi::TypeError::New(env, "chimed mpi: allreduce: sums need a Float32Array or Float64Array");
  auto base = static_cast<uint8_t*>(b.data);
  const size_t piece = PIECE_BYTES / b.elementSize;
  for (size_t off = 0; off < b.count; off += piece) {
    int n = static_cast<int>(std::min(piece, b.count - off));
    check(env, MPI_Allreduce(MPI_IN_PLACE, base + off * b.elementSize, n, b.type, mop, MPI_COMM_WORLD), "MPI_Allreduce");
  }
  if (op == "avg") {
    const double inv = 1.0 / worldSize();
    if (b.type == MPI_FLOAT) {
      auto p = static_cast<float*>(b.data);
      for (size_t i = 0; i < b.count; i++) p[i] = static_cast<float>(p[i] * inv);
    } else {
      auto p = static_cast<double*>(b.data);
      for (size_t i = 0; i < b.count; i++) p[i] *= inv;
    }
  }
  return env.Undefined();
}

// broadcast(array, root): root's contents into every rank's array of the same length.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireInit(env, "broadcast");
  Buffer b = typedArray(info, 0, "broadcast");
  int root = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  if (root < 0 || root >= worldSize()) throw Napi::RangeError::New(env, "chimed mpi: broadcast: root out of range");
  auto base = static_cast<uint8_t*>(b.data);
  size_t bytes = b.count * b.elementSize;
  for (size_t off = 0; off < bytes; off += PIECE_BYTES) {
    int n = static_cast<int>(std::min(PIECE_BYTES, bytes - off));
    check(env, MPI_Bcast(base + off, n, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  return env.Undefined();
}

// allgather(bytes): every rank's Uint8Array (any lengths, each under 2 GiB), in rank order.
Napi::Value Allgather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireInit(env, "allgather");
  Buffer b = typedArray(info, 0, "allgather");
  if (b.type != MPI_BYTE) throw Napi::TypeError::New(env, "chimed mpi: allgather: expected a Uint8Array");
  if (b.count > static_cast<size_t>(INT_MAX)) throw Napi::RangeError::New(env, "chimed mpi: allgather: buffer over 2 GiB");
  const int size = worldSize();
  int mine = static_cast<int>(b.count);
  std::vector<int> counts(size), offsets(size);
  check(env, MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
  size_t total = 0;
  for (int r = 0; r < size; r++) {
    if (total > static_cast<size_t>(INT_MAX - counts[r]))
      throw Napi::RangeError::New(env, "chimed mpi: allgather: over 2 GiB in all");
    offsets[r] = static_cast<int>(total);
    total += counts[r];
  }
  auto all = Napi::ArrayBuffer::New(env, std::max<size_t>(total, 1));
  check(env,
        MPI_Allgatherv(b.data, mine, MPI_BYTE, all.Data(), counts.data(), offsets.data(), MPI_BYTE, MPI_COMM_WORLD),
        "MPI_Allgatherv");
  Napi::Array out = Napi::Array::New(env, size);
  for (int r = 0; r < size; r++) out.Set(r, Napi::Uint8Array::New(env, counts[r], all, offsets[r]));
  return out;
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  requireInit(info.Env(), "barrier");
  check(info.Env(), MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  return info.Env().Undefined();
}

std::string libraryVersion() {
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(v, &len);
  std::string s(v, len);
  return s.substr(0, s.find_first_of("\n,"));
}

#endif  // CHIMED_MPI

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
#ifdef CHIMED_MPI
  o.Set("mpi", true);
  o.Set("library", libraryVersion());
#else
  o.Set("mpi", false);
  o.Set("library", "");
#endif
  return o;
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, Info, "info"));
#ifdef CHIMED_MPI
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("finalize", Napi::Function::New(env, Finalize, "finalize"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  exports.Set("allreduce", Napi::Function::New(env, Allreduce, "allreduce"));
  exports.Set("broadcast", Napi::Function::New(env, Broadcast, "broadcast"));
  exports.Set("allgather", Napi::Function::New(env, Allgather, "allgather"));
  exports.Set("barrier", Napi::Function::New(env, Barrier, "barrier"));
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(chimed_mpi, InitModule)
