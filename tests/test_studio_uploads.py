"""The same picture uploaded by several requests at once (issue 41), against the served studio
(``test_studio_browser``'s ``server``: ``python -m infer.studio``, tiny random weights) through
``gradio_client``, and against the library with a stand-in for Gradio's upload folder.

Gradio stores an upload in a folder named by its bytes (``route_utils.upload_fn``: ``GRADIO_TEMP_DIR /
sha256(seed + bytes) / name``), so every request sending the same picture names one file. The studio
deletes an upload once read; these check that the other requests naming that file still get their own
picture, and that none ever gets another's.

To make the race certain, each served case first holds the server with a *gate*: a request at a size
no other uses (its programs compile, seconds), and sends its clients only while the gate computes, so
every upload is on disk before the first of them is read (one request computes at a time).
"""
import concurrent.futures
import hashlib

import numpy as np
import pytest
from PIL import Image

from jaxstyle.app import studio as studio_lib
from jaxstyle.app.request import Settings
from jaxstyle.app.studio import Upload
from jaxstyle.io import image_io
from jaxstyle.io.image_io import ImageError
from test_studio_browser import read_image, server, wait_for  # noqa: F401 (server: a fixture)

N = 6           # clients at once: within the server's queue (8) besides the gate
SIZE = 64       # the clients' size; each gate has a size of its own (a fresh compile)
SIDES = (48, 64)


@pytest.fixture(autouse=True)
def no_home_compile_cache(monkeypatch):
  monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", "0")


def picture(path, seed, wh=SIDES):
  """A smooth random picture (distinct per seed, little changed by the previews' lossy WebP) of
  longest side ``SIZE``, so the studio loads it unscaled."""
  coarse = np.random.default_rng(seed).integers(0, 256, (3, 4, 3), np.uint8)
  Image.fromarray(coarse).resize(wh, Image.Resampling.BILINEAR).save(path)
  return path


def stylize_args(content, style, size=SIZE):
  from gradio_client import handle_file  # pylint: disable=g-import-not-at-top
  return (handle_file(content), handle_file(style), None, "portrait", size,
          1.0, 1.0, 1.0, 1.625, 0.5, 0.4, 0.005, False, 1.0, 1.0)


def client_of(url):
  from gradio_client import Client  # pylint: disable=g-import-not-at-top
  return Client(url, verbose=False, download_files=False)


def joined(job) -> bool:
  """Whether a job's files are uploaded and it waits in (or has left) the queue."""
  from gradio_client.utils import Status  # pylint: disable=g-import-not-at-top
  return job.done() or job.status().code in (Status.IN_QUEUE, Status.QUEUE_FULL, Status.PROCESSING,
                                              Status.PROGRESS, Status.FINISHED)


def behind_a_gate(url, gate_size, tmp_path, send):
  """Holds the server with a gate, calls ``send()`` (which submits jobs and returns them), waits until
  all of them are queued, and checks the gate still computed by then; the jobs."""
  from gradio_client.utils import Status  # pylint: disable=g-import-not-at-top
  gate_client = client_of(url)
  content = picture(tmp_path / "gate_content.png", 900)
  style = picture(tmp_path / "gate_style.png", 901, SIDES[::-1])
  gate = gate_client.submit(*stylize_args(content, style, gate_size), api_name="/stylize")
  wait_for(lambda: gate.done() or gate.status().code == Status.PROCESSING, "the gate to compute")
  jobs = send()
  wait_for(lambda: all(joined(job) for job in jobs), "every client to upload and join the queue")
  assert not gate.done(), "the gate ended before every upload was in: the race was not set up"
  gate.result(timeout=240)
  gate_client.close()
  return jobs


def outcome(job):
  """A job's outputs, or "queue full" (the one refusal the issue allows); any other error raises."""
  from gradio_client.utils import QueueError  # pylint: disable=g-import-not-at-top
  try:
    return job.result(timeout=240)
  except QueueError:
    return "queue full"


