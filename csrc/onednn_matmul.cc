// Batched matrix products on oneDNN as an XLA FFI handler (jaxstyle/nets/onednn.py: `matmul`): the
// two products of SANet's attention, softmax(q kᵀ) v, on the CPU's bf16 matrix units, which XLA:CPU
// does not use (it computes bf16 dots in float32).
//
//   jaxstyle_onednn_matmul  c[b] = op(a[b]) · op(b[b]),  op = transpose where `transpose_a/b` is set
// a and b share a type (bf16 or f32); c may be f32 or that type; accumulation is f32. A transposed
// operand is read through its strides, never copied.
#include <cstdint>
#include <sstream>
#include <string>

#include "onednn.h"

namespace ffi = xla::ffi;

namespace jaxstyle {
namespace {

using dt = dnnl::memory::data_type;
using dims = dnnl::memory::dims;

// [batch, rows, cols] of a row-major [batch, stored rows, stored cols] array, transposed if asked.
dnnl::memory::desc Operand(dt type, ffi::Span<const int64_t> d, bool transpose) {
  if (!transpose) return {{d[0], d[1], d[2]}, type, dims{d[1] * d[2], d[2], 1}};
  return {{d[0], d[2], d[1]}, type, dims{d[1] * d[2], 1, d[2]}};
}

ffi::Error MatmulImpl(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> c, bool transpose_a,
                      bool transpose_b) {
  dt type, out_type;
  if (a.element_type() != b.element_type() || !OneDnnType(a.element_type(), &type) ||
      !OneDnnType(c->element_type(), &out_type))
    return ffi::Error::InvalidArgument("onednn matmul: a and b must share a type, bf16 or f32");
  auto ad = a.dimensions(), bd = b.dimensions(), cd = c->dimensions();
  if (ad.size() != 3 || bd.size() != 3 || cd.size() != 3)
    return ffi::Error::InvalidArgument("onednn matmul: expected [batch, rows, cols] arrays");
  auto am = Operand(type, ad, transpose_a), bm = Operand(type, bd, transpose_b);
  dnnl::memory::desc cm({cd[0], cd[1], cd[2]}, out_type, dims{cd[1] * cd[2], cd[2], 1});
  if (am.get_dims()[2] != bm.get_dims()[1] || am.get_dims()[1] != cd[1] || bm.get_dims()[2] != cd[2] ||
      ad[0] != cd[0] || bd[0] != cd[0])
    return ffi::Error::InvalidArgument("onednn matmul: shapes do not fit");
  std::ostringstream key;
  key << "matmul:" << int(type) << ':' << int(out_type) << ':' << ad[0] << ',' << ad[1] << ',' << ad[2]
      << ',' << bd[1] << ',' << bd[2] << ',' << transpose_a << ',' << transpose_b;
  try {
    std::lock_guard<std::mutex> hold(CallLock());
    auto& product = Cached<dnnl::matmul>(key.str(), [&] {
      return dnnl::matmul(dnnl::matmul::primitive_desc(Engine(), am, bm, cm));
    });
    dnnl::stream stream(Engine());
    product.execute(stream, {{DNNL_ARG_SRC, dnnl::memory(am, Engine(), a.untyped_data())},
                             {DNNL_ARG_WEIGHTS, dnnl::memory(bm, Engine(), b.untyped_data())},
                             {DNNL_ARG_DST, dnnl::memory(cm, Engine(), c->untyped_data())}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn matmul: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxstyle

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxstyleOnednnMatmul, jaxstyle::MatmulImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b"));
