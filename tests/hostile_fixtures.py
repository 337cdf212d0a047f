"""A folder of hostile inputs, built here from nothing (never downloaded): lying and broken images,
projects that declare absurd sizes, model folders with the wrong types, pickles that would run
code, plugins that are broken, crash, hang, exit or return garbage, text that is not UTF-8.

Each case says which entry point it goes through and what the person must be told: a few words
the one-line message has to contain, written here from what the person needs to know (not copied
from the code under test). ``python tests/hostile_fixtures.py FOLDER`` writes the folder to look at.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import textwrap
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Which door a case knocks on.
IMAGE = "image"  # restore / apply on a file, and opening it in the editor
NOTICE = "notice"  # an image that opens, with what was dropped said out loud
PROJECT = "project"  # opening a project in the editor
MODEL = "model"  # restore --model FOLDER
WEIGHTS = "weights"  # restore --weights FILE
PLUGIN = "plugin"  # apply PLUGIN.ACTION (a folder plugin in the worker process)
LISTING = "listing"  # plugins list --folder FOLDER: discovery
INSTRUCTIONS = "instructions"  # interpret --file FILE


@dataclass(frozen=True)
class Case:
    name: str
    door: str
    path: Path
    expect: tuple[str, ...]  # words the one-line message (or the notice) must hold
    action: str = ""  # PLUGIN: the action to apply


def build(root: Path) -> list[Case]:
    """Write every hostile input under ``root``; the cases, in a stable order."""
    root.mkdir(parents=True, exist_ok=True)
    return [*_images(root / "images"), *_projects(root / "projects"), *_models(root / "models"), *_plugins(root)]


# ----------------------------------------------------------------------------- images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def _images(folder: Path) -> list[Case]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    # 74 bytes that declare 14142 × 14142 (200 megapixels): accepted once as a black picture.
    liar = folder / "liar.png"
    liar.write_bytes(
        _png_header(14142, 14142) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b"")
    )
    cases.append(Case("truncated PNG declaring 200 MP", IMAGE, liar, ("liar.png", "truncated or corrupt")))
    bomb = folder / "bomb.png"
    bomb.write_bytes(_png_header(30000, 30000) + _png_chunk(b"IEND", b""))
    cases.append(Case("900 MP header", IMAGE, bomb, ("bomb.png", "limit")))
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    cases.append(Case("empty file", IMAGE, empty, ("empty.jpg",)))
    text = folder / "letter.jpg"
    text.write_bytes(b"Dear reader, this is not a photo.\n" * 20)
    cases.append(Case("text named .jpg", IMAGE, text, ("letter.jpg",)))
    half = folder / "half.jpg"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    half.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    cases.append(Case("half a JPEG", IMAGE, half, ("half.jpg", "truncated or corrupt")))

    pages = folder / "pages.tif"
    frames = [Image.new("RGB", (16, 12), (v, v, v)) for v in (40, 120, 200)]
    frames[0].save(pages, save_all=True, append_images=frames[1:])
    cases.append(Case("three-page TIFF", NOTICE, pages, ("3 pages", "only the first")))
    animated = folder / "animated.webp"
    frames[0].save(animated, save_all=True, append_images=frames[1:2], lossless=True)
    cases.append(Case("animated WebP", NOTICE, animated, ("2 frames", "only the first")))
    exif = folder / "bad-exif.jpg"
    Image.new("RGB", (16, 12), (90, 90, 90)).save(exif, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    cases.append(Case("damaged EXIF block", NOTICE, exif, ("EXIF", "not kept")))
    return cases


# ----------------------------------------------------------------------------- projects


def _layer_blob(entry: str, shape: list[int], rows: int, lengths: list[int]) -> dict[str, object]:
    return {"entry": entry, "shape": shape, "rows_per_chunk": rows, "chunks": [["u8", n] for n in lengths]}


def _project(path: Path, manifest: object, files: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        archive.writestr("manifest.json", text)
        for name, data in (files or {}).items():
            archive.writestr(name, data)
    return path


def _small_document(height: int = 4, width: int = 5, **layer: object) -> tuple[dict[str, object], dict[str, bytes]]:
    data = zlib.compress(bytes(height * width * 3))
    properties = {"id": "l1", "name": "Photo", "opacity": 1.0, "visible": True, "blend_mode": "normal", **layer}
    blob = _layer_blob("blobs/000001.bin", [height, width, 3], height, [len(data)])
    document = {
        "height": height,
        "width": width,
        "active_index": 0,
        "layers": [{**properties, "pixels": blob, "alpha": None}],
    }
    manifest = {
        "format": "instructir-desktop-project",
        "version": 1,
        "document": document,
        "history": {"index": 0, "steps": []},
    }
    return manifest, {"blobs/000001.bin": data}


def _projects(folder: Path) -> list[Case]:
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    # 131072 × 131072: the side limit of the format, 17 gigapixels, 206 GB as float32.
    side = 1 << 17
    row = zlib.compress(bytes(side * 3))
    manifest, _ = _small_document()
    huge_blob = _layer_blob("blobs/000001.bin", [side, side, 3], side, [len(row)])
    manifest["document"] = {**manifest["document"], "height": side, "width": side}  # type: ignore[dict-item]
    manifest["document"]["layers"][0]["pixels"] = huge_blob  # type: ignore[index]
    huge = _project(folder / "huge.irproject", manifest, {"blobs/000001.bin": row})
    cases.append(Case("131072 × 131072 project", PROJECT, huge, ("huge.irproject", "limit")))

    manifest, files = _small_document()
    manifest["document"]["layers"][0]["pixels"]["chunks"] = [["u8", 10**12]]  # type: ignore[index]
    cases.append(
        Case(
            "chunk declaring a terabyte",
            PROJECT,
            _project(folder / "chunky.irproject", manifest, files),
            ("chunky.irproject", "more data"),
        )
    )
    manifest, files = _small_document(opacity=float("nan"))
    cases.append(
        Case("NaN opacity", PROJECT, _project(folder / "nan.irproject", manifest, files), ("nan.irproject", "opacity"))
    )
    manifest, files = _small_document()
    manifest["document"]["height"] = -4  # type: ignore[index]
    cases.append(
        Case(
            "negative height",
            PROJECT,
            _project(folder / "negative.irproject", manifest, files),
            ("negative.irproject", "size"),
        )
    )
    cases.append(
        Case(
            "manifest is a list",
            PROJECT,
            _project(folder / "list.irproject", "[]"),
            ("list.irproject", "not an InstructIR Desktop project"),
        )
    )
    deep = "[" * 100_000 + "]" * 100_000
    cases.append(
        Case("JSON nested 100,000 deep", PROJECT, _project(folder / "deep.irproject", deep), ("deep.irproject", "JSON"))
    )
    manifest, files = _small_document()
    manifest["extra"] = {"../../escape.txt": "extra/../../escape.txt"}
    cases.append(
        Case(
            "zip-slip attachment",
            PROJECT,
            _project(folder / "slip.irproject", manifest, files),
            ("slip.irproject", "extra"),
        )
    )
    not_zip = folder / "letter.irproject"
    not_zip.write_bytes(b"PK\x03\x04 but nothing after it")
    cases.append(Case("not a zip", PROJECT, not_zip, ("letter.irproject", "not a project file")))
    # The central directory says the manifest is 4 GB; it holds 60 bytes.
    manifest, files = _small_document()
    lying = _project(folder / "lying.irproject", manifest, files)
    data = bytearray(lying.read_bytes())
    directory = data.rfind(b"PK\x01\x02", 0, data.rfind(b"manifest.json"))
    data[directory + 24 : directory + 28] = struct.pack("<I", 0xFFFFFFF0)
    lying.write_bytes(bytes(data))
    cases.append(Case("manifest declared as 4 GB", PROJECT, lying, ("lying.irproject",)))
    return cases


# ----------------------------------------------------------------------------- models


def _tiny_model(folder: Path, *, head_metadata: dict[str, str] | None = None) -> Path:
    import torch
    from safetensors.torch import save_file

    from instructir_desktop.model.network import InstructIRNet, NetworkConfig
    from instructir_desktop.model.registry import HEAD_FILE, IMAGE_FILE
    from instructir_desktop.model.text import TextHead

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = NetworkConfig(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1), text_dim=16)
    save_file({k: v.contiguous() for k, v in InstructIRNet(config).state_dict().items()}, str(folder / IMAGE_FILE))
    head = TextHead(384, 16, 8)
    save_file(
        {k: v.contiguous() for k, v in head.state_dict().items()}, str(folder / HEAD_FILE), metadata=head_metadata
    )
    return folder


class _Payload:
    """Unpickling this would run a shell command: what a malicious checkpoint does."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo the payload ran > payload-ran.txt",))


