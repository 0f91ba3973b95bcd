// oneDNN 2-D convolution (forward, input gradient, weight gradient) as XLA FFI
// handlers, for models/_onednn.py. Built on first use by models/_onednn.py with g++
// against the oneDNN CPU wheel (onednn-cpu-gomp / onednn-devel-cpu-gomp 2023.2,
// oneDNN 3.2) and the JAX FFI headers (jax.ffi.include_dir()).
//
// Layouts are XLA's row-major buffers: activations NHWC ([N, H, W, C]), kernels HWIO
// ([R, S, C/G, M], output channel m in group m / (M/G), as lax.conv_general_dilated
// with feature_group_count = G). Activations are passed to oneDNN as they are
// (format nhwc); weights are declared with format_tag::any so that oneDNN picks the
// layout its fast kernels want, and are reordered from / to HWIO around each call
// (with a fixed weight layout the backward primitives fall back to a slow generic
// kernel).
//
// Attributes (all int64): strides[2], dilation[2] (XLA's rhs_dilation, >= 1),
// pad_lo[2], pad_hi[2] (top/left and bottom/right, >= 0), groups.
//
// Primitive descriptors, primitives and weight reorders are cached per problem (kind,
// dtype, every shape and attribute) in a map guarded by a mutex; execution happens
// outside the lock with a per-call user scratchpad, so concurrent calls from several
// XLA threads are safe. oneDNN's OpenMP team is sized to XLA's intra-op thread pool.

#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;

