"""The model store from the command line: list, add, remove, default; safe loading; clear refusals."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
import torch

from instructir_desktop.cli import main as cli
from instructir_desktop.model.store import STORE_FOLDER_ENV, ModelStore
from instructir_desktop.model.tasks import TASKS
from tests.expert_fixtures import dncnn, retinexformer, save_checkpoint, span_x


@pytest.fixture
def store_folder(tmp_path, monkeypatch):
    folder = tmp_path / "store"
    monkeypatch.setenv(STORE_FOLDER_ENV, str(folder))
    return folder


def listed(capsys) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["models", "list", "--json"]) == cli.EXIT_OK
    return json.loads(capsys.readouterr().out)


def added_id(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert cli.main(["models", "add", *argv]) == cli.EXIT_OK
    return capsys.readouterr().out.strip()


def test_a_fresh_store_lists_the_bundled_model_for_every_task(store_folder, capsys):
    models = listed(capsys)
    assert len(models) == 1
    bundled = models[0]
    assert bundled["id"] == "bundled"
    assert bundled["source"] == "bundled"
    assert bundled["scale"] == 1
    assert bundled["tasks"] == list(TASKS)
    assert bundled["default_for"] == list(TASKS)
    assert {"id", "name", "architecture", "tasks", "scale", "source", "default_for"} <= set(bundled)


def test_add_detects_three_architectures_and_defaults_move_and_come_back(store_folder, tmp_path, capsys):
    upscaler = added_id(capsys, str(save_checkpoint(span_x(2), tmp_path / "span_x2.pth")))
    denoiser = added_id(
        capsys, str(save_checkpoint(dncnn(), tmp_path / "dncnn.safetensors")), "--name", "My DnCNN", "--default"
    )
    lowlight = added_id(capsys, str(save_checkpoint(retinexformer(), tmp_path / "retinex.pth")), "--default")
    models = {model["id"]: model for model in listed(capsys)}
    assert models[upscaler]["architecture"] == "SPAN"
    assert models[upscaler]["scale"] == 2
    assert models[upscaler]["tasks"] == ["upscale"]
    assert models[upscaler]["default_for"] == []  # added without --default
    assert models[denoiser]["name"] == "My DnCNN"
    assert models[denoiser]["tasks"] == ["denoise"]
    assert models[denoiser]["default_for"] == ["denoise"]
    assert models[lowlight]["architecture"] == "RetinexFormer"
    assert models[lowlight]["default_for"] == ["lowlight"]
    assert all(model["source"] == "user" for key, model in models.items() if key != "bundled")
    assert models["bundled"]["default_for"] == [t for t in TASKS if t not in ("denoise", "lowlight")]
    # Files are kept under their content hash, as safetensors, whatever they came as.
    stored = sorted(p.name for p in store_folder.iterdir() if p.suffix == ".safetensors")
    assert len(stored) == 3 and all(len(name) == 64 + len(".safetensors") for name in stored)

    assert cli.main(["models", "default", "upscale", upscaler]) == cli.EXIT_OK
    assert cli.main(["models", "default", "denoise", "bundled"]) == cli.EXIT_OK
    models = {model["id"]: model for model in listed(capsys)}
    assert models[upscaler]["default_for"] == ["upscale"]
    assert models[denoiser]["default_for"] == []
    assert "denoise" in models["bundled"]["default_for"]

    assert cli.main(["models", "remove", lowlight]) == cli.EXIT_OK
    models = {model["id"]: model for model in listed(capsys)}
    assert lowlight not in models
    assert "lowlight" in models["bundled"]["default_for"]
    assert len([p for p in store_folder.iterdir() if p.suffix == ".safetensors"]) == 2


def test_the_bundled_model_cannot_be_removed(store_folder, capsys):
    assert cli.main(["models", "remove", "bundled"]) == cli.EXIT_USAGE
    assert "cannot be removed" in capsys.readouterr().err
    assert [model["id"] for model in listed(capsys)] == ["bundled"]


def test_a_network_for_several_tasks_asks_for_the_task(store_folder, tmp_path, capsys):
    import_spandrel = __import__("instructir_desktop.model.spandrel_import", fromlist=["x"]).import_spandrel
    import_spandrel()
    from spandrel.architectures.NAFNet import NAFNet

    path = save_checkpoint(
        NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1]), tmp_path / "naf.pth"
    )
    assert cli.main(["models", "add", str(path)]) == cli.EXIT_USAGE
    assert "--task" in capsys.readouterr().err
    identifier = added_id(capsys, str(path), "--task", "deblur")
    assert {m["id"]: m for m in listed(capsys)}[identifier]["tasks"] == ["deblur"]
    # An upscaler cannot be told to serve another task.
    span = save_checkpoint(span_x(2), tmp_path / "span.pth")
    assert cli.main(["models", "add", str(span), "--task", "denoise"]) == cli.EXIT_USAGE
    assert "only serve upscale" in capsys.readouterr().err


class _RunsCode:
    """Unpickling this calls Path.touch on the marker: code a weights file must never run."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_is_added(store_folder, tmp_path, capsys):
    marker = tmp_path / "the-code-ran"
    hostile = tmp_path / "model.pth"
    torch.save({"weight": torch.zeros(3), "payload": _RunsCode(marker)}, hostile)
    assert not marker.exists()
    capsys.readouterr()
    code = cli.main(["models", "add", str(hostile)])
    errors = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert not marker.exists()
    lines = [line for line in errors.splitlines() if line.strip()]
    assert len(lines) == 1 and "could run code" in lines[0] and "Traceback" not in errors
    assert [model["id"] for model in listed(capsys)] == ["bundled"]
    assert not store_folder.exists() or not any(store_folder.iterdir())