def _models(folder: Path) -> list[Case]:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    listed = _tiny_model(folder / "list-description")
    (listed / "model.json").write_text("[1, 2, 3]")
    cases.append(Case("model.json is a list", MODEL, listed, ("model.json", "not an object")))
    numbered = _tiny_model(folder / "number-classes")
    (numbered / "model.json").write_text(json.dumps({"id": "x", "classes": 7}))
    cases.append(Case("a number where the class list belongs", MODEL, numbered, ("model.json", "classes")))
    named = _tiny_model(folder / "number-name")
    (named / "model.json").write_text(json.dumps({"id": "x", "name": 42}))
    cases.append(Case("a number where the name belongs", MODEL, named, ("model.json", "name")))
    garbled = _tiny_model(folder / "garbled-head", head_metadata={"classes": "denoise, deblur (not JSON"})
    cases.append(Case("text head with non-JSON metadata", MODEL, garbled, ("text_head.safetensors", "not JSON")))

    evil = folder / "evil.pt"
    torch.save({"intro.weight": torch.zeros(8, 3, 3, 3), "payload": _Payload()}, evil)
    cases.append(Case("pickle that would run a command", WEIGHTS, evil, ("evil.pt", "could run code", "not loaded")))
    sure = folder / "cut.safetensors"
    save_file({"intro.weight": torch.zeros(64, 3, 3, 3)}, str(sure))
    sure.write_bytes(sure.read_bytes()[:-100])
    cases.append(Case("truncated safetensors", WEIGHTS, sure, ("cut.safetensors", "safetensors")))
    deep = folder / "levels.safetensors"
    save_file(
        {
            "intro.weight": torch.zeros(8, 3, 3, 3),
            "enc_cond.0.fc.weight": torch.zeros(8, 16),
            "downs.99999999.weight": torch.zeros(1),
        },
        str(deep),
    )
    cases.append(Case("weights naming 100 million levels", WEIGHTS, deep, ("levels.safetensors", "implausible")))
    return cases


