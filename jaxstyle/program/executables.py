"""Compiled programs kept on disk as XLA executables, so that a rerun neither traces nor compiles.

JAX's persistent cache (``compile_cache``) saves the compile, but a second process still traces the
portrait program, lowers it and hashes the module to find it: 2–3 s of a 512² run on a 2-core CPU
(``benchmarks/warm_start.py``). ``Cached`` wraps a jitted program and keys its executables by what
the call is instead (the program's name and settings, the arguments' tree, shapes and dtypes, the
devices, backend, JAX and the code's version), so a known call loads its executable and runs.

An entry, ``<dir>/<program>-<key>.jxe``, is one line ``jaxstyle-executable 1 <sha256 of the rest>``,
one line of JSON (the header) and the executable's bytes as XLA serialises them. Nothing in it is
unpickled: the header holds only numbers and strings, checked field by field against this call and
machine, and the trees around the executable (argument and output structure, avals, shardings) are
rebuilt from it and from the call's own arguments (``jax.experimental.serialize_executable`` pickles
its trees, which would let a file run Python code). An entry that is missing, truncated, corrupt
(checksum), foreign (another program, JAX, backend, CPU, device set or code version) or that XLA does
not accept is ignored, the program is compiled as usual (through the persistent cache), and the entry
is written again atomically.

What this cannot change: an executable is machine code, so whoever can write the cache folder can
run code as its user, exactly as with JAX's own persistent cache beside it. Entries are therefore
read only from a folder owned by this user that no one else may write (mode 0700 when created here),
and only from files owned by this user; elsewhere the cache is off (one line says so). The folder is
``compile_cache.cache_dir()/executables``, on and off with it (``JAXSTYLE_COMPILE_CACHE``).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

FORMAT = 1
MAGIC = b"jaxstyle-executable"
SUFFIX = ".jxe"
FOLDER = "executables"
MAX_HEADER_BYTES = 4 << 20      # the portrait program's header is ~60 KB
MAX_ENTRY_BYTES = 2 << 30       # its executable ~10–30 MB; anything this large is not ours


class Invalid(Exception):
  """An entry that must not be used; the message says why (for ``--debug`` logs and tests)."""


# --------------------------------------------------------------------------------- what a call is


def _package_files() -> list[Path]:
  """The sources whose change changes what a program computes: the package's Python files and the
  oneDNN extension (its custom calls are inside the executables)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  root = Path(__file__).resolve().parents[1]
  files = sorted(root.rglob("*.py"))
  try:
    spec = importlib.util.find_spec("jaxstyle.nets._onednn")
  except (ImportError, ValueError):
    spec = None
  if spec is not None and spec.origin and os.path.isfile(spec.origin):
    files.append(Path(spec.origin))
  return files


@functools.cache
def code_version() -> str:
  """sha256 over the package's sources and extension (a few ms): an edit makes old entries foreign."""
  digest = hashlib.sha256()
  for path in _package_files():
    digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
  return digest.hexdigest()


@functools.cache
def cpu_identity() -> str:
  """The host CPU's model and feature flags (XLA:CPU compiles for them): a cache folder shared with
  another machine never hands it code for instructions it lacks."""
  try:
    text = Path("/proc/cpuinfo").read_text()
  except OSError:
    import platform  # pylint: disable=g-import-not-at-top
    return f"{platform.machine()} {platform.processor()}"
  keep = [line for line in text.splitlines() if line.split(":")[0].strip() in ("model name", "flags")]
  return hashlib.sha256("\n".join(sorted(set(keep))).encode()).hexdigest()


def compile_options(devices: list) -> str:
  """sha256 of the compile options JAX derives from its flags for these devices (optimisation level,
  ``jax_disable_most_optimizations``, XLA's debug options): an executable built with others is foreign."""
  from jax._src import compiler  # pylint: disable=g-import-not-at-top
  options = compiler.get_compile_options(num_replicas=1, num_partitions=len(devices),
                                         device_assignment=np.array([[d.id for d in devices]]),
                                         backend=devices[0].client)
  return hashlib.sha256(options.SerializeAsString()).hexdigest()


