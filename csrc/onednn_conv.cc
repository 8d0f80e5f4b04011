// Stride-1 2-D convolutions on oneDNN, as XLA FFI handlers: what `jaxstyle/nets/onednn_conv.py` calls
// from inside a jitted program, so the program stays one XLA executable while its convolutions run on
// the CPU's bf16 matrix units (AMX, AVX512-BF16), which XLA:CPU itself does not use for convolutions.
//
// Activations are NHWC, weights HWIO, as in jaxstyle; zero padding is given per side (reflection is
// done by the caller). bf16 or f32 in, f32 accumulation, the output in the input's type. Handlers:
//   jaxstyle_onednn_conv            y  = relu?(conv(x, w) + b)
//   jaxstyle_onednn_conv_bwd_weights dw = the kernel's gradient of conv(x, ·) against dy
// (the input's gradient is a forward convolution of dy with the flipped kernel: the Python side.)
//
// Primitives are built once per shape (a JIT-compiled kernel each) and kept. Every call takes one
// global lock: oneDNN runs each call on an OpenMP team as wide as the machine, and two at once would
// put twice as many threads as cores on it.
#include <Python.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

std::mutex& CallLock() {
  static std::mutex lock;
  return lock;
}

bool OneDnnType(ffi::DataType type, dt* out) {
  if (type == ffi::DataType::BF16) *out = dt::bf16;
  else if (type == ffi::DataType::F32) *out = dt::f32;
  else return false;
  return true;
}

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

template <typename T>
T& Cached(const std::string& key, T (*make)(const Problem&, dt), const Problem& p, dt extra) {
  static std::map<std::string, std::unique_ptr<T>> cache;
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, std::make_unique<T>(make(p, extra))).first;
  return *it->second;
}

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

ffi::Error Describe(const ffi::AnyBuffer& x, ffi::Span<const int64_t> kernel, int64_t top,
                    int64_t bottom, int64_t left, int64_t right, bool relu, Problem* p) {
  dt type;
  if (!OneDnnType(x.element_type(), &type))
    return ffi::Error::InvalidArgument("onednn conv: the input must be bfloat16 or float32");
  auto xd = x.dimensions();
  if (xd.size() != 4 || kernel.size() != 4)
    return ffi::Error::InvalidArgument("onednn conv: expected NHWC input and HWIO kernel");
  *p = Problem{type, xd[0], xd[1], xd[2], xd[3], kernel[3], kernel[0], kernel[1], top, bottom, left, right, relu};
  if (kernel[2] != p->c || p->oh() < 1 || p->ow() < 1)
    return ffi::Error::InvalidArgument("onednn conv: kernel, input and padding do not fit");
  return ffi::Error::Success();
}

ffi::Error ConvImpl(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> y,
                    int64_t top, int64_t bottom, int64_t left, int64_t right, bool relu) {
  Problem p;
  if (auto error = Describe(x, w.dimensions(), top, bottom, left, right, relu, &p); error.failure())
    return error;
  dt bias_type;
  if (w.element_type() != x.element_type() || y->element_type() != x.element_type() ||
      !OneDnnType(b.element_type(), &bias_type))
    return ffi::Error::InvalidArgument("onednn conv: input, kernel and output types differ");
  try {
    std::lock_guard<std::mutex> hold(CallLock());
    Forward& f = Cached<Forward>(p.Key("fwd", bias_type), MakeForward, p, bias_type);
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
                               int64_t top, int64_t bottom, int64_t left, int64_t right) {
  Problem p;
  if (auto error = Describe(x, dw->dimensions(), top, bottom, left, right, false, &p); error.failure())
    return error;
  dt grad_type;
  if (dy.element_type() != x.element_type() || !OneDnnType(dw->element_type(), &grad_type))
    return ffi::Error::InvalidArgument("onednn conv backward: unsupported types");
  try {
    std::lock_guard<std::mutex> hold(CallLock());
    BackwardWeights& bw = Cached<BackwardWeights>(p.Key("bwd_w", grad_type), MakeBackwardWeights, p,
                                                  grad_type);
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

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxstyleOnednnConv, ConvImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_bottom")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("pad_right")
                                  .Attr<bool>("relu"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxstyleOnednnConvBwdWeights, BackwardWeightsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_bottom")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("pad_right"));

// ---- The Python module: the handlers as capsules for jax.ffi, and what the CPU offers. ----

namespace {

PyObject* Handlers(PyObject*, PyObject*) {
  PyObject* out = PyDict_New();
  auto add = [&](const char* name, void* fn) {
    PyObject* capsule = PyCapsule_New(fn, nullptr, nullptr);
    PyDict_SetItemString(out, name, capsule);
    Py_DECREF(capsule);
  };
  add("jaxstyle_onednn_conv", reinterpret_cast<void*>(JaxstyleOnednnConv));
  add("jaxstyle_onednn_conv_bwd_weights", reinterpret_cast<void*>(JaxstyleOnednnConvBwdWeights));
  return out;
}

const char* IsaName(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2_vnni_2: return "avx2_vnni_2";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_fp16: return "avx512_core_fp16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_amx_fp16: return "avx512_core_amx_fp16";
    default: return "unknown";
  }
}

PyObject* CpuIsa(PyObject*, PyObject*) { return PyUnicode_FromString(IsaName(dnnl::get_effective_cpu_isa())); }

// implementation(dtype, n, h, w, c, d, k): the name of the kernel oneDNN picks for that zero-padded
// k×k forward convolution ("brgconv:avx512_core_amx", ...), or None where it has none for the type.
PyObject* Implementation(PyObject*, PyObject* args) {
  const char* type_name;
  long long n, h, w, c, d, k;
  if (!PyArg_ParseTuple(args, "sLLLLLL", &type_name, &n, &h, &w, &c, &d, &k)) return nullptr;
  dt type = std::string(type_name) == "bfloat16" ? dt::bf16 : dt::f32;
  Problem p{type, n, h, w, c, d, k, k, k / 2, k / 2, k / 2, k / 2, false};
  try {
    return PyUnicode_FromString(ForwardDesc(p, type, dnnl::prop_kind::forward_inference).impl_info_str());
  } catch (const dnnl::error&) {
    Py_RETURN_NONE;
  }
}

PyMethodDef kMethods[] = {
    {"handlers", Handlers, METH_NOARGS, "FFI handler capsules by target name."},
    {"cpu_isa", CpuIsa, METH_NOARGS, "The instruction set oneDNN dispatches to on this CPU."},
    {"implementation", Implementation, METH_VARARGS, "oneDNN's kernel for a k x k convolution."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_onednn_conv", "oneDNN convolutions for jax.ffi.", -1,
                       kMethods};

}  // namespace

PyMODINIT_FUNC PyInit__onednn_conv() { return PyModule_Create(&kModule); }
