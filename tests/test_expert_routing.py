"""Plan steps run on their task's model; any model is tiled seam-free, padded, scaled and cancellable."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instructir_desktop.cli import main as cli
from instructir_desktop.inference.engine import JobCancelled
from instructir_desktop.inference.expert_routing import ExpertRouter
from instructir_desktop.inference.expert_tiling import ExpertTiler, ExpertTiling, tile_for_memory
from instructir_desktop.inference.requests import RestoreRequest
from instructir_desktop.inference.runtime import Runtime
from instructir_desktop.instructions.interpret import parse_plan
from instructir_desktop.model.experts import load_expert_file
from instructir_desktop.model.store import STORE_FOLDER_ENV, ModelStore
from tests.expert_fixtures import dncnn, retinexformer, save_checkpoint, span_x
from tests.test_cli import KeywordEncoder, photo, tiny_runtime

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_FOLDER_ENV, str(tmp_path / "store"))
    return ModelStore()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * math.log10(1 / max(mse, 1e-12))


def direct(network: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The network on the whole image by itself, padded by hand to a multiple of 8: the reference."""
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
    height, width = image.shape[:2]
    padded = F.pad(tensor, (0, (-width) % 8, 0, (-height) % 8), mode="reflect")
    with torch.inference_mode():
        output = network(padded).clamp(0, 1)
    scale = output.shape[-2] // padded.shape[-2]
    return output[0, :, : height * scale, : width * scale].permute(1, 2, 0).numpy()


def runtime_with(store: ModelStore, forced=None, tile_size: int | None = None) -> Runtime:
    base = tiny_runtime()
    return Runtime(
        base.model, KeywordEncoder(), torch.device("cpu"), torch.float32, tile_size, store=store, forced_model=forced
    )


