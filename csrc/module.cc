// The Python extension `jaxstyle.nets._onednn`: the FFI handlers as capsules for jax.ffi, and what
// oneDNN finds on this CPU (jaxstyle/nets/onednn.py registers and calls them).
#include <Python.h>

#include <string>

#include "onednn.h"

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
  add("jaxstyle_onednn_matmul", reinterpret_cast<void*>(JaxstyleOnednnMatmul));
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

PyObject* CpuIsa(PyObject*, PyObject*) {
  return PyUnicode_FromString(IsaName(dnnl::get_effective_cpu_isa()));
}

// conv_implementation(dtype, h, w, c, d, k): oneDNN's kernel for a zero-padded k×k convolution of a
// [1, h, w, c] input to d channels, or None where it has none for that type.
PyObject* ConvImplementation(PyObject*, PyObject* args) {
  const char* type_name;
  long long h, w, c, d, k;
  if (!PyArg_ParseTuple(args, "sLLLLL", &type_name, &h, &w, &c, &d, &k)) return nullptr;
  auto type = std::string(type_name) == "bfloat16" ? dnnl::memory::data_type::bf16
                                                   : dnnl::memory::data_type::f32;
  std::string name = jaxstyle::ConvImplementation(type, h, w, c, d, k);
  if (name.empty()) Py_RETURN_NONE;
  return PyUnicode_FromString(name.c_str());
}

// weight_cache_stats(): the packed-weights cache's counters (csrc/onednn.h: WeightCacheStats).
PyObject* WeightCacheStats(PyObject*, PyObject*) {
  jaxstyle::WeightCacheStats s = jaxstyle::GetWeightCacheStats();
  return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:d,s:d,s:d}", "hits", s.hits, "misses",
                       s.misses, "uncached", s.uncached, "evictions", s.evictions, "reused_addresses",
                       s.reused_addresses, "entries", s.entries, "bytes", s.bytes, "budget", s.budget,
                       "verify_s", s.verify_s, "copy_s", s.copy_s, "pack_s", s.pack_s);
}

// set_weight_cache_budget(bytes): at most this many bytes of weights kept packed; 0 packs on every call.
PyObject* SetWeightCacheBudget(PyObject*, PyObject* args) {
  unsigned long long bytes;
  if (!PyArg_ParseTuple(args, "K", &bytes)) return nullptr;
  jaxstyle::SetWeightCacheBudget(bytes);
  Py_RETURN_NONE;
}

PyMethodDef kMethods[] = {
    {"handlers", Handlers, METH_NOARGS, "FFI handler capsules by target name."},
    {"cpu_isa", CpuIsa, METH_NOARGS, "The instruction set oneDNN dispatches to on this CPU."},
    {"conv_implementation", ConvImplementation, METH_VARARGS, "oneDNN's kernel for a k x k convolution."},
    {"weight_cache_stats", WeightCacheStats, METH_NOARGS, "The packed-weights cache's counters."},
    {"set_weight_cache_budget", SetWeightCacheBudget, METH_VARARGS, "Bytes of packed weights kept."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_onednn", "oneDNN kernels for jax.ffi.", -1, kMethods};

}  // namespace

PyMODINIT_FUNC PyInit__onednn() { return PyModule_Create(&kModule); }