def test_damaged_and_unknown_files_get_one_clear_line(store_folder, tmp_path, capsys):
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(os.urandom(2000))
    unknown = tmp_path / "unknown.safetensors"
    from safetensors.torch import save_file

    save_file({"encoder.layer.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}, str(unknown))
    folder = tmp_path / "weights"
    folder.mkdir()
    cases = (
        (damaged, "damaged"),
        (unknown, "not a network architecture"),
        (folder, "is a folder"),
        (tmp_path / "missing.pth", "no such file"),
    )
    for path, words in cases:
        capsys.readouterr()
        assert cli.main(["models", "add", str(path)]) == cli.EXIT_FAILED
        errors = capsys.readouterr().err
        assert words in errors and len(errors.strip().splitlines()) == 1
    assert [model["id"] for model in listed(capsys)] == ["bundled"]


def test_adding_the_same_file_twice_names_the_first(store_folder, tmp_path, capsys):
    path = save_checkpoint(dncnn(), tmp_path / "dn.pth")
    first = added_id(capsys, str(path))
    assert cli.main(["models", "add", str(path)]) == cli.EXIT_USAGE
    assert first in capsys.readouterr().err
    assert len(ModelStore().list()) == 2


def test_a_model_is_found_by_name_and_by_id_prefix(store_folder, tmp_path, capsys):
    identifier = added_id(capsys, str(save_checkpoint(dncnn(), tmp_path / "dn.pth")), "--name", "Clean Noise")
    store = ModelStore()
    assert store.find("clean noise").id == identifier
    assert store.find(identifier[:9]).id == identifier
    with pytest.raises(KeyError):
        store.find("no such model")
    assert np.isfinite(store.list()[1].size) and store.list()[1].source_file == "dn.pth"


def test_spandrel_imports_without_torchvision_and_leaves_no_stand_in_behind():
    import subprocess
    import sys

    code = (
        "import importlib.util, sys\n"
        "from instructir_desktop.model.spandrel_import import import_spandrel\n"
        "spandrel = import_spandrel()\n"
        "print(importlib.util.find_spec('torchvision') is None, 'torchvision' in sys.modules,"
        " len(spandrel.MAIN_REGISTRY) > 30)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    installed_torchvision = out.split()[0] == "False"
    assert out.split()[1:] == [str(installed_torchvision), "True"]


def test_the_stand_in_normalize_is_torchvisions_formula():
    from instructir_desktop.model.spandrel_import import normalize

    image = torch.tensor([[[0.5]], [[0.25]], [[1.0]]])
    result = normalize(image, [0.5, 0.5, 0.5], [0.5, 0.25, 0.5])
    assert result.flatten().tolist() == [0.0, -1.0, 1.0]


def test_a_damaged_manifest_is_one_line_naming_the_file(store_folder, capsys):
    store_folder.mkdir(parents=True)
    (store_folder / "manifest.json").write_text("{ not json")
    capsys.readouterr()
    assert cli.main(["models", "list", "--json"]) == cli.EXIT_FAILED
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "manifest.json" in errors[0] and "fix or delete it" in errors[0]
