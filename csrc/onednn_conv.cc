// Stride-1 2-D convolutions on oneDNN as XLA FFI handlers (jaxstyle/nets/onednn.py: `conv2d`), so
// the program stays one XLA executable while its convolutions run on the CPU's bf16 matrix units
// (AMX, AVX512-BF16), which XLA:CPU does not use for convolutions.
//
// Activations are NHWC, weights HWIO, as in jaxstyle; zero padding is given per side (reflection is
// the caller's). bf16 or f32 in, f32 accumulation, the output in the input's type. Handlers:
//   jaxstyle_onednn_conv             y  = relu?(conv(x, w) + b), bias and ReLU fused into the kernel
//   jaxstyle_onednn_conv_bwd_weights dw = the kernel's gradient of conv(x, ·) against dy
// (the input's gradient is a forward convolution of dy with the flipped kernel: the Python side).
//
// Weights: the kernels want them in a blocked layout (`AcdB16b64a2b` and the like), and reordering
// them on every call cost 9% of the plain bf16 program at 512² (docs/scaling.md §9). Params are
// arguments of the program, in buffers XLA chooses, so nothing can be packed once outside it; the
// packed forms are kept instead (`WeightCache`), each beside a copy of the bytes it was packed from,
// and used only for weights equal to those bytes.
#include <chrono>
#include <cstdint>
#include <cstring>
#include <list>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "onednn.h"

namespace ffi = xla::ffi;

namespace jaxstyle {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// One convolution problem: NHWC input [n, h, w, c], HWIO kernel [kh, kw, c, d], zero pads per side.
struct Problem {
  dt type;
  int64_t n, h, w, c, d, kh, kw, top, bottom, left, right;
  bool relu;

  int64_t oh() const { return h + top + bottom - kh + 1; }
  int64_t ow() const { return w + left + right - kw + 1; }
  dnnl::memory::desc src() const { return {{n, c, h, w}, type, tag::nhwc}; }
  dnnl::memory::desc dst() const { return {{n, d, oh(), ow()}, type, tag::nhwc}; }
  dnnl::memory::desc weights(dt t, tag f) const { return {{d, c, kh, kw}, t, f}; }
  dnnl::memory::desc bias(dt t) const { return {{d}, t, tag::a}; }
  std::string Key(const char* kind, dt extra) const {
    std::ostringstream s;
    s << kind << ':' << int(type) << ':' << int(extra) << ':' << n << ',' << h << ',' << w << ',' << c
      << ',' << d << ',' << kh << ',' << kw << ',' << top << ',' << bottom << ',' << left << ','
      << right << ',' << relu;
    return s.str();
  }
};

dnnl::convolution_forward::primitive_desc ForwardDesc(const Problem& p, dt bias_type,
                                                      dnnl::prop_kind prop) {
  dnnl::post_ops ops;
  if (p.relu) ops.append_eltwise(dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  return dnnl::convolution_forward::primitive_desc(
      Engine(), prop, dnnl::algorithm::convolution_direct, p.src(), p.weights(p.type, tag::any),
      p.bias(bias_type), p.dst(), {1, 1}, {p.top, p.left}, {p.bottom, p.right}, attr);
}

// A primitive and, where its preferred weights layout is not HWIO, that layout, the reorder into it
// and a buffer for weights the cache does not keep (made on first use, used under the call lock only).
struct Forward {
  dnnl::convolution_forward conv;
  dnnl::memory::desc user_weights;
  dnnl::memory::desc packed_weights;   // zero (is_zero()) where the kernel reads HWIO as it is
  dnnl::reorder pack;
  dnnl::memory scratch;
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Weights packed into a kernel's layout, kept between calls within a byte budget, least recently used
// evicted first. An entry serves only weights whose bytes equal, byte for byte, the copy it keeps of
// the bytes it was packed from: a packing is a function of those bytes and the two layouts, so a hit
// returns exactly what the reorder would write. The weights' address is only a hint of which entry to
// compare first: XLA puts different tensors in one buffer (a scan's kernels go through its loop's
// buffer; a donated param comes back updated in its old buffer; temporaries such as the decoder's
// phase kernels share space) and may hand one tensor over in different buffers, so an address proves
// nothing (tests/test_onednn.py counts it happening). Comparing reads the weights and the copy once
// (memcmp stops at the first differing bytes on a miss), ~5× cheaper than the reorder it saves
// (benchmarks/onednn_kernels.py). Entries are keyed by both layouts, not by the problem: the content
// and style passes at other sizes share a packing wherever their kernels' layouts agree.
// Called under CallLock() only.
class WeightCache {
 public:
  // The packed form of the weights at `data` (layout `user`), from the cache or packed now into a
  // new entry — or into `scratch` where the budget cannot hold it (as with no cache at all).
  dnnl::memory Get(const dnnl::memory::desc& user, const void* data, const dnnl::memory::desc& packed,
                   const dnnl::reorder& pack, dnnl::memory* scratch, dnnl::stream& stream) {
    size_t raw_bytes = user.get_size(), need = raw_bytes + packed.get_size();
    auto start = std::chrono::steady_clock::now();
    auto hit = Find(user, data, packed, raw_bytes);
    stats_.verify_s += Seconds(start);
    if (hit != entries_.end()) {
      ++stats_.hits;
      hit->last_data = data;
      entries_.splice(entries_.begin(), entries_, hit);
      return hit->memory;
    }
    dnnl::memory from(user, Engine(), const_cast<void*>(data));
    if (need > budget_) {
      ++stats_.uncached;
      if (!*scratch) *scratch = dnnl::memory(packed, Engine());
      Pack(pack, from, *scratch, stream);
      return *scratch;
    }
    // Evicted entries of the same layouts are refilled rather than freed and allocated again: in a
    // training loop the last step's weights make way for this step's, and fresh pages cost faults.
    std::optional<Entry> recycled;
    while (stats_.bytes + need > budget_) {
      Entry& victim = entries_.back();
      stats_.bytes -= victim.raw_bytes + victim.packed.get_size();
      if (!recycled && victim.Fits(user, packed, raw_bytes)) recycled = std::move(victim);
      entries_.pop_back();
      ++stats_.evictions;
    }
    Entry entry = recycled ? std::move(*recycled)
                           : Entry{user, packed, raw_bytes, std::make_unique<char[]>(raw_bytes),
                                   dnnl::memory(packed, Engine()), nullptr};
    start = std::chrono::steady_clock::now();
    std::memcpy(entry.raw.get(), data, raw_bytes);
    stats_.copy_s += Seconds(start);
    Pack(pack, from, entry.memory, stream);
    entry.last_data = data;
    entries_.push_front(std::move(entry));
    stats_.bytes += need;
    ++stats_.misses;
    return entries_.front().memory;
  }

  void SetBudget(uint64_t bytes) {
    budget_ = bytes;
    while (stats_.bytes > budget_) {
      stats_.bytes -= entries_.back().raw_bytes + entries_.back().packed.get_size();
      entries_.pop_back();
      ++stats_.evictions;
    }
  }

  WeightCacheStats Stats() const {
    WeightCacheStats s = stats_;
    s.entries = entries_.size();
    s.budget = budget_;
    return s;
  }

 private:
  struct Entry {
    dnnl::memory::desc user, packed;
    size_t raw_bytes;
    std::unique_ptr<char[]> raw;   // the bytes `memory` was packed from
    dnnl::memory memory;
    const void* last_data;         // where they were last seen: which entry to compare first

    bool Fits(const dnnl::memory::desc& u, const dnnl::memory::desc& p, size_t bytes) const {
      return raw_bytes == bytes && user == u && packed == p;
    }
  };

  std::list<Entry>::iterator Find(const dnnl::memory::desc& user, const void* data,
                                  const dnnl::memory::desc& packed, size_t raw_bytes) {
    auto same = [&](const Entry& e) { return std::memcmp(e.raw.get(), data, raw_bytes) == 0; };
    auto hinted = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->last_data == data && it->Fits(user, packed, raw_bytes)) {
        if (same(*it)) return it;
        ++stats_.reused_addresses;   // other weights where these were: what a pointer key gets wrong
        hinted = it;
        break;
      }
    }
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it != hinted && it->Fits(user, packed, raw_bytes) && same(*it)) return it;
    return entries_.end();
  }

