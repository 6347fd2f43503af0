"""Datasets: download, checksums, extraction and its guards, every loader, and one-line errors for user mistakes.

Nothing here touches the network: archives are built in tmp_path and served from file:// URLs or a local HTTP
server, and the download table (`runner.data.ARCHIVES`) is pointed at them.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import shutil
import struct
import tarfile
import threading
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets as tvd
from PIL import Image

from roadmap.errors import RoadmapError
from runner.data import ARCHIVES, Archive, ArrayDataset, load_dataset, read_idx, readers
from runner.data.download import download, extract

# ------------------------------------------------------------------------------------------------------ helpers


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (24, 18)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def png_grey(value: int, size: tuple[int, int] = (10, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size, value).save(buf, "PNG")
    return buf.getvalue()


def make_tgz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return path


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in files.items():
            zf.writestr(name, payload)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, payload in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(payload)
    return root


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file (MNIST format) of a uint8 array, gzipped when `path` ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message.strip() == message and message
    return message


IMAGENETTE_FILES = {
    "imagenette2-160/noisy_imagenette.csv": b"path,noisy_labels_0\n",
    "imagenette2-160/train/n01440764/a.JPEG": jpeg((200, 10, 10)),
    "imagenette2-160/train/n01440764/b.JPEG": jpeg((190, 20, 20)),
    "imagenette2-160/train/n03888257/c.JPEG": jpeg((10, 10, 200)),
    "imagenette2-160/val/n01440764/d.JPEG": jpeg((210, 0, 0)),
    "imagenette2-160/val/n03888257/e.JPEG": jpeg((0, 0, 210)),
}


@pytest.fixture
def served_imagenette(tmp_path, monkeypatch) -> Path:
    """A tiny imagenette2-160.tgz published at a file:// URL with its true size and sha256."""
    (tmp_path / "served").mkdir()
    archive = make_tgz(tmp_path / "served" / "imagenette2-160.tgz", IMAGENETTE_FILES)
    entry = Archive(archive.as_uri(), archive.stat().st_size, sha256(archive))
    monkeypatch.setitem(ARCHIVES, "imagenette2-160.tgz", entry)
    return archive


# ----------------------------------------------------------------------------------------- download + extraction


