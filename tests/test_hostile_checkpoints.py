"""Hostile PyTorch checkpoints: each is generated here (no binary fixtures, no torch needed) and read by
``torch_pickle.load`` in a subprocess whose address space is capped with ``RLIMIT_AS``, so a regression
fails (MemoryError, a crash or the timeout) instead of swapping the machine.

Every case of issue 11's first class is here: a deflated member that inflates to far more than the file,
a stride-0 and an overlapping view of 16384², a million-deep tuple as a dict key, a "billion laughs" as a
dict key and as a persistent id, one storage viewed thousands of times, a memo index of 2**31, length
fields larger than the file. A valid 16 MiB checkpoint loads in about twice its size.
"""
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from jaxstyle.checkpoints import torch_pickle

MiB = 1 << 20
# Address space a load may add on top of the interpreter with numpy imported. Each hostile case asks,
# if the limits fail, for at least 16384² × 4 bytes = 1 GiB.
BUDGET = 160 * MiB

PROBE = textwrap.dedent("""
    import json, resource, sys
    from jaxstyle.checkpoints import torch_pickle

    def status(field):   # VmSize: address space now; VmHWM: peak resident memory of this process
      with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field + ":"))

    base_rss = status("VmHWM")
    limit = status("VmSize") + int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
      obj = torch_pickle.load(sys.argv[1])
      outcome, message = "loaded", str(sorted(obj) if isinstance(obj, dict) else type(obj))
    except (torch_pickle.TorchFileError, torch_pickle.UnsafePickleError) as e:
      outcome, message = "refused", str(e)
    except MemoryError:
      outcome, message = "MemoryError", ""
    print(json.dumps({"outcome": outcome, "message": message,
                      "peak_rss_added": status("VmHWM") - base_rss}))
""")


def probe(path, budget=BUDGET, timeout=60):
  """Loads ``path`` in a capped subprocess; returns its report (outcome, message, and the peak resident
  memory the load added to the interpreter's)."""
  env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
  proc = subprocess.run([sys.executable, "-c", PROBE, str(path), str(budget)], capture_output=True,
                        text=True, timeout=timeout, env=env)
  assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
  return json.loads(proc.stdout.strip().splitlines()[-1])


# --- a minimal pickle writer: the opcodes torch.save emits (protocol 2) ---------------------------


def uni(s: str) -> bytes:
  data = s.encode()
  return b"X" + struct.pack("<I", len(data)) + data


def integer(n: int) -> bytes:
  return b"J" + struct.pack("<i", n)


def int_tuple(xs) -> bytes:
  return b"(" + b"".join(map(integer, xs)) + b"t"


def storage_pid(key: str, numel: int, storage: str = "FloatStorage") -> bytes:
  return (b"(" + uni("storage") + f"ctorch\n{storage}\n".encode() + uni(key) + uni("cpu") + integer(numel)
          + b"tQ")