  void Pack(const dnnl::reorder& pack, dnnl::memory& from, dnnl::memory& to, dnnl::stream& stream) {
    auto start = std::chrono::steady_clock::now();
    pack.execute(stream, from, to);
    stream.wait();
    stats_.pack_s += Seconds(start);
  }

  std::list<Entry> entries_;   // most recently used first
  // What the default plain and portrait programs keep at bf16 (~0.1–0.2 GB: every weight once raw and
  // once packed, twice where training flips them), with room; jaxstyle/nets/onednn.py sets it.
  uint64_t budget_ = uint64_t{512} << 20;
  WeightCacheStats stats_;
};

WeightCache& Weights() {
  static WeightCache cache;
  return cache;
}

struct BackwardWeights {
  dnnl::convolution_backward_weights conv;
  dnnl::memory::desc user_weights;
  dnnl::reorder unpack;
  dnnl::memory computed;
};

Forward MakeForward(const Problem& p, dt bias_type) {
  auto pd = ForwardDesc(p, bias_type, dnnl::prop_kind::forward_inference);
  Forward f{dnnl::convolution_forward(pd), p.weights(p.type, tag::hwio), {}, {}, {}};
  if (pd.weights_desc() != f.user_weights) {
    f.packed_weights = pd.weights_desc();
    f.pack = dnnl::reorder(
        dnnl::reorder::primitive_desc(Engine(), f.user_weights, Engine(), f.packed_weights));
  }
  return f;
}