namespace {

enum Kind : int64_t { kFwd = 0, kBwdData = 1, kBwdWeights = 2 };

struct Problem {
  int64_t kind, dtype, n, h, w, c, p, q, m, r, s, g;
  int64_t sh, sw, dh, dw, pt, pl, pb, pr;
  std::string key() const { return std::string(reinterpret_cast<const char*>(this), sizeof(*this)); }
};

struct Entry {
  dnnl::primitive prim;
  memory::desc user_w, prim_w, scratch;
  bool reorder_w = false;
  dnnl::primitive reorder;  // user->prim (fwd, bwd data) or prim->user (bwd weights)
};

dnnl::engine& Engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

std::mutex g_mu;
std::unordered_map<std::string, std::shared_ptr<Entry>>& Cache() {
  static auto* cache = new std::unordered_map<std::string, std::shared_ptr<Entry>>();
  return *cache;
}

memory::desc Act(const Problem& pr, memory::data_type dt, bool out) {
  return out ? memory::desc({pr.n, pr.m, pr.p, pr.q}, dt, tag::nhwc)
             : memory::desc({pr.n, pr.c, pr.h, pr.w}, dt, tag::nhwc);
}

// The HWIO kernel [R, S, C/G, M] as oneDNN weights ([M, C, R, S] or grouped
// [G, M/G, C/G, R, S]) with explicit strides; any = let oneDNN choose.
memory::desc Weights(const Problem& pr, memory::data_type dt, bool any) {
  const int64_t cg = pr.c / pr.g, mg = pr.m / pr.g, M = pr.m;
  if (pr.g == 1) {
    memory::dims dims = {M, cg, pr.r, pr.s};
    if (any) return memory::desc(dims, dt, tag::any);
    return memory::desc(dims, dt, memory::dims{1, M, pr.s * cg * M, cg * M});
  }
  memory::dims dims = {pr.g, mg, cg, pr.r, pr.s};
  if (any) return memory::desc(dims, dt, tag::any);
  return memory::desc(dims, dt, memory::dims{mg, 1, M, pr.s * cg * M, cg * M});
}

std::shared_ptr<Entry> Build(const Problem& pr) {
  const auto dt = pr.dtype == 1 ? memory::data_type::bf16 : memory::data_type::f32;
  auto& eng = Engine();
  const memory::dims strides = {pr.sh, pr.sw}, dil = {pr.dh - 1, pr.dw - 1};
  const memory::dims pad_l = {pr.pt, pr.pl}, pad_r = {pr.pb, pr.pr};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto src = Act(pr, dt, false), dst = Act(pr, dt, true);
  const auto w_any = Weights(pr, dt, true);
  auto e = std::make_shared<Entry>();
  e->user_w = Weights(pr, dt, false);
  dnnl::convolution_forward::primitive_desc fwd(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src, w_any,
      dst, strides, dil, pad_l, pad_r, attr);
  if (pr.kind == kFwd) {
    e->prim = dnnl::convolution_forward(fwd);
    e->prim_w = fwd.weights_desc();
    e->scratch = fwd.scratchpad_desc();
  } else if (pr.kind == kBwdData) {
    dnnl::convolution_backward_data::primitive_desc bwd(
        eng, dnnl::algorithm::convolution_direct, src, w_any, dst, strides, dil, pad_l, pad_r,
        fwd, attr);
    e->prim = dnnl::convolution_backward_data(bwd);
    e->prim_w = bwd.weights_desc();
    e->scratch = bwd.scratchpad_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc bwd(
        eng, dnnl::algorithm::convolution_direct, src, w_any, dst, strides, dil, pad_l, pad_r,
        fwd, attr);
    e->prim = dnnl::convolution_backward_weights(bwd);
    e->prim_w = bwd.diff_weights_desc();
    e->scratch = bwd.scratchpad_desc();
  }
  e->reorder_w = e->prim_w != e->user_w;
  if (e->reorder_w) {
    e->reorder = pr.kind == kBwdWeights
                     ? dnnl::reorder(dnnl::reorder::primitive_desc(eng, e->prim_w, eng, e->user_w))
                     : dnnl::reorder(dnnl::reorder::primitive_desc(eng, e->user_w, eng, e->prim_w));
  }
  return e;
}

std::shared_ptr<Entry> Lookup(const Problem& pr) {
  const std::string k = pr.key();
  std::lock_guard<std::mutex> lock(g_mu);
  auto& cache = Cache();
  auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  auto e = Build(pr);
  cache.emplace(k, e);
  return e;
}

struct Buf {  // 64-byte aligned heap block
  void* ptr = nullptr;
  explicit Buf(size_t bytes) {
    if (bytes) ptr = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  }
  ~Buf() { std::free(ptr); }
};

ffi::Error Run(Kind kind, ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b,
               ffi::Result<ffi::AnyBuffer> out, ffi::Span<const int64_t> strides,
               ffi::Span<const int64_t> dilation, ffi::Span<const int64_t> pad_lo,
               ffi::Span<const int64_t> pad_hi, int64_t groups) {
  const ffi::DataType t = a.element_type();
  if (t != b.element_type() || t != out->element_type() ||
      (t != ffi::DataType::F32 && t != ffi::DataType::BF16)) {
    return ffi::Error::InvalidArgument("onednn conv: operands must all be float32 or all bfloat16");
  }
  if (strides.size() != 2 || dilation.size() != 2 || pad_lo.size() != 2 || pad_hi.size() != 2) {
    return ffi::Error::InvalidArgument("onednn conv: strides/dilation/pads need 2 entries each");
  }
  // x [N,H,W,C], w [R,S,C/G,M], y [N,P,Q,M]
  ffi::AnyBuffer::Dimensions xd, wd, yd;
  if (kind == kFwd) {
    xd = a.dimensions(); wd = b.dimensions(); yd = out->dimensions();
  } else if (kind == kBwdData) {
    yd = a.dimensions(); wd = b.dimensions(); xd = out->dimensions();
  } else {
    xd = a.dimensions(); yd = b.dimensions(); wd = out->dimensions();
  }
  if (xd.size() != 4 || wd.size() != 4 || yd.size() != 4) {
    return ffi::Error::InvalidArgument("onednn conv: operands must be 4-D");
  }
  Problem pr{};
  pr.kind = kind;
  pr.dtype = t == ffi::DataType::BF16 ? 1 : 0;
  pr.n = xd[0]; pr.h = xd[1]; pr.w = xd[2]; pr.c = xd[3];
  pr.p = yd[1]; pr.q = yd[2]; pr.m = yd[3];
  pr.r = wd[0]; pr.s = wd[1]; pr.g = groups;
  pr.sh = strides[0]; pr.sw = strides[1]; pr.dh = dilation[0]; pr.dw = dilation[1];
  pr.pt = pad_lo[0]; pr.pl = pad_lo[1]; pr.pb = pad_hi[0]; pr.pr = pad_hi[1];
  if (groups < 1 || pr.c % groups || pr.m % groups || wd[2] * groups != pr.c || wd[3] != pr.m ||
      yd[0] != pr.n) {
    return ffi::Error::InvalidArgument("onednn conv: inconsistent shapes or groups");
  }
  if (pr.n == 0 || pr.c == 0 || pr.m == 0 || pr.p == 0 || pr.q == 0 || pr.h == 0 || pr.w == 0) {
    std::memset(out->untyped_data(), 0, out->size_bytes());
    return ffi::Error::Success();
  }
  const int64_t nt = pool.num_threads();
  if (nt > 0 && omp_get_max_threads() != nt) omp_set_num_threads(static_cast<int>(nt));
  try {
    auto e = Lookup(pr);
    auto& eng = Engine();
    const auto dt = pr.dtype == 1 ? memory::data_type::bf16 : memory::data_type::f32;
    dnnl::stream strm(eng);
    Buf scratch(e->scratch.get_size());
    memory scratch_m(e->scratch, eng, scratch.ptr);
    Buf wtmp(e->reorder_w ? e->prim_w.get_size() : 0);
    if (kind == kFwd || kind == kBwdData) {
      // fwd: (x, w) -> y; bwd data: (dy, w) -> dx
      const bool fwd = kind == kFwd;
      memory in_m(Act(pr, dt, !fwd), eng, a.untyped_data());
      memory out_m(Act(pr, dt, fwd), eng, out->untyped_data());
      memory wu(e->user_w, eng, b.untyped_data());
      memory wp = wu;
      if (e->reorder_w) {
        wp = memory(e->prim_w, eng, wtmp.ptr);
        e->reorder.execute(strm, {{DNNL_ARG_FROM, wu}, {DNNL_ARG_TO, wp}});
      }
      e->prim.execute(strm, {{fwd ? DNNL_ARG_SRC : DNNL_ARG_DIFF_DST, in_m},
                             {DNNL_ARG_WEIGHTS, wp},
                             {fwd ? DNNL_ARG_DST : DNNL_ARG_DIFF_SRC, out_m},
                             {DNNL_ARG_SCRATCHPAD, scratch_m}});
    } else {
      memory x_m(Act(pr, dt, false), eng, a.untyped_data());
      memory dy_m(Act(pr, dt, true), eng, b.untyped_data());
      memory wu(e->user_w, eng, out->untyped_data());
      memory wp = e->reorder_w ? memory(e->prim_w, eng, wtmp.ptr) : wu;
      e->prim.execute(strm, {{DNNL_ARG_SRC, x_m}, {DNNL_ARG_DIFF_DST, dy_m},
                             {DNNL_ARG_DIFF_WEIGHTS, wp}, {DNNL_ARG_SCRATCHPAD, scratch_m}});
      if (e->reorder_w) e->reorder.execute(strm, {{DNNL_ARG_FROM, wp}, {DNNL_ARG_TO, wu}});
    }
    strm.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("onednn conv: ") + err.what());
  } catch (const std::exception& err) {
    return ffi::Error::Internal(std::string("onednn conv: ") + err.what());
  }
  return ffi::Error::Success();
}