def check_own(outputs, content, style, contents, styles):
  """The reply shows this request's pair (its content and style previews are its own pictures, nearer
  to them than to any other request's) and a picture of the content's size."""
  image, _, _, _, _, content_view, style_view = outputs
  for view, mine, candidates in ((content_view, content, contents), (style_view, style, styles)):
    shown = read_image(view["url"])
    distances = {p: float(np.abs(shown - np.asarray(Image.open(p), np.float32) / 255).mean())
                 for p in set(candidates)}
    assert min(distances, key=distances.get) == mine and distances[mine] < 0.05, (mine, distances)
  result = read_image(image["url"])
  assert result.shape[:2] == SIDES[::-1] and result.std() > 0.01


def left_on_disk(root, uploads) -> list:
  """The server's files of these uploads still on its disk (Gradio's empty placeholders aside)."""
  [temp] = list((root / "tmp").glob("jaxstyle-studio-*"))
  names = {p.name for p in uploads}
  return [p for p in temp.rglob("*") if p.name in names and p.stat().st_size]


def run_clients(server, gate_size, tmp_path, contents, styles):
  """One client (one tab) per (content, style), all behind one gate; each client is closed as soon
  as it has its reply (the server then closes its tab while the others still wait)."""
  url, root = server
  clients = [client_of(url) for _ in contents]
  jobs = behind_a_gate(url, gate_size, tmp_path, lambda: [
      c.submit(*stylize_args(ct, st), api_name="/stylize") for c, ct, st in zip(clients, contents, styles)])

  def finish(i):
    try:
      return outcome(jobs[i])
    except Exception as e:  # pylint: disable=broad-except
      return e
    finally:
      clients[i].close()

  with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
    outcomes = list(pool.map(finish, range(len(jobs))))
  errors = [f"client {i}: {type(o).__name__}: {o}" for i, o in enumerate(outcomes)
            if isinstance(o, Exception)]
  assert not errors, "\n".join(errors)
  answered = [(o, c, s) for o, c, s in zip(outcomes, contents, styles) if o != "queue full"]
  assert len(answered) >= 2
  for outputs, content, style in answered:
    check_own(outputs, content, style, contents, styles)
  if len(answered) == len(outcomes):   # a refused request's upload waits for Gradio's sweep
    assert not left_on_disk(root, contents + styles)


def test_clients_sending_the_same_painting_at_once_all_get_their_picture(server, tmp_path):
  contents = [picture(tmp_path / f"me{i}.png", i) for i in range(N)]
  painting = picture(tmp_path / "painting.png", 100, SIDES[::-1])   # one painting's bytes, N uploads
  run_clients(server, 96, tmp_path, contents, [painting] * N)


def test_clients_sending_the_same_portrait_at_once_all_get_their_picture(server, tmp_path):
  portrait = picture(tmp_path / "me.png", 200)
  paintings = [picture(tmp_path / f"painting{i}.png", 300 + i, SIDES[::-1]) for i in range(N)]
  run_clients(server, 112, tmp_path, [portrait] * N, paintings)


def test_one_tab_the_same_painting_in_both_slots_and_again_while_queued(server, tmp_path):
  """One request with the painting as content and style (two uploads, one file), then one tab sending
  the same painting again while its previous request still waits."""
  url, root = server
  painting = picture(tmp_path / "painting.png", 400)
  client = client_of(url)
  both = client.predict(*stylize_args(painting, painting), api_name="/stylize")
  check_own(both, painting, painting, [painting], [painting])
  contents = [picture(tmp_path / f"me{i}.png", 500 + i) for i in range(2)]
  jobs = behind_a_gate(url, 128, tmp_path, lambda: [
      client.submit(*stylize_args(c, painting), api_name="/stylize") for c in contents])
  for job, content in zip(jobs, contents):
    check_own(outcome(job), content, painting, contents, [painting])
  client.close()
  assert not left_on_disk(root, [painting, *contents])