def test_imagenette_end_to_end(cache, served_imagenette, monkeypatch, tmp_path):
    splits = load_dataset("imagenette", train_transform=lambda im: ("train", im.size), eval_transform=None)
    info = splits.info
    assert info.name == "imagenette" and info.num_classes == 2 and not info.synthetic
    assert info.classes == ("tench", "parachute")
    assert (info.train_size, info.val_size, info.native_size) == (3, 2, 160)
    assert splits.train[2] == (("train", (24, 18)), 1)
    img, label = splits.val[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and label == 0
    assert (cache / "imagenette2-160" / "train" / "n01440764" / "a.JPEG").is_file()
    assert (cache / "imagenette2-160.tgz").is_file() and not list(cache.glob("*.part"))
    assert (cache / "imagenette2-160.tgz.sha256").read_text().split()[0] == sha256(served_imagenette)

    def no_network(*args, **kwargs):
        raise AssertionError("should not download again")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert load_dataset("imagenette").info == info  # from the cache
    # extracted tree gone, archive kept: re-extracted offline after checking it against the recorded sha256
    shutil.rmtree(cache / "imagenette2-160")
    assert load_dataset("imagenette", download=False).info == info
    # the user's own copy: the extracted folder itself, or its parent
    assert load_dataset("imagenette", data_dir=cache / "imagenette2-160").info.train_size == 3
    assert load_dataset("imagenette", data_dir=cache).info.train_size == 3
    # an archive downloaded by hand into --data-dir is unpacked there, even with downloading off
    user = tmp_path / "mine"
    user.mkdir()
    shutil.copy(served_imagenette, user)
    assert load_dataset("imagenette", data_dir=user, download=False).info == info
    assert (user / "imagenette2-160" / "val").is_dir()


def test_recorded_sha256_catches_a_changed_archive(cache, served_imagenette):
    load_dataset("imagenette")
    shutil.rmtree(cache / "imagenette2-160")
    (cache / "imagenette2-160.tgz").write_bytes(b"x" * served_imagenette.stat().st_size)  # same size, other bytes
    with pytest.raises(RoadmapError, match="not the published imagenette2-160.tgz .*sha256.*delete it") as err:
        load_dataset("imagenette")
    one_line(err)


@pytest.mark.parametrize(
    "wrong", [{"sha256": "0" * 64}, {"size": 123}, {"md5": "0" * 32}], ids=["sha256", "size", "md5"]
)
def test_checksum_mismatch_deletes_the_download(cache, served_imagenette, monkeypatch, wrong):
    entry = ARCHIVES["imagenette2-160.tgz"]
    fields = {"url": entry.url, "size": entry.size, "sha256": entry.sha256, "md5": entry.md5, **wrong}
    monkeypatch.setitem(ARCHIVES, "imagenette2-160.tgz", Archive(**fields))
    with pytest.raises(RoadmapError, match=r"imagenette2-160.tgz is corrupt .*retry, or download it from") as err:
        load_dataset("imagenette")
    assert "--data-dir" in one_line(err)
    assert not list(cache.rglob("*")) or all(p.is_dir() for p in cache.rglob("*"))  # nothing left behind


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_archive(cache, tmp_path, monkeypatch, damage):
    good = make_tgz(tmp_path / "good.tgz", IMAGENETTE_FILES).read_bytes()
    bad = tmp_path / "imagenette2-160.tgz"
    bad.write_bytes(b"this is not a gzip file at all" * 40 if damage == "garbage" else good[: len(good) // 2])
    monkeypatch.setitem(ARCHIVES, "imagenette2-160.tgz", Archive(bad.as_uri(), None, None))
    with pytest.raises(RoadmapError, match="is corrupt") as err:
        load_dataset("imagenette")
    one_line(err)
    assert not (cache / "imagenette2-160.tgz").exists()  # a fresh, broken download is removed
    assert not (cache / "imagenette2-160").exists()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary extraction folder


def test_unpacks_nothing_useful(cache, tmp_path, monkeypatch):
    archive = make_tgz(tmp_path / "imagenette2-160.tgz", {"something/else.txt": b"hi"})
    monkeypatch.setitem(ARCHIVES, "imagenette2-160.tgz", Archive(archive.as_uri(), None, None))
    with pytest.raises(RoadmapError, match="right archive") as err:
        load_dataset("imagenette")
    one_line(err)


def _tar_with(path: Path, member: tarfile.TarInfo, payload: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(member, io.BytesIO(payload) if payload else None)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "zip"])
def test_path_traversal_is_refused(tmp_path, kind):
    dest = tmp_path / "dest"
    if kind == "zip":
        archive = make_zip(tmp_path / "evil.zip", {"ok/a.txt": b"a", "../evil.txt": b"pwned"})
    elif kind == "symlink":
        link = tarfile.TarInfo("ok/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../evil.txt"
        archive = _tar_with(tmp_path / "evil.tgz", link)
    else:
        member = tarfile.TarInfo("../evil.txt" if kind == "dotdot" else str(tmp_path / "evil.txt"))
        member.size = 5
        archive = _tar_with(tmp_path / "evil.tgz", member, b"pwned")
    with pytest.raises(RoadmapError, match="unsafe member .*refusing") as err:
        extract(archive, dest)
    one_line(err)
    assert not (tmp_path / "evil.txt").exists()
    assert not list(dest.rglob("*"))


def test_extract_zip(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"top/x.txt": b"x", "top/sub/y.txt": b"y"})
    assert extract(archive, tmp_path / "out") == [tmp_path / "out" / "top"]
    assert (tmp_path / "out" / "top" / "sub" / "y.txt").read_bytes() == b"y"


def test_offline_says_pass_data_dir(cache, served_imagenette, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError(OSError("Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(RoadmapError, match=r"cannot download imagenette2-160.tgz \(offline\?") as err:
        load_dataset("imagenette")
    message = one_line(err)
    assert served_imagenette.as_uri() in message and "pass --data-dir DIR" in message


def test_unreachable_url(cache, tmp_path, monkeypatch):
    missing = (tmp_path / "nowhere" / "imagenette2-160.tgz").as_uri()
    monkeypatch.setitem(ARCHIVES, "imagenette2-160.tgz", Archive(missing, None, None))
    with pytest.raises(RoadmapError, match="cannot download .*pass --data-dir") as err:
        load_dataset("imagenette")
    one_line(err)


def test_download_off_or_bad_data_dir(cache, served_imagenette, tmp_path):
    with pytest.raises(RoadmapError, match="downloading is off.*--data-dir") as err:
        load_dataset("imagenette", download=False)
    one_line(err)
    with pytest.raises(RoadmapError, match="does not exist") as err:
        load_dataset("imagewoof", data_dir=tmp_path / "typo")
    one_line(err)
    with pytest.raises(RoadmapError, match="downloading is off") as err:
        load_dataset("cifar10", download=False)
    one_line(err)


def test_mirror_env(cache, served_imagenette, monkeypatch):
    monkeypatch.setenv("ROADMAP_MIRROR", served_imagenette.parent.as_uri())
    monkeypatch.setitem(ARCHIVES, "imagenette2-160.tgz", Archive("http://invalid.invalid/x.tgz", None, None))
    assert load_dataset("imagenette").info.train_size == 3


class _Server(http.server.BaseHTTPRequestHandler):
    """Serves `payload`; honours Range when `ranges`; may hang up after `cut` bytes while promising all."""

    payload = b""
    ranges = True
    cut: int | None = None
    seen: list[str | None] = []

    def do_GET(self):
        asked = self.headers.get("Range")
        type(self).seen.append(asked)
        start = int(asked.split("=")[1].split("-")[0]) if asked and self.ranges else 0
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: self.cut] if self.cut is not None else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    handler = type("Handler", (_Server,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/blob.bin"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "restarted"])
def test_interrupted_download_resumes(tmp_path, http_server, ranges):
    handler, url = http_server
    payload = bytes(range(256)) * 400
    handler.payload, handler.ranges, handler.cut = payload, ranges, 30_000
    dest = tmp_path / "blob.bin"
    with pytest.raises(RoadmapError, match="rerun to resume") as err:
        download(url, dest, hashlib.sha256(payload).hexdigest(), len(payload))
    one_line(err)
    assert (tmp_path / "blob.bin.part").stat().st_size == 30_000 and not dest.exists()
    handler.cut = None
    digest = download(url, dest, None, len(payload))
    assert dest.read_bytes() == payload and digest == hashlib.sha256(payload).hexdigest()
    assert handler.seen == [None, "bytes=30000-"]
    assert not (tmp_path / "blob.bin.part").exists()


def test_cifar10_from_archive(cache, tmp_path, monkeypatch):
    """The CIFAR path end to end on a fake archive; torchvision's md5 table is pointed at the fake files."""
    rng = np.random.default_rng(0)
    batches = {
        "data_batch_1": {"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), "labels": [0, 1, 2, 0, 1, 2]},
        "test_batch": {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [2, 1, 0]},
        "batches.meta": {"label_names": ["airplane", "automobile", "bird"]},
    }
    payloads = {f"cifar-10-batches-py/{k}": pickle.dumps(v) for k, v in batches.items()}
    md5 = {k.split("/")[1]: hashlib.md5(v).hexdigest() for k, v in payloads.items()}
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [["data_batch_1", md5["data_batch_1"]]])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(
        tvd.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]}
    )
    archive = make_tgz(tmp_path / "cifar-10-python.tar.gz", payloads)
    monkeypatch.setitem(ARCHIVES, archive.name, Archive(archive.as_uri(), archive.stat().st_size, None))
    splits = load_dataset("CIFAR-10")
    assert splits.info.classes == ("airplane", "automobile", "bird") and splits.info.native_size == 32
    assert (splits.info.train_size, splits.info.val_size) == (6, 3)
    img, label = splits.val[0]
    assert img.mode == "RGB" and img.size == (32, 32) and label == 2
    assert load_dataset("cifar10", data_dir=cache / "cifar-10-batches-py").info == splits.info
    (cache / "cifar-10-batches-py" / "test_batch").write_bytes(b"damaged")
    with pytest.raises(RoadmapError, match="cifar10 files in .* are damaged") as err:
        load_dataset("cifar10", download=False)
    one_line(err)


# --------------------------------------------------------------------------------------------------- tiny-imagenet


def test_tiny_imagenet_from_zip(cache, tmp_path, monkeypatch):
    files = {
        "tiny-imagenet-200/wnids.txt": b"n01443537\nn01629819\n",
        "tiny-imagenet-200/words.txt": b"n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n",
        "tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG": jpeg((250, 150, 0), (64, 64)),
        "tiny-imagenet-200/train/n01443537/n01443537_boxes.txt": b"n01443537_0.JPEG\t0\t0\t10\t10\n",
        "tiny-imagenet-200/train/n01629819/images/n01629819_0.JPEG": jpeg((0, 0, 0), (64, 64)),
        "tiny-imagenet-200/train/n01629819/images/n01629819_1.JPEG": jpeg((9, 9, 9), (64, 64)),
        "tiny-imagenet-200/val/images/val_0.JPEG": jpeg((0, 0, 0), (64, 64)),
        "tiny-imagenet-200/val/images/val_1.JPEG": jpeg((250, 150, 0), (64, 64)),
        "tiny-imagenet-200/val/val_annotations.txt": (
            b"val_0.JPEG\tn01629819\t0\t0\t1\t1\nval_1.JPEG\tn01443537\t0\t0\t1\t1\n"
        ),
    }
    archive = make_zip(tmp_path / "tiny-imagenet-200.zip", files)
    monkeypatch.setitem(ARCHIVES, "tiny-imagenet-200.zip", Archive(archive.as_uri(), archive.stat().st_size, None))
    splits = load_dataset("tiny_imagenet")
    assert splits.info.classes == ("goldfish", "European fire salamander")
    assert (splits.info.train_size, splits.info.val_size, splits.info.native_size) == (3, 2, 64)
    assert [label for _, label in splits.val] == [1, 0]
    img, _ = splits.train[0]
    assert img.mode == "RGB" and img.size == (64, 64)


# --------------------------------------------------------------------------------------------------- fashion-mnist


def _fashion_files(folder: Path, n_train: int = 12, n_val: int = 5, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_val)):
        write_idx(folder / f"{stem}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{stem}-labels-idx1-ubyte{ext}", np.arange(n) % 10)
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_data_dir(cache, tmp_path, gz):
    folder = _fashion_files(tmp_path / "fm", gz=gz)
    splits = load_dataset("fashion-mnist", folder, eval_transform=lambda im: np.asarray(im))
    assert (splits.info.train_size, splits.info.val_size, splits.info.native_size) == (12, 5, 28)
    assert splits.info.classes[0] == "T-shirt/top" and splits.info.classes[9] == "Ankle boot"
    img, label = splits.train[3]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (28, 28) and label == 3
    pixels, label = splits.val[4]
    raw = read_idx(folder / ("t10k-images-idx3-ubyte" + (".gz" if gz else "")))
    assert pixels.shape == (28, 28, 3) and (pixels[..., 1] == raw[4]).all() and label == 4
    assert isinstance(splits.train, ArrayDataset)
    assert splits.train.images.dtype == np.uint8 and splits.train.images.shape == (12, 28, 28)
    assert splits.train.targets.dtype == np.int64


def test_fashion_mnist_download(cache, tmp_path, monkeypatch):
    served = _fashion_files(tmp_path / "served", n_train=7, n_val=3)
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    for f in served.iterdir():
        monkeypatch.setitem(ARCHIVES, f.name, Archive(f.as_uri(), None, None, hashlib.md5(f.read_bytes()).hexdigest()))
    with pytest.raises(RoadmapError, match="downloading is off") as err:
        load_dataset("fashion-mnist", download=False)
    one_line(err)
    splits = load_dataset("fashion-mnist")
    assert (splits.info.train_size, splits.info.val_size) == (7, 3)
    assert (cache / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_fashion_mnist_damaged_file(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    folder = _fashion_files(tmp_path / "fm")
    good = (folder / "train-images-idx3-ubyte.gz").read_bytes()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(good)[:-100]))
    with pytest.raises(RoadmapError, match="truncated or damaged") as err:
        load_dataset("fashion-mnist", folder)
    one_line(err)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(RoadmapError, match="cannot read .*train-images") as err:
        load_dataset("fashion-mnist", folder)
    one_line(err)


@pytest.mark.skipif(not readers.DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's fashion-mnist package is not installed")
def test_fashion_mnist_debian_copy(cache):
    splits = load_dataset("fashion-mnist")
    info = splits.info
    assert (info.train_size, info.val_size, info.num_classes, info.native_size) == (60000, 10000, 10, 28)
    img, label = splits.train[0]
    assert img.mode == "RGB" and img.size == (28, 28) and label == 9  # the first training image is an ankle boot
    counts = np.bincount(splits.val.targets)
    assert counts.tolist() == [1000] * 10