# ----------------------------------------------------------------------------- plugins

PLUGIN_MANIFEST = """
id = "{name}"
name = "{name}"
version = "1"
api_version = 2
module = "{name}.code"

[[actions]]
id = "go"
title = "Go"
function = "go"
"""

# name → (the action's code, words the report must hold)
MISBEHAVING = {
    "segfault": (
        "import ctypes\n\ndef go(image, mask, params, context):\n    ctypes.string_at(0)\n",
        ("crashed", "SIGSEGV"),
    ),
    "aborts": ("import os\n\ndef go(image, mask, params, context):\n    os.abort()\n", ("crashed", "SIGABRT")),
    "exits": ("import sys\n\ndef go(image, mask, params, context):\n    sys.exit(0)\n", ("sys.exit(0)",)),
    "hard-exit": (
        "import os\n\ndef go(image, mask, params, context):\n    os._exit(0)\n",
        ("ended its process", "exit code 0"),
    ),
    "interrupts": ("def go(image, mask, params, context):\n    raise KeyboardInterrupt\n", ("KeyboardInterrupt",)),
    "hangs": (
        "import threading\n\ndef go(image, mask, params, context):\n    threading.Event().wait()\n",
        ("did not finish within", "stopped"),
    ),
    "import-crash": (
        "import os\nos.abort()\n\ndef go(image, mask, params, context):\n    return image\n",
        ("crashed",),
    ),
    "wrong-shape": ("def go(image, mask, params, context):\n    return image[:3]\n", ("shape",)),
    "enormous": (
        "import numpy as np\n\ndef go(image, mask, params, context):\n"
        "    return np.zeros((image.shape[0] * 100, image.shape[1] * 100, 3), np.float32)\n",
        ("shape",),
    ),
    "objects": (
        "import numpy as np\n\ndef go(image, mask, params, context):\n    return np.empty(image.shape, dtype=object)\n",
        ("object", "not image pixels"),
    ),
    "nan": ("def go(image, mask, params, context):\n    return image * float('nan')\n", ("NaN",)),
    "a-list": ("def go(image, mask, params, context):\n    return image.tolist()\n", ("list", "not an image array")),
    "nothing": ("def go(image, mask, params, context):\n    return None\n", ("NoneType", "not an image array")),
    "bad-strength": (
        "from instructir_desktop.plugins.api import ActionResult\n\n"
        "def go(image, mask, params, context):\n    return ActionResult(image.copy(), strength='high')\n",
        ("strength",),
    ),
    "huge-ints": (
        "import numpy as np\n\ndef go(image, mask, params, context):\n"
        "    return np.full(image.shape, 10**300, dtype=object).astype(float)\n",
        ("infinite",),
    ),
}


