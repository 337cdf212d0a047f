"""Plugin API, discovery without importing, safe running, the photo-tools plugin, the CLI commands."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from instructir_desktop.cli import main as cli
from instructir_desktop.io import read_image, write_image
from instructir_desktop.plugins.api import ActionCancelled, NullContext, Parameter, PluginError
from instructir_desktop.plugins.host import PluginHost, parse_manifest
from instructir_desktop.plugins.testing import run_action, sample_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = ROOT / "docs" / "examples" / "invert_plugin"

GOOD_MANIFEST = """
id = "demo"
name = "Demo"
version = "2.0"
api_version = 1
module = "demo.code"

[[actions]]
id = "brighten"
title = "Brighten"
function = "brighten"
  [[actions.parameters]]
  name = "amount"
  kind = "float"
  default = 0.1
  min = 0.0
  max = 1.0

[[commands]]
name = "brighter"
action = "brighten"
arguments = ["amount"]
"""


def write_folder_plugin(root: Path, name: str, manifest: str, code: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "plugin.toml").write_text(manifest.replace('"demo"', f'"{name}"').replace("demo.code", f"{name}.code"))
    (folder / "__init__.py").write_text("")
    (folder / "code.py").write_text(textwrap.dedent(code))
    return folder


BRIGHTEN_CODE = """
    import numpy as np

    def brighten(image, mask, params, context):
        context.progress(0.5)
        context.check_cancel()
        return np.clip(image + params["amount"], 0, 1).astype(np.float32)
