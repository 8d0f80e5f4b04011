// Stride-1 2-D convolutions on oneDNN as XLA FFI handlers (jaxstyle/nets/onednn.py: `conv2d`), so
// the program stays one XLA executable while its convolutions run on the CPU's bf16 matrix units
// (AMX, AVX512-BF16), which XLA:CPU does not use for convolutions.
//
// Activations are NHWC, weights HWIO, as in jaxstyle; zero padding is given per side (reflection is
// the caller's). bf16 or f32 in, f32 accumulation, the output in the input's type. Handlers:
//   jaxstyle_onednn_conv             y  = relu?(conv(x, w) + b), bias and ReLU fused into the kernel
//   jaxstyle_onednn_conv_bwd_weights dw = the kernel's gradient of conv(x, ·) against dy
// (the input's gradient is a forward convolution of dy with the flipped kernel: the Python side).
// Weights are reordered into the kernel's preferred blocked layout on every call, as PyTorch's eager
// mode does: params are arguments of the program (they change every training step), so no layout
// can be prepared once outside it; docs/scaling.md §9 measures what the reorders cost.
#include <cstdint>
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

// A primitive and, where its preferred weights layout is not HWIO, the reorder into it and a buffer
// for the reordered weights (used under the call lock only).
struct Forward {
  dnnl::convolution_forward conv;
  dnnl::memory::desc user_weights;
  dnnl::reorder pack;
  dnnl::memory packed;
};

struct BackwardWeights {
  dnnl::convolution_backward_weights conv;
  dnnl::memory::desc user_weights;
  dnnl::reorder unpack;
  dnnl::memory computed;
};

Forward MakeForward(const Problem& p, dt bias_type) {
  auto pd = ForwardDesc(p, bias_type, dnnl::prop_kind::forward_inference);
  Forward f{dnnl::convolution_forward(pd), p.weights(p.type, tag::hwio), {}, {}};
  if (pd.weights_desc() != f.user_weights) {
    f.packed = dnnl::memory(pd.weights_desc(), Engine());
    f.pack = dnnl::reorder(dnnl::memory(f.user_weights, Engine(), nullptr), f.packed);
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
    dnnl::memory weights(f.user_weights, Engine(), w.untyped_data());
    if (f.packed) {
      f.pack.execute(stream, weights, f.packed);
      weights = f.packed;
    }
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