def tensor(pid: bytes, size, stride, offset=0) -> bytes:
  """``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
  return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + integer(offset) + int_tuple(size)
          + int_tuple(stride) + b"\x89ccollections\nOrderedDict\n)RtR")


def state_dict(items) -> bytes:
  """A pickle of ``{name: value}`` from ``(name pickle bytes, value pickle bytes)`` pairs."""
  return b"\x80\x02}" + b"".join(k + v + b"s" for k, v in items) + b"."


def torch_zip(path, pkl: bytes, records: dict[str, bytes] = {}, compress=zipfile.ZIP_STORED):
  """A zip-format checkpoint; ``compress`` applies to ``data.pkl`` only (torch stores every member)."""
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", pkl, compress_type=compress)
    zf.writestr("archive/byteorder", "little")
    for key, data in records.items():
      zf.writestr(f"archive/data/{key}", data)
  return path


def laughs(levels=24, fanout=10) -> bytes:
  """A tuple of ``fanout`` references to a tuple of ``fanout`` references ... (``levels`` deep):
  ``fanout ** levels`` objects through memo references, a few hundred bytes of pickle."""
  out = uni("lol") + b"q\x00"
  for i in range(levels):
    out += b"(" + b"".join(b"h" + bytes([i]) for _ in range(fanout)) + b"t"   # MARK, BINGET i × fanout, TUPLE
    out += b"q" + bytes([i + 1])
  return out


# --- the corpus -------------------------------------------------------------------------------------


def zip_bomb(tmp_path):
  """A deflated storage record of 256 MiB of zeros (~1 MB in the file) behind a valid pickle."""
  numel = 64 * MiB
  path = tmp_path / "bomb.pth"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", state_dict([(uni("w"), tensor(storage_pid("0", numel),
                                                                   (numel,), (1,)))]))
    zf.writestr("archive/byteorder", "little")
    zf.compression, zf.compresslevel = zipfile.ZIP_DEFLATED, 1
    with zf.open("archive/data/0", "w", force_zip64=True) as f:
      block = bytes(16 * MiB)
      for _ in range(numel * 4 // len(block)):
        f.write(block)
  return path


def stride_zero(tmp_path):
  pid = storage_pid("0", 1)
  return torch_zip(tmp_path / "s0.pth", state_dict([(uni("w"), tensor(pid, (16384, 16384), (0, 0)))]),
                   {"0": bytes(4)})


def overlapping(tmp_path):
  """Strides (1, 1): 16384² elements from a storage of 32767, every byte in bounds."""
  pid = storage_pid("0", 32767)
  return torch_zip(tmp_path / "ov.pth", state_dict([(uni("w"), tensor(pid, (16384, 16384), (1, 1)))]),
                   {"0": bytes(4 * 32767)})


def deep_key(tmp_path):
  """A dict whose key is a tuple nested a million deep (1 MB)."""
  key = b")" + b"\x85" * 1_000_000
  return torch_zip(tmp_path / "deep.pth", state_dict([(key, b"N")]))


def laughs_key(tmp_path):
  return torch_zip(tmp_path / "lol_key.pth", state_dict([(laughs(), b"N")]))


def laughs_pid(tmp_path):
  return torch_zip(tmp_path / "lol_pid.pth", state_dict([(uni("w"), laughs() + b"Q")]))


def shared_storage(tmp_path):
  """4096 tensors, each a full view of one 1 MiB storage: 4 GiB once each is converted."""
  numel = MiB // 4
  first = b"(" + uni("storage") + b"ctorch\nFloatStorage\n" + uni("0") + uni("cpu") + integer(numel)
  first += b"tr\x00\x00\x00\x00Q"     # LONG_BINPUT 0: the pid tuple, reused by every tensor
  items = [(uni("t0"), tensor(first, (numel,), (1,)))]
  items += [(uni(f"t{i}"), tensor(b"j\x00\x00\x00\x00Q", (numel,), (1,))) for i in range(1, 4096)]
  return torch_zip(tmp_path / "shared.pth", state_dict(items), {"0": bytes(MiB)})


def memo_index(tmp_path):
  """LONG_BINPUT 2**31 - 1: the C unpickler would size its memo table to it (16 GiB)."""
  return torch_zip(tmp_path / "memo.pth", b"\x80\x02}r\xff\xff\xff\x7f.")


def legacy(path, obj_pickle: bytes):
  """A legacy-format file: magic, protocol and sys_info pickles, then ``obj_pickle`` (and no storages)."""
  header = b"".join(pickle.dumps(x, protocol=2) for x in (
      torch_pickle.LEGACY_MAGIC, torch_pickle.LEGACY_PROTOCOL, {"little_endian": True}))
  path.write_bytes(header + obj_pickle + pickle.dumps([], protocol=2))
  return path


def long_length(tmp_path):
  """A legacy file whose BINBYTES8 says 2**62 bytes: a buffered read would allocate that first."""
  return legacy(tmp_path / "len.pth", b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"abc")


def legacy_deep_key(tmp_path):
  return legacy(tmp_path / "ldeep.pth", state_dict([(b")" + b"\x85" * 1_000_000, b"N")]))


def legacy_laughs(tmp_path):
  return legacy(tmp_path / "llol.pth", state_dict([(laughs(), b"N")]))


def deflated_pickle(tmp_path):
  """The data.pkl member itself deflated: 64 MiB of MARKs from 64 KB."""
  return torch_zip(tmp_path / "pkl.pth", b"\x80\x02" + b"(" * (64 * MiB) + b".",
                   compress=zipfile.ZIP_DEFLATED)


def garbage_zip(tmp_path):
  path = tmp_path / "garbage.pth"
  path.write_bytes(b"PK\x03\x04" + os.urandom(2000))
  return path


def truncated_zip(tmp_path):
  pid = storage_pid("0", 1000)
  path = torch_zip(tmp_path / "cut.pth", state_dict([(uni("w"), tensor(pid, (1000,), (1,)))]),
                   {"0": bytes(4000)})
  path.write_bytes(path.read_bytes()[:-1500])
  return path


CASES = {
    "zip_bomb": (zip_bomb, "'archive/data/0' is compressed"),
    "stride_zero": (stride_zero, "stride 0"),
    "overlapping_view": (overlapping, "more elements than its storage"),
    "million_deep_key": (deep_key, "deeper than 100"),
    "billion_laughs_key": (laughs_key, "billion laughs"),
    "billion_laughs_persistent_id": (laughs_pid, "billion laughs"),
    "shared_storage_views": (shared_storage, "more than 4×"),
    "memo_index_2_31": (memo_index, "out of sequence"),
    "length_past_the_file": (long_length, "malformed pickle"),
    "legacy_million_deep_key": (legacy_deep_key, "deeper than 100"),
    "legacy_billion_laughs_key": (legacy_laughs, "billion laughs"),
    "deflated_pickle": (deflated_pickle, "'archive/data.pkl' is compressed"),
    "garbage_zip": (garbage_zip, "malformed checkpoint"),
    "truncated_zip": (truncated_zip, "malformed checkpoint"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_checkpoint_is_refused_in_bounded_memory(tmp_path, case):
  make, words = CASES[case]
  path = make(tmp_path)
  report = probe(path)
  print(case, f"{path.stat().st_size} bytes", report)
  assert report["outcome"] == "refused", report
  assert words in report["message"], report
  assert "\n" not in report["message"] and len(report["message"]) < 600, report


def test_messages_use_bounded_reprs():
  assert len(torch_pickle.short_repr(((((((((1,),),),),),),),))) < 40
  assert len(torch_pickle.short_repr(["x" * 10**6] * 10**4)) < 400


def test_valid_checkpoint_peak_memory_is_a_small_multiple_of_its_size(tmp_path):
  """16 MiB of float32 in 4 tensors (plus a transposed view) loads within 2.5× the file's size of
  address space (the stored records are read once, then copied into writable arrays)."""
  rng = np.random.default_rng(0)
  arrays = [rng.standard_normal(MiB, np.float32) for _ in range(4)]
  items = [(uni(f"w{i}"), tensor(storage_pid(str(i), MiB), (1024, 1024), (1024, 1))) for i in range(4)]
  items.append((uni("w0t"), tensor(storage_pid("0", MiB), (1024, 1024), (1, 1024))))
  records = {str(i): a.tobytes() for i, a in enumerate(arrays)}
  path = torch_zip(tmp_path / "ok.pth", state_dict(items), records)
  size = path.stat().st_size
  report = probe(path, budget=int(2.5 * size))
  print(f"{size} bytes", report)
  assert report["outcome"] == "loaded", report
  loaded = torch_pickle.load(path)
  np.testing.assert_array_equal(loaded["w3"], arrays[3].reshape(1024, 1024))
  np.testing.assert_array_equal(loaded["w0t"], arrays[0].reshape(1024, 1024).T)