def environment(devices: list) -> dict[str, Any]:
  """What besides the program decides its executable: versions, backend, devices, compiler flags."""
  import jaxlib  # pylint: disable=g-import-not-at-top
  client = devices[0].client
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "python": sys.version.split()[0],
          "platform": client.platform, "platform_version": client.platform_version,
          "devices": [[d.id, d.device_kind] for d in devices], "process": [jax.process_index(), jax.process_count()],
          "cpu": cpu_identity(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "x64": bool(jax.config.jax_enable_x64), "matmul_precision": str(jax.config.jax_default_matmul_precision),
          "compile_options": compile_options(devices), "code": code_version()}


def aval_text(x) -> str:
  """``x``'s abstract value as jit sees it (``float32[1,512,512,3]``, ``~float32[]`` weak)."""
  return str(jax.typeof(x))


def signature(args: tuple) -> tuple[list, Any, list[str]]:
  """(flat arguments, their tree, their avals' text) of a call ``program(*args)``."""
  flat, tree = jax.tree.flatten((args, {}))
  return flat, tree, [aval_text(x) for x in flat]


# ---------------------------------------------------------------------------------- the entry file


def encode_tree(tree) -> Any:
  """A tree of dicts (str keys), lists, tuples and leaves as JSON: leaves are their indices."""
  def encode(node):
    if isinstance(node, dict) and all(isinstance(k, str) for k in node):
      return {"dict": {k: encode(v) for k, v in node.items()}}
    if type(node) in (list, tuple):
      return {type(node).__name__: [encode(v) for v in node]}
    if isinstance(node, int):
      return node
    raise Invalid(f"an output tree node of type {type(node).__name__} is not kept")
  return encode(jax.tree.unflatten(tree, range(tree.num_leaves)))


def decode_tree(data: Any):
  """``encode_tree``'s JSON back to a tree structure (``Invalid`` for anything else)."""
  def decode(node):
    if isinstance(node, int) and not isinstance(node, bool):
      return node
    if isinstance(node, dict) and len(node) == 1:
      (kind, value), = node.items()
      if kind == "dict" and isinstance(value, dict):
        return {str(k): decode(v) for k, v in value.items()}
      if kind in ("list", "tuple") and isinstance(value, list):
        items = [decode(v) for v in value]
        return items if kind == "list" else tuple(items)
    raise Invalid("the output tree is malformed")
  return jax.tree.structure(decode(data))


def pack(header: dict, payload: bytes) -> bytes:
  """The entry's bytes: the magic line with the checksum of the header line and the payload."""
  body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n" + payload
  return MAGIC + b" %d " % FORMAT + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def unpack(data: bytes) -> tuple[dict, bytes]:
  """(header, payload) of an entry's bytes; ``Invalid`` if truncated, corrupt or of another format."""
  first, _, body = data.partition(b"\n")
  parts = first.split(b" ")
  if len(parts) != 3 or parts[0] != MAGIC or parts[1] != b"%d" % FORMAT:
    raise Invalid("not an entry of this format")
  if hashlib.sha256(body).hexdigest().encode() != parts[2]:
    raise Invalid("checksum mismatch (truncated or corrupt)")
  line, newline, payload = body.partition(b"\n")
  if not newline or len(line) > MAX_HEADER_BYTES:
    raise Invalid("no header line")
  try:
    header = json.loads(line)
  except (ValueError, RecursionError) as e:
    raise Invalid(f"header is not JSON ({e})") from None
  if not isinstance(header, dict) or header.get("payload_bytes") != len(payload):
    raise Invalid("header does not describe the payload")
  return header, payload


# ------------------------------------------------------------------------------- the folder's rules


def private_folder(directory: Path) -> str | None:
  """None when ``directory`` (created 0700 if missing) is owned by this user and writable by no one
  else, else why not: only such a folder may hand this process code."""
  try:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.stat()
  except OSError as e:
    return f"cannot create {directory} ({e.strerror})"
  if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
    return f"{directory} belongs to another user"
  if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
    return f"{directory} is writable by other users (chmod go-w it)"
  return None


def folder(compile_dir: Path | None, log: Callable[[str], None] | None = None) -> Path | None:
  """The executables' folder under the compile cache's ``compile_dir`` (None: the cache is off), or
  None, said in one line, when it is not ``private_folder``."""
  if compile_dir is None:
    return None
  directory = Path(compile_dir) / FOLDER
  why = private_folder(directory)
  if why is not None:
    if log:
      log(f"executable cache off: {why}")
    return None
  return directory