def write_plugin(root: Path, name: str, manifest: str | bytes, code: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugin.toml").write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
    (folder / "__init__.py").write_text("")
    (folder / "code.py").write_text(textwrap.dedent(code))
    return folder


GOOD_CODE = "import numpy as np\n\ndef go(image, mask, params, context):\n    return (1.0 - image).astype(np.float32)\n"


def _plugins(root: Path) -> list[Case]:
    broken = root / "plugins"
    cases = []
    write_plugin(broken, "good", PLUGIN_MANIFEST.format(name="good"), GOOD_CODE)
    inf = PLUGIN_MANIFEST.format(name="infinite").replace("api_version = 2", "api_version = inf")
    cases.append(Case("api_version = inf", LISTING, write_plugin(broken, "infinite", inf, GOOD_CODE), ("api_version",)))
    latin = PLUGIN_MANIFEST.format(name="latin").replace('name = "latin"', 'name = "Caf\xe9"').encode("latin-1")
    cases.append(Case("manifest not UTF-8", LISTING, write_plugin(broken, "latin", latin, GOOD_CODE), ("UTF-8",)))
    number = 'id = "numbers"\nname = "numbers"\nactions = 7\n'
    cases.append(
        Case(
            "a number where the actions belong",
            LISTING,
            write_plugin(broken, "numbers", number, GOOD_CODE),
            ("actions",),
        )
    )
    titled = PLUGIN_MANIFEST.format(name="titled").replace('title = "Go"', "title = 3")
    cases.append(
        Case("a number where a title belongs", LISTING, write_plugin(broken, "titled", titled, GOOD_CODE), ("title",))
    )
    stray = broken / "stray"
    stray.mkdir(parents=True, exist_ok=True)
    (stray / "__init__.py").write_text("")
    cases.append(Case("a package without a manifest", LISTING, stray, ("plugin.toml",)))
    a_file = root / "plugins-folder.txt"
    a_file.write_text("I was chosen as a plugin folder, but I am a file.\n")
    cases.append(Case("a plugin folder that is a file", LISTING, a_file, ("is a file",)))

    misbehaving = root / "misbehaving"
    for name, (code, expect) in MISBEHAVING.items():
        module = name.replace("-", "_")
        write_plugin(misbehaving, module, PLUGIN_MANIFEST.format(name=module), code)
        cases.append(Case(f"plugin that {name}", PLUGIN, misbehaving, expect, action=f"{module}.go"))

    words = root / "instructions"
    words.mkdir(parents=True, exist_ok=True)
    latin_lines = words / "latin.txt"
    latin_lines.write_bytes("remove the noise\nmake it brighter, s'il vous pla\xeet\n".encode("latin-1"))
    cases.append(Case("instruction file not UTF-8", INSTRUCTIONS, latin_lines, ("latin.txt", "line 2", "UTF-8")))
    return cases


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile")
    for case in build(target):
        print(f"{case.door:12} {case.name:40} {case.path}")
