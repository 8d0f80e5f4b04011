// What the oneDNN kernel families (onednn_conv.cc, onednn_matmul.cc) share: the CPU engine, the one
// lock every call takes, element types, and a cache of primitives built once per problem.
//
// The lock: oneDNN runs each call on an OpenMP team as wide as the machine; XLA calls in from one of
// its own pool's threads, and two calls at once would put twice as many busy threads as cores.
#ifndef JAXSTYLE_CSRC_ONEDNN_H_
#define JAXSTYLE_CSRC_ONEDNN_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace jaxstyle {

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

inline std::mutex& CallLock() {
  static std::mutex lock;
  return lock;
}

inline bool OneDnnType(xla::ffi::DataType type, dnnl::memory::data_type* out) {
  if (type == xla::ffi::DataType::BF16) *out = dnnl::memory::data_type::bf16;
  else if (type == xla::ffi::DataType::F32) *out = dnnl::memory::data_type::f32;
  else return false;
  return true;
}

// The primitive kept for `key`, built by `make()` on first use; called under CallLock().
template <typename T, typename Make>
T& Cached(const std::string& key, Make make) {
  static std::map<std::string, std::unique_ptr<T>> cache;
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, std::make_unique<T>(make())).first;
  return *it->second;
}

// oneDNN's kernel name for a zero-padded k×k convolution ("brgconv:avx512_core_amx"), "" if none.
std::string ConvImplementation(dnnl::memory::data_type type, int64_t h, int64_t w, int64_t c, int64_t d,
                               int64_t k);

// The convolutions' cache of weights packed into their kernels' layouts (onednn_conv.cc), for
// module.cc: what it did since the process started, and its byte budget (0: pack on every call).
struct WeightCacheStats {
  uint64_t hits = 0, misses = 0, uncached = 0, evictions = 0;  // packings found / made and kept / not kept
  uint64_t reused_addresses = 0;   // calls whose weights came where other weights of their layout were
  uint64_t entries = 0, bytes = 0, budget = 0;                  // what it holds now
  double verify_s = 0, copy_s = 0, pack_s = 0;                  // time comparing, copying, reordering
};
WeightCacheStats GetWeightCacheStats();
void SetWeightCacheBudget(uint64_t bytes);   // evicts down to it; 0 empties the cache

}  // namespace jaxstyle

// The XLA FFI handlers (registered by module.cc).
extern "C" {
XLA_FFI_Error* JaxstyleOnednnConv(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* JaxstyleOnednnConvBwdWeights(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* JaxstyleOnednnMatmul(XLA_FFI_CallFrame* call_frame);
}

#endif  // JAXSTYLE_CSRC_ONEDNN_H_