"""


# ----------------------------------------------------------------------------- manifests & parameters


def test_manifest_is_parsed_with_qualified_ids():
    manifest = parse_manifest(GOOD_MANIFEST, "demo/plugin.toml")
    assert manifest.id == "demo" and manifest.version == "2.0"
    (action,) = manifest.actions
    assert action.id == "demo.brighten" and action.plugin_id == "demo"
    assert manifest.commands[0].action == "demo.brighten"
    assert action.resolve_params({}) == {"amount": 0.1}
    assert action.resolve_params({"amount": "0.5"}) == {"amount": 0.5}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("[[actions]]", "[[actions]"), "not valid TOML"),
        (lambda t: t.replace("api_version = 1", "api_version = 99"), "API 99"),
        (lambda t: t.replace('id = "demo"\n', ""), "'id'"),
        (lambda t: t.replace("default = 0.1", "default = 5.0"), "outside"),
        (lambda t: t.replace('kind = "float"', 'kind = "colour"'), "kind"),
        (lambda t: t.replace('arguments = ["amount"]', 'arguments = ["radius"]'), "binds parameters"),
        (lambda t: t.split("[[actions]]")[0], "no actions"),
    ],
)
def test_bad_manifests_give_one_clear_line(change, message):
    with pytest.raises(PluginError, match=message) as caught:
        parse_manifest(change(GOOD_MANIFEST), "demo/plugin.toml")
    assert "demo/plugin.toml" in str(caught.value) and "\n" not in str(caught.value)


def test_parameters_coerce_text_and_check_ranges():
    assert Parameter("n", "int", 3, 1, 9).coerce("7") == 7
    assert Parameter("b", "bool", False).coerce("yes") is True
    assert Parameter("c", "choice", "a", choices=("a", "b")).coerce("b") == "b"
    for parameter, value in [
        (Parameter("n", "int", 3, 1, 9), "12"),
        (Parameter("f", "float", 0.5, 0, 1), "nan"),
        (Parameter("f", "float", 0.5, 0, 1), "lots"),
        (Parameter("b", "bool", False), "maybe"),
        (Parameter("c", "choice", "a", choices=("a", "b")), "z"),
    ]:
        with pytest.raises(PluginError):
            parameter.coerce(value)


# ----------------------------------------------------------------------------- folder plugins, broken ones


def test_folder_plugin_is_listed_without_importing_then_runs(tmp_path):
    write_folder_plugin(tmp_path, "bright", GOOD_MANIFEST, BRIGHTEN_CODE)
    host = PluginHost(user_folders=[tmp_path], use_entry_points=False, builtin_packages=())
    assert [r["id"] for r in host.list()] == ["bright"]
    assert not any("_instructir_user_plugin_bright" in name for name in sys.modules)
    image = sample_image()
    context = NullContext()
    result = host.run("bright.brighten", image, params={"amount": 0.2}, context=context)
    np.testing.assert_allclose(result, np.clip(image + 0.2, 0, 1), atol=1e-6)
    assert context.fractions == [0.5]
    action, params = host.parse_command("/brighter 0.3")
    assert action.id == "bright.brighten" and params == {"amount": 0.3}


def test_selection_limits_the_change(tmp_path):
    write_folder_plugin(tmp_path, "bright", GOOD_MANIFEST, BRIGHTEN_CODE)
    host = PluginHost(user_folders=[tmp_path], use_entry_points=False, builtin_packages=())
    image = sample_image()
    mask = np.zeros(image.shape[:2], dtype=np.float32)
    mask[10:20, 10:30] = 1
    result = host.run("bright.brighten", image, mask=mask, params={"amount": 0.3})
    np.testing.assert_array_equal(result[mask == 0], image[mask == 0])
    assert np.all(result[mask == 1] >= image[mask == 1])
    assert result[mask == 1].mean() > image[mask == 1].mean() + 0.1


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import not_a_module_anywhere\n", "cannot import"),
        (BRIGHTEN_CODE + "\n    raise_at_import = 1 / 0\n", "ZeroDivisionError"),
        ("def brighten(image, mask, params, context):\n    raise RuntimeError('boom')\n", "boom"),
        ("def brighten(image, mask, params, context):\n    return image[:5]\n", "shape"),
        ("def brighten(image, mask, params, context):\n    return image * float('nan')\n", "NaN"),
        ("def brighten(image, mask, params, context):\n    image += 1\n    return image\n", "read-only"),
        ("def other(image, mask, params, context):\n    return image\n", "has no brighten"),
    ],
)
def test_broken_plugin_is_reported_and_the_image_is_untouched(tmp_path, code, message):
    write_folder_plugin(tmp_path, "broken", GOOD_MANIFEST, code)
    write_folder_plugin(tmp_path, "works", GOOD_MANIFEST, BRIGHTEN_CODE)
    host = PluginHost(user_folders=[tmp_path], use_entry_points=False, builtin_packages=())
    image = sample_image()
    before = image.copy()
    with pytest.raises(PluginError, match=message):
        host.run("broken.brighten", image)
    np.testing.assert_array_equal(image, before)
    # The host keeps working for everything else.
    assert host.run("works.brighten", image).shape == image.shape


def test_broken_manifest_is_listed_with_its_error(tmp_path):
    write_folder_plugin(tmp_path, "mangled", GOOD_MANIFEST.replace("[[actions]]", "[[actions"), BRIGHTEN_CODE)
    host = PluginHost(user_folders=[tmp_path], use_entry_points=False, builtin_packages=())
    (entry,) = host.list()
    assert entry["error"] and "TOML" in entry["error"] and entry["actions"] == []
    with pytest.raises(PluginError):
        host.action("mangled.brighten")


def test_disabled_plugin_offers_no_actions(tmp_path):
    write_folder_plugin(tmp_path, "bright", GOOD_MANIFEST, BRIGHTEN_CODE)
    host = PluginHost(user_folders=[tmp_path], use_entry_points=False, builtin_packages=(), disabled=["bright"])
    assert host.actions() == [] and host.list()[0]["enabled"] is False
    with pytest.raises(PluginError, match="disabled"):
        host.run("bright.brighten", sample_image())
    host.set_enabled("bright", True)
    assert [a.id for a in host.actions()] == ["bright.brighten"]


def test_cancel_propagates(tmp_path):
    code = "from instructir_desktop.plugins.api import ActionCancelled\n\ndef brighten(i, m, p, c):\n"
    code += "    raise ActionCancelled()\n"
    write_folder_plugin(tmp_path, "slow", GOOD_MANIFEST, code)
    host = PluginHost(user_folders=[tmp_path], use_entry_points=False, builtin_packages=())
    with pytest.raises(ActionCancelled):
        host.run("slow.brighten", sample_image())


# ----------------------------------------------------------------------------- the photo-tools plugin


def test_photo_tools_are_discovered_through_their_entry_point_without_import():
    code = (
        "import json, sys\n"
        "from instructir_desktop.plugins.host import PluginHost\n"
        "host = PluginHost()\n"
        "print(json.dumps([host.list(), 'instructir_photo_tools.actions' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    listing, imported = json.loads(out)
    tools = next(p for p in listing if p["id"] == "photo-tools")
    assert tools["error"] is None and tools["enabled"] and tools["version"] == "1.0.0"
    assert "photo-tools.unsharp-mask" in tools["actions"]
    assert imported is False


def test_auto_white_balance_removes_a_colour_cast():
    grey = sample_image().mean(axis=-1, keepdims=True)
    image = np.repeat(grey, 3, axis=-1)  # a neutral scene...
    cast = np.clip(image * np.array([1.0, 0.85, 0.6], dtype=np.float32), 0, 1)  # ...under warm light
    fixed = run_action("photo-tools.auto-white-balance", cast)
    spread = lambda img: float(np.ptp(img.reshape(-1, 3).mean(axis=0)))  # noqa: E731
    assert spread(fixed) < spread(cast) / 3
    half = run_action("photo-tools.auto-white-balance", cast, {"strength": 0.5})
    assert spread(fixed) < spread(half) < spread(cast)


def test_auto_levels_stretches_a_flat_photo():
    flat = 0.3 + 0.3 * sample_image()
    stretched = run_action("photo-tools.auto-levels", flat, {"clip": 0.5})
    assert np.quantile(stretched, 0.01) < 0.05 and np.quantile(stretched, 0.99) > 0.95
    brighter = run_action("photo-tools.auto-levels", flat, {"clip": 0.5, "gamma": 2.0})
    assert brighter.mean() > stretched.mean()


def test_unsharp_mask_sharpens_edges_and_leaves_flat_areas():
    image = np.full((40, 40, 3), 0.3, dtype=np.float32)
    image[:, 20:] = 0.7
    sharpened = run_action("photo-tools.unsharp-mask", image, {"amount": 1.0, "radius": 2.0})
    assert sharpened[:, 19].mean() < 0.3 - 0.02 and sharpened[:, 20].mean() > 0.7 + 0.02  # overshoot at the edge
    np.testing.assert_allclose(sharpened[:, :10], 0.3, atol=1e-5)
    untouched = run_action("photo-tools.unsharp-mask", image, {"amount": 0.0})
    np.testing.assert_allclose(untouched, image, atol=1e-6)


def test_box_blur_approximates_a_gaussian():
    from instructir_photo_tools.actions import gaussian_blur

    impulse = np.zeros((81, 81), dtype=np.float32)
    impulse[40, 40] = 1
    for sigma in (1.0, 3.0, 6.0):
        blurred = gaussian_blur(impulse, sigma)
        assert abs(float(blurred.sum()) - 1) < 1e-4
        ys = np.arange(81) - 40
        variance = float((blurred.sum(axis=1) * ys**2).sum())
        assert abs(np.sqrt(variance) - sigma) < 0.1 * sigma


# ----------------------------------------------------------------------------- command line


def test_cli_plugins_list_json(capsys):
    assert cli.main(["plugins", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert all(set(entry) == {"id", "name", "version", "actions", "enabled", "error"} for entry in listing)
    assert any(entry["id"] == "photo-tools" for entry in listing)


def test_cli_apply_runs_an_action_on_files(tmp_path, capsys):
    source = tmp_path / "in.png"
    write_image(source, sample_image())
    out = tmp_path / "out.png"
    code = cli.main(["apply", "photo-tools.auto-levels", str(source), "-o", str(out), "--param", "clip=1"])
    assert code == 0
    assert read_image(out).rgb.shape == (48, 64, 3)
    assert cli.main(["apply", "photo-tools.auto-levels", str(source), "-o", str(out), "--param", "clip=99"]) == 2
    assert cli.main(["apply", "nobody.nothing", str(source), "-o", str(out)]) == 2
    assert "no action" in capsys.readouterr().err


@pytest.mark.slow
def test_pip_installed_example_plugin_is_discovered_and_runs(tmp_path):
    """The author guide's plugin, pip-installed into a fresh target, found through its entry point."""
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    install += ["--target", str(target), str(EXAMPLE_PLUGIN)]
    subprocess.run(install, check=True, capture_output=True, text=True, timeout=300)
    source, out = tmp_path / "in.png", tmp_path / "out.png"
    write_image(source, sample_image())
    env_path = {"PYTHONPATH": str(target)}
    run = [sys.executable, "-m", "instructir_desktop.cli.main"]
    import os

    env = {**os.environ, **env_path}
    listing = subprocess.run([*run, "plugins", "list", "--json"], env=env, capture_output=True, text=True, check=True)
    entry = next(p for p in json.loads(listing.stdout) if p["id"] == "invert")
    assert entry["actions"] == ["invert.negative"] and entry["error"] is None
    applied = subprocess.run([*run, "apply", "invert.negative", str(source), "-o", str(out)], env=env, check=False)
    assert applied.returncode == 0
    np.testing.assert_allclose(read_image(out).rgb, 1 - read_image(source).rgb, atol=1 / 255 + 1e-6)
    # The author guide's own tests, with this project's pytest fixtures, pass against the install.
    tests = EXAMPLE_PLUGIN / "tests"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tests), str(tests)]
    guide = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert guide.returncode == 0, guide.stdout + guide.stderr
    assert "2 passed" in guide.stdout