def read_entry(path: Path) -> bytes | None:
  """The bytes of the entry file ``path`` (no symlink, a regular file of this user that only it may
  write, within ``MAX_ENTRY_BYTES``); None when there is none; ``Invalid`` when it must not be read."""
  try:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
  except FileNotFoundError:
    return None
  except OSError as e:
    raise Invalid(f"cannot open ({e.strerror})") from None
  with os.fdopen(fd, "rb") as f:
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode) or (hasattr(os, "geteuid") and st.st_uid != os.geteuid()):
      raise Invalid("not a regular file of this user")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
      raise Invalid("writable by other users")
    if st.st_size > MAX_ENTRY_BYTES:
      raise Invalid(f"{st.st_size} bytes is larger than any entry")
    return f.read(MAX_ENTRY_BYTES + 1)


def write_entry(path: Path, data: bytes) -> None:
  """``data`` into ``path`` atomically (a temporary file beside it, 0600, then renamed over it)."""
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise


# --------------------------------------------------------------------- executables in and out of JAX


def _spec(sharding) -> list:
  """A ``NamedSharding``'s partition spec as JSON (axis names, None, or lists of names)."""
  if not isinstance(sharding, jax.sharding.NamedSharding) or sharding.memory_kind not in (None, "device"):
    raise Invalid(f"sharding {sharding} is not kept")
  return [list(p) if isinstance(p, tuple) else p for p in sharding.spec]


def _named(mesh: jax.sharding.Mesh, spec: Any) -> jax.sharding.NamedSharding:
  if not isinstance(spec, list) or not all(p is None or isinstance(p, str) or
                                           (isinstance(p, list) and all(isinstance(a, str) for a in p))
                                           for p in spec):
    raise Invalid("a sharding is malformed")
  parts = [tuple(p) if isinstance(p, list) else p for p in spec]
  if any(a not in mesh.axis_names for p in parts if p is not None for a in ((p,) if isinstance(p, str) else p)):
    raise Invalid("a sharding names an axis the mesh lacks")
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*parts))


def _aval_json(aval) -> list:
  return [list(aval.shape), aval.dtype.name, bool(aval.weak_type)]


def _aval(data: Any):
  from jax._src import core  # pylint: disable=g-import-not-at-top
  if (not isinstance(data, list) or len(data) != 3 or not isinstance(data[0], list) or
      not all(isinstance(d, int) and d >= 0 for d in data[0]) or data[1] not in _DTYPES):
    raise Invalid("an aval is malformed")
  return core.ShapedArray(tuple(data[0]), np.dtype(_DTYPES[data[1]]), weak_type=bool(data[2]))




@contextlib.contextmanager
def fresh_compiles():
  """JAX's persistent cache off inside: XLA:CPU (jaxlib 0.10) cannot serialise an executable that came
  back from that cache again (the copy fails to run: "Function ..._fusion not found"), so what is
  written here is compiled afresh, once. (``reset_cache`` is how JAX's docs re-read the cache's
  settings; the CLI and the studio compile on one thread at a time.)"""
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  was = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  compilation_cache.reset_cache()
  try:
    yield
  finally:
    jax.config.update("jax_enable_compilation_cache", was)
    compilation_cache.reset_cache()


_DTYPES = {name: getattr(jax.numpy, name) for name in (
    "float32", "bfloat16", "float16", "float64", "int32", "int64", "int8", "uint8", "uint32", "bool")}
_CUSTOM_CALL = re.compile(r'custom_call_target="([^"]+)"')