BackwardWeights MakeBackwardWeights(const Problem& p, dt grad_type) {
  auto hint = ForwardDesc(p, grad_type, dnnl::prop_kind::forward_training);
  dnnl::convolution_backward_weights::primitive_desc pd(
      Engine(), dnnl::algorithm::convolution_direct, p.src(), p.weights(grad_type, tag::any),
      p.dst(), {1, 1}, {p.top, p.left}, {p.bottom, p.right}, hint);
  BackwardWeights b{dnnl::convolution_backward_weights(pd), p.weights(grad_type, tag::hwio), {}, {}};
  if (pd.diff_weights_desc() != b.user_weights) {
    b.computed = dnnl::memory(pd.diff_weights_desc(), Engine());
    b.unpack = dnnl::reorder(b.computed, dnnl::memory(b.user_weights, Engine(), nullptr));
  }
  return b;
}

ffi::Error Describe(const ffi::AnyBuffer& x, ffi::Span<const int64_t> kernel, ffi::Span<const int64_t> pads,
                    bool relu, Problem* p) {
  dt type;
  if (!OneDnnType(x.element_type(), &type))
    return ffi::Error::InvalidArgument("onednn conv: the input must be bfloat16 or float32");
  auto xd = x.dimensions();
  if (xd.size() != 4 || kernel.size() != 4 || pads.size() != 4)
    return ffi::Error::InvalidArgument("onednn conv: expected NHWC input, HWIO kernel and 4 pads");
  *p = Problem{type, xd[0], xd[1], xd[2], xd[3], kernel[3], kernel[0], kernel[1], pads[0], pads[1], pads[2],
               pads[3], relu};
  if (kernel[2] != p->c || p->oh() < 1 || p->ow() < 1)
    return ffi::Error::InvalidArgument("onednn conv: kernel, input and padding do not fit");
  return ffi::Error::Success();
}

ffi::Error ConvImpl(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> y,
                    ffi::Span<const int64_t> pads, bool relu) {
  Problem p;
  if (auto error = Describe(x, w.dimensions(), pads, relu, &p); error.failure())
    return error;
  dt bias_type;
  if (w.element_type() != x.element_type() || y->element_type() != x.element_type() ||
      !OneDnnType(b.element_type(), &bias_type))
    return ffi::Error::InvalidArgument("onednn conv: input, kernel and output types differ");
  try {
    std::lock_guard<std::mutex> hold(CallLock());
    Forward& f = Cached<Forward>(p.Key("fwd", bias_type), [&] { return MakeForward(p, bias_type); });
    dnnl::stream stream(Engine());
    dnnl::memory weights = f.packed_weights.is_zero()
        ? dnnl::memory(f.user_weights, Engine(), w.untyped_data())
        : Weights().Get(f.user_weights, w.untyped_data(), f.packed_weights, f.pack, &f.scratch, stream);
    f.conv.execute(stream, {{DNNL_ARG_SRC, dnnl::memory(p.src(), Engine(), x.untyped_data())},
                            {DNNL_ARG_WEIGHTS, weights},
                            {DNNL_ARG_BIAS, dnnl::memory(p.bias(bias_type), Engine(), b.untyped_data())},
                            {DNNL_ARG_DST, dnnl::memory(p.dst(), Engine(), y->untyped_data())}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn conv: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error BackwardWeightsImpl(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw,
                               ffi::Span<const int64_t> pads) {
  Problem p;
  if (auto error = Describe(x, dw->dimensions(), pads, false, &p); error.failure())
    return error;
  dt grad_type;
  if (dy.element_type() != x.element_type() || !OneDnnType(dw->element_type(), &grad_type))
    return ffi::Error::InvalidArgument("onednn conv backward: unsupported types");
  try {
    std::lock_guard<std::mutex> hold(CallLock());
    BackwardWeights& bw = Cached<BackwardWeights>(p.Key("bwd_w", grad_type),
                                                  [&] { return MakeBackwardWeights(p, grad_type); });
    dnnl::stream stream(Engine());
    dnnl::memory out(bw.user_weights, Engine(), dw->untyped_data());
    bw.conv.execute(stream, {{DNNL_ARG_SRC, dnnl::memory(p.src(), Engine(), x.untyped_data())},
                             {DNNL_ARG_DIFF_DST, dnnl::memory(p.dst(), Engine(), dy.untyped_data())},
                             {DNNL_ARG_DIFF_WEIGHTS, bw.computed ? bw.computed : out}});
    if (bw.computed) bw.unpack.execute(stream, bw.computed, out);
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn conv backward: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

WeightCacheStats GetWeightCacheStats() {
  std::lock_guard<std::mutex> hold(CallLock());
  return Weights().Stats();
}

void SetWeightCacheBudget(uint64_t bytes) {
  std::lock_guard<std::mutex> hold(CallLock());
  Weights().SetBudget(bytes);
}

std::string ConvImplementation(dt type, int64_t h, int64_t w, int64_t c, int64_t d, int64_t k) {
  Problem p{type, 1, h, w, c, d, k, k, k / 2, k / 2, k / 2, k / 2, false};
  try {
    return ForwardDesc(p, type, dnnl::prop_kind::forward_inference).impl_info_str();
  } catch (const dnnl::error&) {
    return "";
  }
}

}  // namespace jaxstyle

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxstyleOnednnConv, jaxstyle::ConvImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("pads")   // top, bottom, left, right
                                  .Attr<bool>("relu"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxstyleOnednnConvBwdWeights, jaxstyle::BackwardWeightsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("pads"));