# ----------------------------------------------------------------------------- on the engine's worker


def test_plugin_action_runs_on_the_engine_worker_with_progress_and_cancel(tmp_path):
    import threading

    from instructir_desktop.inference.engine import Engine
    from instructir_desktop.inference.requests import Cancelled, Finished, Progress
    from instructir_desktop.plugins.jobs import action_request
    from instructir_desktop.plugins.outcome import ActionInput

    def plugin_request(host, action_id, image, params):
        return action_request(host, action_id, ActionInput(image), params, then=lambda outcome: outcome.pixels)

    code = """
    import threading
    import numpy as np
    release = threading.Event()

    def brighten(image, mask, params, context):
        context.progress(0.5, "half way")
        if params["amount"] == 1.0:
            while True:  # runs until cancelled
                context.progress(0.5, "waiting")
                context.check_cancel()
                release.wait(0.01)
        return np.clip(image + params["amount"], 0, 1).astype(np.float32)
    """
    write_folder_plugin(tmp_path, "bright", GOOD_MANIFEST, code)
    host = PluginHost(user_folders=[tmp_path], use_entry_points=False, builtin_packages=())
    events: list = []
    done = threading.Event()

    def listen(event):
        events.append(event)
        if isinstance(event, (Finished, Cancelled)):
            done.set()

    engine = Engine(listener=listen, runtime_loader=lambda settings: pytest.fail("no model needed"))
    try:
        image = sample_image()
        result = engine.run(plugin_request(host, "bright.brighten", image, {"amount": 0.25}), timeout=30)
        np.testing.assert_allclose(result, np.clip(image + 0.25, 0, 1), atol=1e-6)
        assert any(isinstance(e, Progress) and e.stage == "half way" for e in events)

        done.clear()
        request_id = engine.submit(plugin_request(host, "bright.brighten", image, {"amount": 1.0}))
        for _ in range(1000):  # until the job is visibly running
            if any(isinstance(e, Progress) and e.request_id == request_id for e in events):
                break
            threading.Event().wait(0.01)
        engine.cancel(request_id)
        assert done.wait(10)
        assert isinstance(events[-1], Cancelled) and events[-1].request_id == request_id
        with pytest.raises(PluginError, match="outside"):
            plugin_request(host, "bright.brighten", image, {"amount": 7})
    finally:
        engine.close()