def describe(compiled) -> tuple[dict, bytes]:
  """(the header's description, the executable's bytes) of a ``jax.stages.Compiled``; ``Invalid``
  when it holds what the header cannot describe (effects, callbacks, constants, other shardings)."""
  unloaded = getattr(compiled._executable, "_unloaded_executable", None)  # pylint: disable=protected-access
  if unloaded is None:
    raise Invalid("this executable cannot be serialised")
  if (unloaded.unordered_effects or unloaded.ordered_effects or unloaded.host_callbacks or unloaded.keepalive
      or unloaded.mut is not None or compiled._params.const_args):  # pylint: disable=protected-access
    raise Invalid("the program has effects, callbacks or constants")
  payload = unloaded.backend.serialize_executable(unloaded.xla_executable)
  text = compiled.as_text() or ""
  description = {
      "name": unloaded.name, "kept": sorted(unloaded.kept_var_idx), "committed": bool(unloaded.committed),
      "in": [_aval_json(a) + [_spec(s)] for a, s in zip(unloaded.input_avals, unloaded.input_shardings)],
      "out": [_aval_json(a) + [_spec(s)] for a, s in zip(unloaded.output_avals, unloaded.output_shardings)],
      "out_tree": encode_tree(compiled.out_tree), "custom_calls": sorted(set(_CUSTOM_CALL.findall(text)))}
  return description, payload


def _custom_calls_ready(names: list) -> None:
  """Registers the oneDNN kernels an executable calls (tracing would have; a loaded one is not traced)."""
  if any(str(n).startswith("jaxstyle_onednn") for n in names):
    from jaxstyle.nets import onednn  # pylint: disable=g-import-not-at-top
    why = onednn.unavailable()
    if why is not None:
      raise Invalid(f"it calls the oneDNN kernels, which cannot run: {why}")


def rebuild(header: dict, payload: bytes, mesh: jax.sharding.Mesh, flat_args: list, in_tree):
  """A ``jax.stages.Compiled`` from a checked header and the executable's bytes, its trees built here:
  the arguments' from this call, the output's from the header's JSON; ``Invalid`` (or any exception,
  which the caller treats alike) when XLA or the checks refuse it."""
  from jax._src import stages  # pylint: disable=g-import-not-at-top
  from jax._src.interpreters import pxla  # pylint: disable=g-import-not-at-top
  from jax._src.lib import xla_client  # pylint: disable=g-import-not-at-top
  _custom_calls_ready(header["custom_calls"])
  kept = header["kept"]
  if not all(isinstance(i, int) for i in kept) or sorted(set(kept)) != kept or (kept and kept[-1] >= len(flat_args)):
    raise Invalid("the kept arguments are malformed")
  in_avals = [_aval(r[:3]) for r in header["in"]]
  out_avals = [_aval(r[:3]) for r in header["out"]]
  if len(in_avals) != len(kept) or any((a.shape, a.dtype) != (np.shape(flat_args[i]), jax.typeof(flat_args[i]).dtype)
                                       for a, i in zip(in_avals, kept)):
    raise Invalid("the header's inputs are not this call's")
  in_shardings = [_named(mesh, r[3]) for r in header["in"]]
  out_shardings = [_named(mesh, r[3]) for r in header["out"]]
  out_tree = decode_tree(header["out_tree"])
  if out_tree.num_leaves != len(out_avals):
    raise Invalid("the output tree does not match the outputs")
  client = mesh.devices.flat[0].client
  device_list = xla_client.DeviceList(tuple(mesh.devices.flat))
  executable = client.deserialize_executable(payload, device_list)
  if len(executable.get_parameter_layouts()) != len(in_avals) or \
      len(executable.get_output_layouts()) != len(out_avals):
    raise Invalid("the executable's parameters or outputs are not the header's")
  # pxla's own checks of a fresh compile: XLA's shardings and layouts against the ones rebuilt here.
  in_shardings = pxla._maybe_get_and_check_in_shardings(executable, in_shardings, device_list, in_avals, 0)  # pylint: disable=protected-access
  out_shardings = pxla._maybe_get_and_check_out_shardings(executable, out_shardings, device_list, out_avals, 0)  # pylint: disable=protected-access
  in_layouts, out_layouts = pxla._get_layouts_from_executable(  # pylint: disable=protected-access
      executable, [None] * len(in_avals), [None] * len(out_avals), 0, in_avals, out_avals)
  unloaded = pxla.UnloadedMeshExecutable(
      xla_executable=executable, device_list=device_list, backend=client, input_avals=in_avals,
      input_shardings=in_shardings, output_avals=out_avals, output_shardings=out_shardings,
      committed=bool(header["committed"]), name=str(header["name"]), unordered_effects=[], ordered_effects=[],
      keepalive=[], host_callbacks=[], kept_var_idx=set(kept), mut=None, xla_in_layouts=in_layouts,
      dispatch_in_layouts=pxla.get_dispatch_layouts(in_layouts, in_shardings, in_avals),
      xla_out_layouts=out_layouts, all_args_info=None, pgle_profiler=None)
  args_info = jax.tree.unflatten(in_tree, [stages.ArgInfo(jax.typeof(x), False) for x in flat_args])
  return stages.Compiled(unloaded.load(), [], args_info, out_tree, no_kwargs=True)