def test_each_step_runs_on_its_tasks_default_and_the_result_names_them(store, tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((40, 48, 3), dtype=np.float32)
    denoiser = store.add(save_checkpoint(dncnn(), tmp_path / "dn.pth"), make_default=True)
    upscaler = store.add(save_checkpoint(span_x(2), tmp_path / "span.pth"), make_default=True)
    runtime = runtime_with(store)
    result = runtime.restore(RestoreRequest(image, parse_plan("denoise, upscale x2, deblur")))
    assert result.step_models == (denoiser.id, upscaler.id, "")  # deblur: the bundled network
    assert result.model_id == f"{denoiser.id}+{upscaler.id}+{runtime.model_id}"
    assert result.restored.shape == (80, 96, 3)
    assert any(denoiser.name in notice and "Remove noise" in notice for notice in result.notices)
    # The first two steps are exactly the two networks applied by themselves.
    only_experts = runtime.restore(RestoreRequest(image, parse_plan("denoise, upscale x2")))
    expected = direct(span_x(2), direct(dncnn(), image))
    assert psnr(only_experts.restored, expected) > 50


def test_a_x4_network_serves_a_x2_request_by_a_high_quality_reduction(store, tmp_path):
    image = np.random.default_rng(1).random((24, 32, 3), dtype=np.float32)
    store.add(save_checkpoint(span_x(4), tmp_path / "span4.pth"), make_default=True)
    result = runtime_with(store).restore(RestoreRequest(image, parse_plan("upscale x2")))
    assert result.restored.shape == (48, 64, 3)
    x4 = torch.from_numpy(direct(span_x(4), image)).permute(2, 0, 1)[None]
    expected = F.interpolate(x4, size=(48, 64), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    assert psnr(result.restored, expected[0].permute(1, 2, 0).numpy()) > 50


def test_a_step_naming_a_model_and_a_forced_model_override_the_defaults(store, tmp_path):
    image = np.random.default_rng(2).random((32, 32, 3), dtype=np.float32)
    denoiser = store.add(save_checkpoint(dncnn(), tmp_path / "dn.pth"))  # not the default
    plain = runtime_with(store).restore(RestoreRequest(image, parse_plan("denoise")))
    assert plain.step_models == ("",)
    named = runtime_with(store).restore(RestoreRequest(image, parse_plan(f"denoise @{denoiser.id}")))
    assert named.step_models == (denoiser.id,)
    forced = runtime_with(store, forced=denoiser).restore(RestoreRequest(image, parse_plan("denoise, deblur")))
    assert forced.step_models == (denoiser.id, "")  # forced only for the steps of its tasks
    assert psnr(named.restored, direct(dncnn(), image)) > 50


@pytest.mark.parametrize(
    ("make", "suffix"),
    [(lambda: span_x(2), ".pth"), (dncnn, ".safetensors"), (retinexformer, ".pth")],
    ids=["span-x2", "dncnn", "retinexformer-pads-to-8"],
)
def test_tiled_matches_untiled_within_half_a_db_for_any_architecture(tmp_path, make, suffix):
    network = make()
    expert = load_expert_file(save_checkpoint(network, tmp_path / f"net{suffix}"))
    rng = np.random.default_rng(3)
    clean = rng.random((1, 3, 72, 100), dtype=np.float32)
    clean = F.avg_pool2d(torch.from_numpy(clean), 5, 1, 2)  # smooth content, like a photo
    shapes: list[tuple[int, int]] = []
    call = expert._call

    def recording(tile, level):
        shapes.append(tuple(tile.shape[-2:]))
        return call(tile, level)

    expert._call = recording
    whole = ExpertTiler(expert, ExpertTiling(tile=512)).restore(clean)
    assert len(shapes) == 1
    shapes.clear()
    tiled = ExpertTiler(expert, ExpertTiling(tile=40, overlap=16)).restore(clean)
    assert len(shapes) > 4  # larger than one tile: really tiled
    assert all(h % expert.size_multiple == 0 and w % expert.size_multiple == 0 for h, w in shapes)
    assert tiled.shape == whole.shape == (1, 3, 72 * expert.scale, 100 * expert.scale)
    reference = F.interpolate(clean, scale_factor=expert.scale, mode="bicubic") if expert.scale > 1 else clean
    as_image = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
    assert abs(psnr(as_image(tiled), as_image(reference)) - psnr(as_image(whole), as_image(reference))) < 0.5
    assert psnr(as_image(tiled), as_image(whole)) > 40  # no seams


def test_half_precision_where_the_network_allows_it_and_never_for_the_cpu_route(tmp_path):
    # The GPU path runs experts in fp16 where spandrel says the architecture takes it. Here the
    # same code runs on the CPU (which has fp16 kernels for these layers): the tiles go in as
    # fp16 and come back float32 on the CPU, and the result is the float32 one to within fp16's
    # rounding. An architecture without half support stays float32 whatever is asked.
    span = load_expert_file(save_checkpoint(span_x(2), tmp_path / "span.pth"))
    dn = load_expert_file(save_checkpoint(dncnn(), tmp_path / "dn.pth"))
    image = F.avg_pool2d(torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(5)), 5, 1, 2)
    full = ExpertTiler(span, ExpertTiling(tile=512)).restore(image)
    seen: list[torch.dtype] = []
    call = span._call

    def recording(tile, level):
        seen.append(tile.dtype)
        return call(tile, level)

    span._call = recording
    half = ExpertTiler(span.to(torch.device("cpu"), torch.float16), ExpertTiling(tile=512)).restore(image)
    assert span.dtype == torch.float16 and seen == [torch.float16]
    assert half.dtype == torch.float32 and half.device.type == "cpu"
    as_image = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
    assert 45 < psnr(as_image(half), as_image(full)) < 200  # rounded, not the float32 result itself
    assert dn.to(torch.device("cpu"), torch.float16).dtype == torch.float32
    # The router keeps every expert float32 on the CPU, whatever precision the engine runs at.
    router = ExpertRouter(None)
    router.place(torch.device("cpu"), torch.float16, None)
    assert router.dtype == torch.float32


def test_padding_to_the_size_multiple_is_cropped_away(tmp_path):
    expert = load_expert_file(save_checkpoint(retinexformer(), tmp_path / "r.pth"))
    assert expert.size_multiple == 8
    image = torch.rand(1, 3, 37, 53)
    assert ExpertTiler(expert).restore(image).shape == (1, 3, 37, 53)


def test_cancel_is_checked_between_tiles(tmp_path):
    expert = load_expert_file(save_checkpoint(dncnn(), tmp_path / "d.pth"))
    calls = []
    call = expert._call
    expert._call = lambda tile, level: calls.append(1) or call(tile, level)
    checks = []

    def check_cancel():
        checks.append(1)
        if len(checks) == 3:
            raise JobCancelled

    with pytest.raises(JobCancelled):
        ExpertTiler(expert, ExpertTiling(tile=32, overlap=8)).restore(
            torch.rand(1, 3, 96, 96), check_cancel=check_cancel
        )
    assert len(calls) == 2


def test_the_tile_follows_the_memory_there_is(tmp_path):
    expert = load_expert_file(save_checkpoint(retinexformer(), tmp_path / "r.pth"))
    small, large = tile_for_memory(expert, 2e8), tile_for_memory(expert, 8e9)
    assert small < large
    assert small % 8 == 0 and large % 8 == 0
    upscaler = load_expert_file(save_checkpoint(span_x(4), tmp_path / "s.pth"))
    same_width = load_expert_file(save_checkpoint(span_x(2), tmp_path / "s2.pth"))
    assert tile_for_memory(upscaler, 2e9) < tile_for_memory(same_width, 2e9)  # x4 outputs are 4 times larger
    # A network whose output depends on the whole photo (global attention) gets larger tiles.
    local = load_expert_file(save_checkpoint(dncnn(), tmp_path / "d.pth"))
    assert expert.tiling_discouraged and not local.tiling_discouraged
    assert tile_for_memory(local, 1e13) == 1024 < tile_for_memory(expert, 1e13)


def test_restore_from_the_command_line_names_the_model_and_remove_ends_it(store, tmp_path, monkeypatch, capsys):
    denoiser = store.add(save_checkpoint(dncnn(), tmp_path / "dn.pth"), make_default=True)
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime_with(ModelStore()))
    source = photo(tmp_path / "in.png")
    assert cli.main(["restore", str(source), "-i", "remove the noise", "-o", str(tmp_path / "a.png")]) == 0
    errors = capsys.readouterr().err
    assert f"@{denoiser.id}" in errors and f"ran on {denoiser.label}" in errors
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime_with(ModelStore(), forced=denoiser))
    assert cli.main(["restore", str(source), "-i", "remove the noise", "-o", str(tmp_path / "c.png")]) == 0
    assert f"model for denoise: {denoiser.label}" in capsys.readouterr().err
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime_with(ModelStore()))
    assert cli.main(["models", "remove", denoiser.id]) == 0
    assert cli.main(["restore", str(source), "-i", "remove the noise", "-o", str(tmp_path / "b.png")]) == 0
    assert "@" not in capsys.readouterr().err.split("→")[-1]