# ----------------------------------------------------------------------------- the restore action as a plugin


def test_restore_is_a_builtin_plugin_found_through_the_same_path():
    host = PluginHost(use_entry_points=False)
    (record,) = host.records
    assert record.id == "restore" and record.source == "builtin" and record.error is None
    action, params = host.parse_command("/restore remove the noise please")
    assert action.id == "restore.instruct" and params["instruction"] == "remove the noise please"


def test_restore_action_runs_the_model_with_strength_and_selection():
    from test_cli import tiny_runtime

    from instructir_desktop.plugins.jobs import RuntimeServices

    runtime = tiny_runtime()
    host = PluginHost(use_entry_points=False)
    context = RuntimeServices(lambda: runtime)
    image = sample_image(64, 64)
    full = host.run("restore.instruct", image, params={"instruction": "remove the grain"}, context=context)
    assert full.shape == image.shape and np.abs(full - image).mean() > 1e-3
    part = host.run("restore.instruct", image, params={"instruction": "denoise", "strength": 0.3}, context=context)
    np.testing.assert_allclose(part, 0.7 * image + 0.3 * full, atol=1e-5)
    mask = np.zeros((64, 64), dtype=np.float32)
    mask[8:24, 8:40] = 1
    local = host.run("restore.instruct", image, mask, {"instruction": "denoise"}, context)
    np.testing.assert_array_equal(local[mask == 0], image[mask == 0])
    assert np.abs(local[mask == 1] - image[mask == 1]).mean() > 1e-3
    with pytest.raises(PluginError, match="can"):
        host.run("restore.instruct", image, params={"instruction": "add a dog"}, context=context)


def test_restore_action_on_the_engine_worker():
    from test_cli import tiny_runtime

    from instructir_desktop.inference.engine import Engine
    from instructir_desktop.plugins.jobs import action_request
    from instructir_desktop.plugins.outcome import ActionInput

    host = PluginHost(use_entry_points=False)
    engine = Engine(runtime_loader=lambda settings: tiny_runtime())
    try:
        image = sample_image(48, 48)
        params = {"instruction": "remove the noise"}
        request = action_request(host, "restore.instruct", ActionInput(image), params, then=lambda outcome: outcome)
        outcome = engine.run(request, timeout=60)
        assert outcome.pixels.shape == image.shape and not np.allclose(outcome.pixels, image)
        assert outcome.tasks == ("denoise",) and outcome.model_id == "tiny"
    finally:
        engine.close()