# ------------------------------------------------------------------------------------ the wrapper


class Cached:
  """``jitted`` (a ``jax.jit`` with fixed shardings over ``mesh``) whose executables are kept in
  ``directory`` per call signature; ``identity`` names the program and its static settings. Calls
  take and return what ``jitted`` does. ``directory`` None: compiled in memory only (still traced
  once per signature, as jit would)."""

  def __init__(self, jitted: Callable, identity: str, mesh: jax.sharding.Mesh, directory: Path | None,
               log: Callable[[str], None] | None = None):
    self.jitted, self.identity, self.mesh, self.directory, self.log = jitted, identity, mesh, directory, log
    self._compiled: dict[tuple, Any] = {}
    self._untried: set[tuple] = set()   # signatures whose executable was loaded and has not run yet
    self.events: list[str] = []     # "loaded", "compiled", "ignored: why" per signature, for tests and logs

  def __call__(self, *args):
    flat, tree, avals = signature(args)
    key = (str(tree), tuple(avals))
    compiled = self._compiled.get(key)
    if compiled is None:
      compiled = self._compiled[key] = self._get(args, flat, tree, avals)
    if key not in self._untried:
      return compiled(*args)
    # A loaded executable's first call: if XLA refuses to run it (not for memory), forget the entry
    # and compile, so that a bad entry costs one compile, never a failed run.
    self._untried.discard(key)
    try:
      return jax.block_until_ready(compiled(*args))
    except jax.errors.JaxRuntimeError as e:
      if "RESOURCE_EXHAUSTED" in str(e):
        raise
      self.events.append(f"dropped: {' '.join(str(e).split())[:200]}")
      self.path(self.key_fields(tree, avals)).unlink(missing_ok=True)
      compiled = self._compiled[key] = self._compile(args, tree, avals)
      return compiled(*args)

  def key_fields(self, tree, avals: list[str]) -> dict[str, Any]:
    return {"format": FORMAT, "program": self.identity, "in_tree": str(tree), "in_avals": avals,
            "environment": environment(list(self.mesh.devices.flat))}

  def path(self, fields: dict) -> Path:
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:40]
    name = re.sub(r"[^A-Za-z0-9_]+", "_", self.identity.split("(")[0])[:40] or "program"
    return self.directory / f"{name}-{digest}{SUFFIX}"

  def _get(self, args, flat, tree, avals):
    if self.directory is not None and (why := private_folder(Path(self.directory))) is not None:
      self.events.append(f"off: {why}")
      self.directory = None
    if self.directory is None:
      return self.jitted.trace(*args).lower().compile()
    fields = self.key_fields(tree, avals)
    path = self.path(fields)
    try:
      data = read_entry(path)
      if data is not None:
        header, payload = unpack(data)
        if header.get("key") != fields:
          raise Invalid("foreign: made for another program, machine or version")
        compiled = rebuild(header, payload, self.mesh, flat, tree)
        self.events.append("loaded")
        self._untried.add((str(tree), tuple(avals)))
        return compiled
    except Exception as e:  # pylint: disable=broad-except  (any doubt about an entry: compile instead)
      self.events.append(f"ignored: {type(e).__name__}: {e}"[:300])
    return self._compile(args, tree, avals)

  def _compile(self, args, tree, avals):
    """Traces and compiles afresh (``fresh_compiles``) and writes the entry."""
    with fresh_compiles():
      compiled = self.jitted.trace(*args).lower().compile()
    self.events.append("compiled")
    path = self.path(fields := self.key_fields(tree, avals))
    try:
      description, payload = describe(compiled)
      write_entry(path, pack({"key": fields, "payload_bytes": len(payload), **description}, payload))
    except Invalid as e:
      self.events.append(f"not kept: {e}")
    except OSError as e:
      self.events.append(f"not kept: cannot write {path} ({e.strerror})")
    return compiled