#define CONV_BINDING(KIND)                                                                     \
  [](ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out, \
     ffi::Span<const int64_t> st, ffi::Span<const int64_t> di, ffi::Span<const int64_t> lo,      \
     ffi::Span<const int64_t> hi, int64_t g) { return Run(KIND, pool, a, b, out, st, di, lo, hi, g); }

}  // namespace

#define CONV_SIGNATURE                                                                 \
  ffi::Ffi::Bind()                                                                     \
      .Ctx<ffi::ThreadPool>()                                                          \
      .Arg<ffi::AnyBuffer>()                                                           \
      .Arg<ffi::AnyBuffer>()                                                           \
      .Ret<ffi::AnyBuffer>()                                                           \
      .Attr<ffi::Span<const int64_t>>("strides")                                       \
      .Attr<ffi::Span<const int64_t>>("dilation")                                      \
      .Attr<ffi::Span<const int64_t>>("pad_lo")                                        \
      .Attr<ffi::Span<const int64_t>>("pad_hi")                                        \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(codesign_onednn_conv_fwd, CONV_BINDING(kFwd), CONV_SIGNATURE);
XLA_FFI_DEFINE_HANDLER_SYMBOL(codesign_onednn_conv_bwd_data, CONV_BINDING(kBwdData), CONV_SIGNATURE);
XLA_FFI_DEFINE_HANDLER_SYMBOL(codesign_onednn_conv_bwd_weights, CONV_BINDING(kBwdWeights),
                              CONV_SIGNATURE);

extern "C" const char* codesign_onednn_version() {
  static std::string v;
  static std::once_flag once;
  std::call_once(once, [] {
    const dnnl_version_t* ver = dnnl_version();
    v = std::to_string(ver->major) + "." + std::to_string(ver->minor) + "." +
        std::to_string(ver->patch);
  });
  return v.c_str();
}