# --- the library: who may share an upload's bytes --------------------------------------------------

def address(data: bytes) -> str:
  """A stand-in for Gradio's folder name of an upload (``processing_utils.hash_bytes``: a seeded
  SHA-256)."""
  return hashlib.sha256(b"seed" + data).hexdigest()


@pytest.fixture(scope="module")
def studio(tiny_weights, tmp_path_factory):
  uploads = tmp_path_factory.mktemp("uploads")
  st = studio_lib.Studio(tiny_weights, forget_under=uploads, content_address=address, log=lambda _: None)
  return st, uploads


def upload(uploads, data: bytes, name: str, folder: str | None = None) -> Upload:
  """``data`` stored as Gradio stores an upload: in the folder its bytes name (or ``folder``)."""
  path = uploads / (folder or address(data)) / name
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)
  return Upload(path)


def test_an_upload_read_by_one_tab_serves_every_tab_naming_its_file(studio, tmp_path):
  st, uploads = studio
  painting = picture(tmp_path / "painting.png", 600, SIDES[::-1]).read_bytes()
  contents = [picture(tmp_path / f"me{i}.png", 610 + i).read_bytes() for i in range(3)]
  tabs = [(f"tab{i}", upload(uploads, c, "me.png"), upload(uploads, painting, "wave.png"))
          for i, c in enumerate(contents)]
  shared = tabs[0][2]
  for (tab, content, style), data in zip(tabs, contents):
    assert style == shared                        # equal bytes: one file, as in Gradio's folder
    out = st.stylize(tab, content, style, None, Settings(size=SIZE))
    assert not style.path.exists() and not content.path.exists()       # off the disk once read
    np.testing.assert_allclose(out.content, image_io.load_image(data, SIZE), atol=1e-6)
    st.close_tab(tab)                             # a closed reader does not take it from the others
  # Held once (one entry, its bytes counted once), whichever tabs and names asked for it.
  assert sum(key[0] == "upload" for key in st.cache._entries) == 1 + len(contents)
  assert st.cache._entries["upload", None, address(painting)][1] == len(painting)
  assert st.cache.nbytes <= st.cache.budget
  renamed = Upload(shared.path.with_name("another name.png"))   # same bytes, another file name
  out = st.stylize("tab9", upload(uploads, contents[0], "me.png"), renamed, None, Settings(size=SIZE))
  np.testing.assert_allclose(out.style, image_io.load_image(painting, SIZE), atol=1e-6)
  again = upload(uploads, painting, "wave.png")   # uploaded again since: from memory, and off the disk
  st.stylize("tab9", upload(uploads, contents[1], "me.png"), again, None, Settings(size=SIZE))
  assert not again.path.exists()
  st.close_tab("tab9")


def test_an_upload_is_never_given_to_a_request_whose_file_may_differ(studio, tmp_path):
  """Only a file in the folder its bytes name is shared: one in any other folder (a path that does
  not name its content) is the reading tab's alone."""
  st, uploads = studio
  content = picture(tmp_path / "me.png", 700).read_bytes()
  painting = picture(tmp_path / "a.png", 701, SIDES[::-1]).read_bytes()
  other = picture(tmp_path / "b.png", 702, SIDES[::-1]).read_bytes()
  for folder in ("plain-folder", address(other)):   # not a digest; another content's digest
    style = upload(uploads, painting, "wave.png", folder)
    st.stylize("reader", upload(uploads, content, "me.png"), style, None, Settings(size=SIZE))
    assert not style.path.exists()
    with pytest.raises(ImageError, match="wave.png: "):
      st.stylize("other", upload(uploads, content, "me.png"), style, None, Settings(size=SIZE))
    out = st.stylize("reader", upload(uploads, content, "me.png"), style, None, Settings(size=SIZE))
    np.testing.assert_allclose(out.style, image_io.load_image(painting, SIZE), atol=1e-6)
  st.close_tab("reader")