def test_a_plan_naming_a_model_not_in_the_store_is_one_sentence(store, tmp_path, monkeypatch, capsys):
    # A chip's "Run this step on" after the model was removed, or a plan written by hand.
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime_with(ModelStore()))
    source = photo(tmp_path / "in.png")
    argv = ["apply", "restore.instruct", str(source), "-o", str(tmp_path / "out.png"), "--param", "plan=denoise @gone"]
    assert cli.main(argv) == cli.EXIT_FAILED
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {source}: no model 'gone' in the store; `instructir-desktop models list` shows them"]
    assert not (tmp_path / "out.png").exists()


def test_models_check_measures_the_model_against_the_bundled_one(store, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from instructir_desktop.inference import runtime as runtime_module
    from instructir_desktop.training.evaluation import EVAL_SETTINGS, degrade_with_clue

    data = tmp_path / "val"
    (data / "mcmaster").mkdir(parents=True)
    rng = np.random.default_rng(5)
    clean_u8 = (F.avg_pool2d(torch.from_numpy(rng.random((1, 3, 48, 48), dtype=np.float32)), 5, 1, 2) * 255).round()
    Image.fromarray(clean_u8[0].permute(1, 2, 0).numpy().astype(np.uint8)).save(data / "mcmaster" / "1.png")
    denoiser = store.add(save_checkpoint(dncnn(), tmp_path / "dn.pth"))
    monkeypatch.setattr(runtime_module, "load_runtime", lambda settings: runtime_with(ModelStore()))
    capsys.readouterr()
    assert cli.main(["models", "check", denoiser.id, "--data", str(data), "--sigma", "25"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| denoise")]
    assert len(rows) == 1 and "σ=25" in rows[0]
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    # The expert's number, computed here from the same seeded degradation without the command.
    clean = clean_u8 / 255
    setting = next(s for s in EVAL_SETTINGS if s.key == "denoise_25")
    degraded, _ = degrade_with_clue(clean, setting, seed=1000)
    restored = direct(dncnn(), degraded[0].permute(1, 2, 0).numpy())
    expected = psnr((np.round(restored * 255) / 255), clean[0].permute(1, 2, 0).numpy())
    theirs = float(cells[4].split("/")[0])
    ours = float(cells[3].split("/")[0])
    assert theirs == pytest.approx(expected, abs=0.02)
    assert float(cells[5]) == pytest.approx(theirs - ours, abs=0.011)


def test_evaluate_points_a_store_model_to_models_check(store, tmp_path, monkeypatch, capsys):
    denoiser = store.add(save_checkpoint(dncnn(), tmp_path / "dn.pth"))
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime_with(store, forced=denoiser))
    data = tmp_path / "val" / "mcmaster"
    data.mkdir(parents=True)
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", denoiser.id, "--data", str(data.parent)]) == cli.EXIT_USAGE
    assert f"models check {denoiser.id}" in capsys.readouterr().err


def test_models_check_gives_an_upscaler_the_small_photo_itself(store, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from instructir_desktop.inference import runtime as runtime_module
    from instructir_desktop.training.evaluation import EVAL_SETTINGS, degrade_with_clue

    data = tmp_path / "val"
    (data / "mcmaster").mkdir(parents=True)
    rng = np.random.default_rng(6)
    clean_u8 = (F.avg_pool2d(torch.from_numpy(rng.random((1, 3, 40, 48), dtype=np.float32)), 5, 1, 2) * 255).round()
    Image.fromarray(clean_u8[0].permute(1, 2, 0).numpy().astype(np.uint8)).save(data / "mcmaster" / "1.png")
    upscaler = store.add(save_checkpoint(span_x(2), tmp_path / "up.pth"))
    monkeypatch.setattr(runtime_module, "load_runtime", lambda settings: runtime_with(ModelStore()))
    capsys.readouterr()
    assert cli.main(["models", "check", upscaler.id, "--data", str(data)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| upscale")]
    assert len(rows) == 2  # x2 and x4
    clean = clean_u8 / 255
    setting = next(s for s in EVAL_SETTINGS if s.key == "upscale_2")
    _, clue = degrade_with_clue(clean, setting, seed=1000)
    restored = direct(span_x(2), clue.small)
    expected = psnr(np.round(restored * 255) / 255, clean[0].permute(1, 2, 0).numpy())
    theirs = float(rows[0].strip("|").split("|")[4].split("/")[0])
    assert theirs == pytest.approx(expected, abs=0.02)


def test_three_architectures_added_routed_tiled_seam_free_and_removed(store, tmp_path, capsys):
    """The issue's whole round trip: add an x2 upscaler, a denoiser and a network that needs padding
    from the command line, run a plan on them in tiles and whole, then remove them again."""
    files = {
        "upscale": save_checkpoint(span_x(2), tmp_path / "span.pth"),
        "denoise": save_checkpoint(dncnn(), tmp_path / "dncnn.safetensors"),
        "lowlight": save_checkpoint(retinexformer(), tmp_path / "retinex.pth"),
    }
    ids = {}
    for task, path in files.items():
        capsys.readouterr()
        assert cli.main(["models", "add", str(path), "--default"]) == 0
        ids[task] = capsys.readouterr().out.strip()
    plan = parse_plan("denoise, lowlight, upscale x2")
    clean = F.avg_pool2d(torch.from_numpy(np.random.default_rng(7).random((1, 3, 70, 90), dtype=np.float32)), 5, 1, 2)
    image = clean[0].permute(1, 2, 0).numpy()
    tiled = runtime_with(ModelStore(), tile_size=32).restore(RestoreRequest(image, plan))
    whole = runtime_with(ModelStore()).restore(RestoreRequest(image, plan))
    assert tiled.step_models == whole.step_models == (ids["denoise"], ids["lowlight"], ids["upscale"])
    assert tiled.restored.shape == whole.restored.shape == (140, 180, 3)
    reference = F.interpolate(clean, scale_factor=2, mode="bicubic")[0].permute(1, 2, 0).numpy()
    assert abs(psnr(tiled.restored, reference) - psnr(whole.restored, reference)) < 0.5
    assert psnr(tiled.restored, whole.restored) > 40
    for model_id in ids.values():
        assert cli.main(["models", "remove", model_id]) == 0
    after = runtime_with(ModelStore()).restore(RestoreRequest(image, plan))
    assert after.step_models == ("", "", "")  # the bundled network again


def test_restore_model_resolves_an_id_a_name_bundled_or_says_what_it_is_not(store, tmp_path):
    from instructir_desktop.inference.requests import EngineSettings
    from instructir_desktop.inference.runtime import load_runtime
    from instructir_desktop.model.weights import WeightsError

    denoiser = store.add(save_checkpoint(dncnn(), tmp_path / "dn.pth"), name="Grain Away", make_default=True)
    image = np.random.default_rng(8).random((24, 24, 3), dtype=np.float32)
    plan = parse_plan("denoise")
    for reference in (denoiser.id, "grain away"):
        runtime = load_runtime(EngineSettings(model_folder=reference, backend="torch"), encoder=KeywordEncoder())
        assert runtime.router.forced is not None and runtime.router.forced.id == denoiser.id
    bundled = load_runtime(EngineSettings(model_folder="bundled", backend="torch"), encoder=KeywordEncoder())
    assert bundled.restore(RestoreRequest(image, plan)).step_models == ("",)  # forced over the default
    default = load_runtime(EngineSettings(backend="torch"), encoder=KeywordEncoder())
    assert default.restore(RestoreRequest(image, plan)).step_models == (denoiser.id,)
    with pytest.raises(WeightsError, match="neither a model folder nor a model in the store"):
        load_runtime(EngineSettings(model_folder="no-such-model", backend="torch"), encoder=KeywordEncoder())


def test_half_precision_only_where_the_network_allows_it(tmp_path):
    half_ok = load_expert_file(save_checkpoint(span_x(2), tmp_path / "s.pth"))
    full_only = load_expert_file(save_checkpoint(dncnn(), tmp_path / "d.pth"))
    assert half_ok.supports_half and not full_only.supports_half  # as spandrel describes them
    cpu = torch.device("cpu")
    assert half_ok.to(cpu, torch.float16).dtype == torch.float16
    assert full_only.to(cpu, torch.float16).dtype == torch.float32
    from instructir_desktop.inference.expert_routing import ExpertRouter

    router = ExpertRouter(None)
    router.place(cpu, torch.float16, None)
    assert router.dtype == torch.float32  # the CPU always runs float32
